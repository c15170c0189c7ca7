"""Draining a running flow: its source stops producing, and everything downstream finishes.

A drain is one operation for every engine and runtime: the source's input closes, so the
source ends after the item it is reading, and every stage then completes the ordinary way
(the step machines run to their end; nothing is cancelled, nothing is lost). A source that
can end by itself (``Flow.queue``: :meth:`Source.stop_producing` closes it, and it emits
what it had accepted first) is asked to; any other source is wrapped in a :func:`gated`
source that ends once the :class:`DrainGate` closes, waking an async read that waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, final

from rxpipe._core.loops import threadsafe_setter
from rxpipe._core.work import settle_tasks
from rxpipe.stages.sources import Source

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.stages.plan import RunContext

__all__ = ("DrainGate", "gated")

T = TypeVar("T")


@final
class DrainGate:
    """Closed once, from any thread: the gated source then ends before its next read."""

    __slots__ = ("_lock", "_wakers", "closed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []
        self.closed = False

    def close(self) -> None:
        """Close the gate (idempotent); wake every async read waiting for an item."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def add_waker(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when the gate closes (at once if it is closed)."""
        with self._lock:
            if not self.closed:
                self._wakers.append(wake)
                return
        wake()


def _gated_iter(items: Iterator[T], gate: DrainGate) -> Iterator[T]:
    # A sync read in progress is not interrupted: its item is delivered, then the source ends.
    try:
        while not gate.closed:
            try:
                item = next(items)
            except StopIteration:
                return
            yield item
            del item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


async def _gated_aiter(items: AsyncIterator[T], gate: DrainGate) -> AsyncIterator[T]:
    # An async read races the gate: a source waiting for an item that may never come (a
    # quiet async generator, an idle publisher) ends when the gate closes.
    closing = asyncio.Event()
    gate.add_waker(threadsafe_setter(closing))
    closed: asyncio.Task[Any] | None = None
    step: asyncio.Task[Any] | None = None
    try:
        while not gate.closed:
            step = asyncio.ensure_future(_anext(items))
            if closed is None:
                closed = asyncio.ensure_future(closing.wait())
            await asyncio.wait((step, closed), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return  # the gate closed first; the read is cancelled below (no item taken)
            done, step = step, None
            try:
                item = done.result()
            except StopAsyncIteration:
                return
            yield item
            del item
    finally:
        pending = [t for t in (step, closed) if t is not None]
        again = await settle_tasks(pending) if pending else False
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
        if again:
            raise asyncio.CancelledError


async def _anext(items: AsyncIterator[T]) -> T:
    return await anext(items)


@dataclass(frozen=True, slots=True, eq=False)
class _Gated(Source[T], Generic[T]):
    """``inner``, ending once ``gate`` closes; everything else is the inner source's."""

    inner: Source[T]
    gate: DrainGate

    def open(self, ctx: RunContext) -> Iterator[T]:
        return _gated_iter(self.inner.open(ctx), self.gate)

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return _gated_aiter(self.inner.open_async(ctx), self.gate)

    def settle(self, stats: StageStats) -> None:
        self.inner.settle(stats)

    def stop_producing(self) -> bool:
        self.gate.close()
        return True


@dataclass(frozen=True, slots=True, eq=False)
class _GatedAsync(_Gated[T]):
    is_async: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, eq=False)
class _GatedWaiting(_Gated[T]):
    prefers_async: ClassVar[bool] = True


def gated(source: Source[T], gate: DrainGate) -> Source[T]:
    """``source`` as a drainable source: itself when it ends by itself once asked to stop
    producing (:attr:`Source.ends_when_stopped`), otherwise wrapped to end when ``gate``
    closes. Its operator, flags and settling are the inner source's."""
    if source.ends_when_stopped:
        return source
    if source.is_async:
        return _GatedAsync(source, gate)
    if source.prefers_async:
        return _GatedWaiting(source, gate)
    return _Gated(source, gate)
