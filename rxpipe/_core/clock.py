"""Time without an event loop: the clock timers read, and the timers of a run that has no loop.

A stage's timers (``Ports.start_timer``) need no event loop. On a loop they are ``call_later``
handles (:class:`~rxpipe._core.work.Work`); a run that has no loop (a synchronous pull run, a
blocking runner of the push engine's threads runtime) keeps them here instead, by deadline:
its driver fires the due ones before it hands a stage its next input (a group of
``chunk(n, within=)`` closes before an item that came in after its deadline), and waits until
the next deadline when there is nothing else to do. In such a run the stages and their inputs
share the caller's thread: a timer is noticed when a blocking read returns, or at once when
the stage waits for nothing but the timer.

The clock itself is swappable (:func:`use_clock`) so that
:func:`rxpipe.testing.virtual_time` moves runs without a loop on virtual time too.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol, final

from rxpipe._core.stats import Done

if TYPE_CHECKING:
    from rxpipe._core.work import Ended

__all__ = ("NO_LOOP", "Deadlines", "Timer", "monotonic", "now", "sleep", "use_clock")

NO_LOOP: Final = (
    "a stage scheduled asynchronous work in a run without an event loop; its blueprint must "
    "set is_async = True"
)

#: The clock of runs without an event loop (and of ``rxpipe.stages.now()`` outside one).
monotonic: Callable[[], float] = time.monotonic
#: How such a run waits for its next timer.
sleep: Callable[[float], object] = time.sleep


@contextmanager
def use_clock(read: Callable[[], float], wait: Callable[[float], object]) -> Iterator[None]:
    """Make runs without an event loop read ``read`` and wait with ``wait`` inside the block."""
    global monotonic, sleep
    previous = monotonic, sleep
    monotonic, sleep = read, wait
    try:
        yield
    finally:
        monotonic, sleep = previous


def now() -> float:
    """The time timers count in: the running event loop's clock (:data:`monotonic` without one).

    A stage reads it to measure since when (``throttle``'s token bucket), so a test that runs
    on virtual time (:func:`rxpipe.testing.virtual_time`) controls that too.
    """
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return monotonic()


class _Handle(Protocol):
    def cancel(self) -> None: ...


class _Keeper(Protocol):
    def _disarmed(self, timer: Timer) -> None: ...


@final
class Timer:
    """A one-shot timer a stage asked for; a driver arms it, :meth:`cancel` disarms.

    It is queued where work is (``Interpreter.scheduled``), so a composite stage that forwards
    its sub-chain's work to its own ports forwards timers with it, unchanged. A driver with an
    event loop arms it as a ``call_later`` handle (``Work.start``), one without as a deadline
    (:meth:`Deadlines.arm`).
    """

    __slots__ = ("cancelled", "delay", "handle", "work")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.cancelled = False
        self.handle: _Handle | None = None
        self.work: _Keeper | None = None  # what it is armed on

    def __call__(self) -> Awaitable[Any]:  # pragma: no cover - drivers never call it
        raise TypeError("a Timer is armed by a driver, not awaited")

    def cancel(self) -> None:
        """Disarm: its expiry is never delivered (armed or not yet)."""
        if self.cancelled:
            return
        self.cancelled = True
        handle, work = self.handle, self.work
        if handle is not None and work is not None:
            handle.cancel()
            work._disarmed(self)


@final
class _Armed:
    """What ``Timer.cancel`` calls ``handle.cancel()`` on: nothing to cancel here."""

    __slots__ = ()

    def cancel(self) -> None:
        pass


_ARMED: Final = _Armed()

#: A timer waiting in :class:`Deadlines`: deadline, a tie-breaker, stage index, timer, callback.
_Entry = tuple[float, int, int, Timer, Done]


@final
class Deadlines:
    """The armed timers of a run without an event loop, earliest first.

    The driver reads ``next_due`` (``math.inf`` with none armed) against the clock before it
    hands input over, and calls :meth:`fire` when it passed: the expiries are queued in
    ``finished`` like the end of work on a loop, for the step machine to deliver. A cancelled
    timer is dropped when it reaches the front, or when the cancelled ones are half the heap.
    """

    __slots__ = ("_dead", "_heap", "_seq", "finished", "next_due")

    def __init__(self, finished: deque[Ended]) -> None:
        self.finished = finished
        self.next_due = math.inf
        self._heap: list[_Entry] = []
        self._seq = 0
        self._dead = 0

    def arm(self, scheduled: deque[tuple[int, Any, Done]]) -> None:
        """Arm the timers the stages asked for since the last call; other work needs a loop."""
        now = monotonic()
        heap = self._heap
        while scheduled:
            index, timer, done = scheduled.popleft()
            if type(timer) is not Timer:
                scheduled.clear()
                raise RuntimeError(NO_LOOP)
            if timer.cancelled:
                continue
            timer.handle, timer.work = _ARMED, self
            self._seq += 1
            heapq.heappush(heap, (now + timer.delay, self._seq, index, timer, done))
        self._front()

    def fire(self) -> bool:
        """Queue the expiry of every due timer in ``finished``; whether there was one."""
        now = monotonic()
        heap, fired = self._heap, False
        while heap and heap[0][0] <= now:
            _, _, index, timer, done = heapq.heappop(heap)
            if timer.cancelled:
                self._dead -= 1
            else:
                timer.handle = timer.work = None
                self.finished.append((index, done, None, None))
                fired = True
        self._front()
        return fired

    def wait(self, interrupt: threading.Event | None = None) -> bool:
        """Sleep until the next deadline and fire what is due; ``False`` with none armed.

        With ``interrupt``, the wait ends early when it is set (the run stops; nothing fires).
        """
        if not self._heap:
            return False
        left = self.next_due - monotonic()
        if left > 0:
            if interrupt is None:
                sleep(left)
            elif interrupt.wait(left):
                return True
        self.fire()
        return True

    def time_left(self) -> float | None:
        """Seconds until the next deadline (0 if it passed), ``None`` with none armed."""
        if not self._heap:
            return None
        return max(0.0, self.next_due - monotonic())

    def clear(self) -> None:
        """The run ended: forget every timer (their stages stopped)."""
        for entry in self._heap:
            entry[3].handle = entry[3].work = None
        self._heap.clear()
        self._dead = 0
        self.next_due = math.inf

    def _disarmed(self, timer: Timer) -> None:
        """``timer`` was cancelled while armed: drop it now if it is in front, else later."""
        timer.handle = timer.work = None
        self._dead += 1
        heap = self._heap
        if self._dead > 16 and self._dead * 2 > len(heap):
            heap[:] = [entry for entry in heap if not entry[3].cancelled]
            heapq.heapify(heap)
            self._dead = 0
        self._front()

    def _front(self) -> None:
        """Drop cancelled timers from the front; ``next_due`` is the earliest live deadline."""
        heap = self._heap
        while heap and heap[0][3].cancelled:
            heapq.heappop(heap)
            self._dead -= 1
        self.next_due = heap[0][0] if heap else math.inf
