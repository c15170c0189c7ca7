"""What a run uses besides time: peak traced memory, peak asyncio tasks, peak threads.

A contender calls :func:`sample` from its hot path (a consumer, a slow call); it costs one
attribute read unless a :func:`profile` is active, so the timed rounds are not disturbed.
:func:`profile` runs a contender once with ``tracemalloc`` on and sampling enabled, and
returns a :class:`Usage`: the peak traced bytes above the start, the most asyncio tasks alive
on the sampling thread's event loop, and the most threads alive, as seen by the samples.

Tasks are counted on the loop of the thread that samples (``asyncio.all_tasks()``): a
threads-runtime run that runs event loops in other threads shows only its threads.
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import final

__all__ = ("Usage", "profile", "sample")


class _State:
    __slots__ = ("calls", "every", "on", "tasks", "threads")

    def __init__(self) -> None:
        self.on = False
        self.every = 1
        self.calls = 0
        self.tasks = 0
        self.threads = 0


_state = _State()


def sample() -> None:
    """Record the tasks and threads alive now, if a :func:`profile` is running (cheap if not)."""
    s = _state
    if not s.on:
        return
    s.calls += 1
    if s.calls % s.every:
        return
    s.threads = max(s.threads, threading.active_count())
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop in this thread
        tasks = 0
    s.tasks = max(s.tasks, tasks)


@final
@dataclass(frozen=True, slots=True)
class Usage:
    """A run's peak traced memory (bytes above its start; ``None``: not traced), peak tasks
    and peak threads."""

    peak_bytes: int | None
    tasks: int
    threads: int

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / (1 << 20)


def profile(
    run: Callable[[], object], *, every: int = 1, memory: bool = True
) -> tuple[Usage, object]:
    """Run ``run`` once with sampling on (every ``every``-th call samples) and, if ``memory``,
    ``tracemalloc`` (which slows allocation-heavy code down many times over).

    Returns the usage and ``run``'s result (for the caller to check).
    """
    s = _state
    s.on, s.every, s.calls, s.tasks, s.threads = True, max(1, every), 0, 0, 0
    peak: int | None = None
    try:
        if not memory:
            result = run()
        else:
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                result = run()
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
    finally:
        s.on = False
    return Usage(peak, s.tasks, s.threads), result
