"""The pull engine's asynchronous boundary: where ``buffer(n)`` splits a flow into islands.

Upstream of the boundary runs as its own task and may run ahead of downstream by up to ``n``
items; downstream takes them in order. Demand is replenished in batches: the producer is
allowed to refill once downstream consumed 75% of the window (Reactor's and RxJava's rule),
so the two sides wake each other once per batch, not once per item. Run from sync code (no
event loop), the boundary prefetches in the same batches on the caller's thread.

Under a dropping or failing ``Overflow`` the async producer never waits for room: like
Reactor's ``onBackpressureBuffer``/``onBackpressureDrop`` and Akka's ``buffer(n, strategy)``
it keeps reading upstream while downstream is busy elsewhere (an awaiting ``map_async``) and
applies the policy to what does not fit, giving the consumer a turn after each overflow. A
sync run has no "elsewhere": downstream works on the same thread, so nothing can overflow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, final

from rxpipe._core.stats import StageStats
from rxpipe.engines.base import settle_tasks
from rxpipe.stages.buffering import Overflow, overflow_error
from rxpipe.stages.errors import annotate

__all__ = ("Boundary",)


def _from(error: BaseException, upstream: StageStats | None) -> BaseException:
    """An error read from upstream, with the note naming the stage that raised it."""
    if upstream is not None and isinstance(error, Exception):
        annotate(error, upstream.name)
    return error


@final
class Boundary:
    """One ``buffer(n)`` node in a pull run."""

    __slots__ = ("held", "low", "n", "overflow", "stats")
    width: Final = 1

    def __init__(
        self, n: int, stats: StageStats, overflow: Overflow = Overflow.BACKPRESSURE
    ) -> None:
        self.n = n
        self.low = n // 4  # refill once 75% of the window was consumed
        self.stats = stats
        self.overflow = overflow
        #: The items it holds now (read by an observed run's sampler).
        self.held: deque[Any] = deque()

    def settle(self) -> int:
        """How many items the boundary received (its upstream emitted)."""
        return self.stats.received

    def iterate(self, src: Iterator[Any], upstream: StageStats | None = None) -> Iterator[Any]:
        """Sync twin: prefetch batches on the caller's thread."""
        buf: deque[Any] = deque()
        self.held = buf
        stats = self.stats
        exhausted = False
        failure: BaseException | None = None
        try:
            while True:
                if not exhausted and len(buf) <= self.low:
                    before = len(buf)
                    try:
                        for item in src:
                            buf.append(item)
                            if len(buf) >= self.n:
                                break
                        else:
                            exhausted = True
                    except Exception as exc:  # the items read before it go out first
                        failure = _from(exc, upstream)
                        exhausted = True
                    stats.received += len(buf) - before
                if not buf:
                    if failure is not None:
                        raise failure
                    return
                stats.emitted += 1
                yield buf.popleft()
        finally:
            stats.lost += len(buf)
            close = getattr(src, "close", None)
            if close is not None:
                close()

    async def aiterate(
        self, src: AsyncIterator[Any], upstream: StageStats | None = None
    ) -> AsyncIterator[Any]:
        """Async: upstream runs in its own task, at most ``n`` items ahead."""
        buf: deque[Any] = deque()
        self.held = buf
        stats = self.stats
        n, low = self.n, self.low
        room = asyncio.Event()
        room.set()
        ready = asyncio.Event()
        failure: list[BaseException] = []
        finished = False

        policy = self.overflow

        async def produce() -> None:
            nonlocal finished
            try:
                async for item in src:
                    stats.received += 1
                    if len(buf) >= n and policy is not Overflow.BACKPRESSURE:
                        # Full: a consumer that is not busy elsewhere takes an item in this
                        # turn; one that still has not, is (an awaiting map_async, say).
                        try:
                            await asyncio.sleep(0)
                        except asyncio.CancelledError:
                            stats.lost += 1  # stopped with this item in hand
                            raise
                        if len(buf) >= n:
                            stats.dropped += 1
                            if policy is Overflow.FAIL:
                                raise annotate(overflow_error(stats.name, n), stats.name)
                            if policy is Overflow.DROP_OLDEST:
                                buf.popleft()
                                buf.append(item)
                            ready.set()
                            continue
                    buf.append(item)
                    ready.set()
                    if len(buf) >= n and policy is Overflow.BACKPRESSURE:
                        room.clear()
                        await room.wait()
            except asyncio.CancelledError:
                raise  # the boundary is stopping
            except BaseException as exc:  # SystemExit & co. too: the consumer raises them
                failure.append(exc)
            finally:
                finished = True
                ready.set()

        producer = asyncio.create_task(produce())
        try:
            while True:
                if buf:
                    item = buf.popleft()
                    if len(buf) <= low:
                        room.set()
                    stats.emitted += 1
                    yield item
                elif finished:
                    if failure:
                        raise _from(failure[0], upstream)
                    return
                else:
                    ready.clear()
                    if not buf and not finished:
                        await ready.wait()
        finally:
            again = await settle_tasks([producer])
            stats.lost += len(buf)
            aclose = getattr(src, "aclose", None)
            if aclose is not None:
                await aclose()
            if again:
                raise asyncio.CancelledError
