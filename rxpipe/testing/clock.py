"""Virtual time for tests of timed flows: timers fire in order, at once, however loaded the machine.

Inside ``with virtual_time():`` every new asyncio event loop (the private loop of a sync
terminal, or one you run yourself) is a :class:`VirtualTimeLoop`: its clock stands still
while anything is ready to run and, when the loop would sleep until its next timer, it jumps
to that timer instead of sleeping. A flow whose only waits are timers and ``asyncio.sleep``
then runs in no real time, and what it does depends only on the order of events, never on
how fast the machine is.

It fits every run whose work shares one event loop: the pull engine and the push engine's
asyncio runtime. A synchronous pull run, which keeps its timers as deadlines without a loop,
reads a virtual clock too: waiting for its next timer moves that clock instead of sleeping.
The threads runtime runs each stage in a thread of its own, which also waits for other
threads (virtual time would skip those waits), so test it on real time with assertions that
do not depend on the timing (the timer still has to fire for the flow to finish, say).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, final

from rxpipe._core.clock import use_clock

__all__ = ("VirtualTimeLoop", "virtual_time")


@final
class _Selector(selectors.BaseSelector):
    """The loop's selector, polled without waiting; a wait for a timer advances the clock."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:  # no timer pending: only real I/O (another thread) can wake us
            return self._inner.select(None)
        ready = self._inner.select(0)
        if not ready and timeout > 0:
            self._loop.advance(timeout)
        return ready

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


@final
class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only to the next timer, when nothing else can run."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        self._selector = _Selector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the loop does it by itself when it would sleep)."""
        self._virtual_now += seconds


@final
class _Policy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return VirtualTimeLoop()


@final
class _LooplessClock:
    """The clock of runs without an event loop inside :func:`virtual_time`: waiting moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def read(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@contextmanager
def virtual_time() -> Iterator[None]:
    """Make every event loop created inside the block a :class:`VirtualTimeLoop`, and put
    runs without a loop on a virtual clock of their own."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_Policy())
    loopless = _LooplessClock()
    try:
        with use_clock(loopless.read, loopless.wait):
            yield
    finally:
        asyncio.set_event_loop_policy(previous)
