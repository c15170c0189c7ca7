"""``Flow.queue``: a source fed by producers that cannot block (an HTTP handler, a callback).

The producer holds a :class:`QueueHandle` and calls ``offer(item)``, which never waits: the
item goes into a buffer of ``maxsize`` items, or the overflow policy decides at once. The
flow's run takes items from that buffer: a sync run blocks its thread on a condition, an
async run awaits an event that ``offer`` sets with ``loop.call_soon_threadsafe``, so the
handle is safe to use from any thread and from event-loop callbacks.

The queue is one stream, consumed once: a run that ends (completed, failed or stopped early)
ends the queue, and a later run sees that ending at once. One run consumes it at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, final

from rxpipe._core.loops import ensure_no_running_loop, threadsafe_setter
from rxpipe.errors import MissingBackpressureError
from rxpipe.stages.buffering import Overflow
from rxpipe.stages.simple import check_count
from rxpipe.stages.sources import Source

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.stages.plan import RunContext

__all__ = ("QueueHandle", "QueueSource", "QueueState")

T = TypeVar("T")

_NOT_YET: Final = object()  # nothing buffered yet: wait
_END: Final = object()  # the stream ended: no more items


@final
class QueueState(Generic[T]):
    """The buffer shared by a :class:`QueueHandle` and the runs of its flow (thread-safe)."""

    __slots__ = (
        "_active",
        "_cond",
        "_dropped",
        "_ended",
        "_failure",
        "_items",
        "_lock",
        "_unsettled_dropped",
        "_unsettled_lost",
        "_waker",
        "maxsize",
        "overflow",
    )

    def __init__(self, maxsize: int, overflow: Overflow) -> None:
        check_count(maxsize, "queue(maxsize)", minimum=1)
        if not isinstance(overflow, Overflow):
            raise TypeError(f"overflow must be an rxpipe.Overflow, got {overflow!r}")
        if overflow is Overflow.BACKPRESSURE:
            # offer() never waits (its callers cannot), so there is nothing to wait for: the
            # producer's backpressure is offer() returning False, which is DROP_NEWEST.
            raise ValueError(
                "queue(overflow=Overflow.BACKPRESSURE): offer() never blocks, so it cannot "
                "wait for room; choose DROP_NEWEST (offer returns False when full), "
                "DROP_OLDEST or FAIL"
            )
        self.maxsize = maxsize
        self.overflow = overflow
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: deque[T] = deque()
        self._ended = False  # no more offers are accepted (closed, failed or cancelled)
        self._failure: BaseException | None = None
        self._active = False  # a run is consuming
        self._waker: Callable[[], None] | None = None
        self._dropped = 0
        self._unsettled_dropped = 0  # not yet added to a run's Report
        self._unsettled_lost = 0

    # -- producer side (any thread, never blocks) ----------------------------------------------
    def offer(self, item: T) -> bool:
        wake = None
        with self._lock:
            if self._ended:
                self._drop_locked()  # offered after the end: rejected, counted
                return False
            if len(self._items) < self.maxsize:
                self._items.append(item)
                self._cond.notify()
                if len(self._items) == 1:  # the consumer may be waiting for this one
                    wake = self._waker
                accepted = True
            elif self.overflow is Overflow.DROP_OLDEST:
                self._items.popleft()
                self._items.append(item)
                self._drop_locked()
                return True
            elif self.overflow is Overflow.DROP_NEWEST:
                self._drop_locked()
                return False
            else:  # Overflow.FAIL: the flow fails once the buffered items were taken
                self._drop_locked()
                self._failure = MissingBackpressureError(
                    f"Flow.queue: an item was offered while the buffer of {self.maxsize} "
                    "was full (overflow=Overflow.FAIL)"
                )
                self._end_locked()
                wake = self._waker
                accepted = False
        if wake is not None:
            wake()
        return accepted

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    @property
    def ended(self) -> bool:
        with self._lock:
            return self._ended

    def close(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._end_locked()
            wake = self._waker
        if wake is not None:
            wake()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._ended:
                return
            self._failure = exc
            self._end_locked()
            wake = self._waker
        if wake is not None:
            wake()

    def _end_locked(self) -> None:
        self._ended = True
        self._cond.notify_all()

    def _drop_locked(self, n: int = 1) -> None:
        self._dropped += n
        self._unsettled_dropped += n

    # -- consumer side ---------------------------------------------------------------------------
    def begin(self, waker: Callable[[], None] | None) -> None:
        """Claim the queue for one run; a second run at the same time is refused."""
        with self._lock:
            if self._active:
                raise RuntimeError(
                    "Flow.queue: another run is consuming this queue; a queue source is "
                    "one stream, consumed by one run at a time"
                )
            self._active = True
            self._waker = waker

    def take(self) -> Any:
        """The next item, ``_NOT_YET`` or ``_END``; raises the failure. Hold the lock."""
        if self._items:
            return self._items.popleft()
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        return _END if self._ended else _NOT_YET

    def finish(self, *, refused: bool = False) -> None:
        """Release the queue at the end of a run: it is ended, what it still holds is lost.

        ``refused``: the run never could wait for items (a sync terminal inside a running
        loop); the queue stays open for a run that can, such as the ``_async`` twin.
        """
        with self._lock:
            self._active = False
            self._waker = None
            if refused:
                return
            if not self._ended:  # the run stopped early: the consumer is gone
                self._end_locked()
            self._unsettled_lost += len(self._items)
            self._items.clear()

    def settle(self, stats: StageStats) -> None:
        with self._lock:
            if self._active:  # another run is consuming: its own end will count
                return
            stats.dropped += self._unsettled_dropped
            stats.lost += self._unsettled_lost
            self._unsettled_dropped = self._unsettled_lost = 0

    # -- the two readers -------------------------------------------------------------------------
    def iterate(self) -> Iterator[T]:
        self.begin(None)
        refused = False
        try:
            while True:
                with self._lock:
                    item = self.take()
                    if item is _NOT_YET:
                        try:
                            # blocking here would block the loop, and a producer on it
                            ensure_no_running_loop(
                                "waiting for a Flow.queue source's items in a sync terminal"
                            )
                        except RuntimeError:
                            refused = True
                            raise
                        while item is _NOT_YET:
                            self._cond.wait()
                            item = self.take()
                if item is _END:
                    return
                yield item
                del item
        finally:
            self.finish(refused=refused)

    async def aiterate(self) -> AsyncIterator[T]:
        ready = asyncio.Event()
        wake = threadsafe_setter(ready)

        self.begin(wake)
        try:
            while True:
                with self._lock:
                    ready.clear()
                    item = self.take()
                if item is _NOT_YET:
                    await ready.wait()
                    continue
                if item is _END:
                    return
                yield item
                del item
        finally:
            self.finish()


@final
class QueueHandle(Generic[T]):
    """The producer's end of :meth:`rxpipe.Flow.queue`: ``offer`` items, then ``close``.

    Safe to use from any thread and from event-loop callbacks: no method ever waits (each
    holds an internal lock for a few instructions). Created by ``Flow.queue`` only.
    """

    __slots__ = ("_state",)

    def __init__(self, state: QueueState[T]) -> None:
        self._state = state

    def __repr__(self) -> str:
        s = self._state
        end = ", ended" if s.ended else ""
        return (
            f"<QueueHandle {s.buffered}/{s.maxsize} buffered, overflow={s.overflow.name}, "
            f"dropped={s.dropped}{end}>"
        )

    def offer(self, item: T) -> bool:
        """Hand one item to the flow without waiting; ``True`` when it was accepted.

        With room in the buffer the item is accepted. When the buffer is full:
        ``DROP_NEWEST`` rejects this item (``False``); ``DROP_OLDEST`` drops the oldest
        buffered item and accepts this one (``True``); ``FAIL`` rejects it (``False``) and
        fails the flow with :class:`~rxpipe.MissingBackpressureError` once the buffered items
        were taken. After the queue ended (``close()``, a failure, or a run that stopped
        early) every offer returns ``False``. Every rejected or dropped item is counted in
        :attr:`dropped` and in the ``dropped`` of the source stage of the run's Report.
        """
        return self._state.offer(item)

    def close(self) -> None:
        """End the stream: the flow emits what is buffered, then completes (idempotent)."""
        self._state.close()

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error: the flow emits what is buffered, then fails with
        ``exc`` (an upstream that failed, such as an observable's ``on_error``). Ignored when
        the queue has already ended (closed, failed, or its run stopped).

        Raises:
            TypeError: ``exc`` is not an exception instance.
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail(exc) needs an exception instance, got {exc!r}")
        self._state.fail(exc)

    @property
    def maxsize(self) -> int:
        """The most items the buffer holds."""
        return self._state.maxsize

    @property
    def overflow(self) -> Overflow:
        """What a full buffer does with one more offer."""
        return self._state.overflow

    @property
    def buffered(self) -> int:
        """Items accepted and not yet taken by a run."""
        return self._state.buffered

    @property
    def dropped(self) -> int:
        """Items rejected or dropped so far (over the queue's whole life)."""
        return self._state.dropped

    @property
    def closed(self) -> bool:
        """Whether the queue accepts no more items (closed, failed, or its run stopped)."""
        return self._state.ended


@dataclass(frozen=True, slots=True, eq=False)
class QueueSource(Source[T]):
    """Blueprint of :meth:`rxpipe.Flow.queue` (its state is shared with the handle)."""

    state: QueueState[T]
    operator: ClassVar[str] = "queue"
    # a sync run blocks on a condition; inside an event loop, await without blocking it
    prefers_async: ClassVar[bool] = True
    # a drain closes the queue: the flow emits what was accepted, then completes
    ends_when_stopped: ClassVar[bool] = True

    def open(self, ctx: RunContext) -> Iterator[T]:
        return self.state.iterate()

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return self.state.aiterate()

    def settle(self, stats: StageStats) -> None:
        self.state.settle(stats)

    def stop_producing(self) -> bool:
        self.state.close()
        return True
