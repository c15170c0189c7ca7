"""The one scheduler for the asynchronous work stages ask for (``Ports.schedule``).

Each piece of work is a task on the running event loop; its end is queued in ``finished`` for
the driver to hand back to the interpreter, serially with the other callbacks. A driver that
has nothing to do but wait calls :meth:`Work.wait`: it returns when a piece of work ended or
:meth:`Work.wake` was called (an input the driver asked for arrived). Every engine and runtime
that runs asynchronous stages uses this class: the pull engine's async segments, each push
stage on the asyncio runtime, and async stages on the threads runtime (on their thread's own
loop).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, final

from rxpipe._core.stats import Done

__all__ = ("Work", "settle_tasks")

#: ``(stage index, done, result, error)``: a piece of work that ended.
Ended = tuple[int, Done, Any, BaseException | None]


@final
class Work:
    """The running work of one interpreter: start it, wait for it, cancel it at the end."""

    __slots__ = ("_waiter", "finished", "running")

    def __init__(self) -> None:
        self.running: set[asyncio.Future[Any]] = set()
        self.finished: deque[Ended] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def start(self, scheduled: deque[tuple[int, Callable[[], Awaitable[Any]], Done]]) -> None:
        """Start every piece of work the stages scheduled since the last call."""
        while scheduled:
            index, work, done = scheduled.popleft()
            try:
                task = asyncio.ensure_future(work())
            except Exception as exc:  # the work failed before it could even start
                self.finished.append((index, done, None, exc))
                continue
            self.running.add(task)
            task.add_done_callback(functools.partial(self._ended, index, done))

    def _ended(self, index: int, done: Done, task: asyncio.Future[Any]) -> None:
        self.running.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        self.finished.append((index, done, None if error is not None else task.result(), error))
        self.wake()

    def wake(self, _: object = None) -> None:
        """End a :meth:`wait` in progress (a done-callback for the driver's own input task)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait until a piece of work ends or :meth:`wake` is called."""
        if self.finished:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def stop(self, *extra: asyncio.Future[Any]) -> bool:
        """Cancel the running work (and ``extra`` tasks of the driver); see :func:`settle_tasks`."""
        pending = [*self.running, *extra]
        return await settle_tasks(pending) if pending else False


async def settle_tasks(tasks: Iterable[asyncio.Future[Any]]) -> bool:
    """Cancel ``tasks`` and wait until they are all done, even if we are cancelled meanwhile.

    Cleanup code runs this in ``finally`` blocks, where a second cancellation (the run being
    stopped while this stage was already ending) must not skip the accounting that follows.
    Returns whether such a cancellation arrived: the caller re-raises after its accounting.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    cancelled = False
    while True:
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return cancelled
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
