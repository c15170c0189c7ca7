"""The push engine on asyncio: one task per runner, :class:`AsyncChannel` between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, cast, final

from rxpipe.engines.base import (
    closing,
    iterate_on_private_loop,
    run_on_private_loop,
)
from rxpipe.engines.lowerings import CHANNEL_BATCHES, ITERATOR_SOURCE
from rxpipe.engines.push._channel_common import EndOfChannel, WouldBlock
from rxpipe.engines.push.channel import AsyncChannel
from rxpipe.engines.push.drivers import drive_async, fail_stage
from rxpipe.engines.push.lowerings import run_iterator_source_async, run_simple_async
from rxpipe.engines.push.parts import AsyncIteratorInbox, IteratorInbox, Part, stage_part
from rxpipe.stages.simple import Filter, Map

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.engines.push.engine import PushEngine, PushRun
    from rxpipe.stages.errors import Node

__all__ = ("AsyncioRuntime",)


@final
class AsyncioRuntime:
    """A push run on the caller's event loop (or a private one, from sync code)."""

    __slots__ = ("_agen", "_run", "_sync_iter", "_tasks")

    def __init__(self, run: PushRun) -> None:
        self._run = run
        self._tasks: list[asyncio.Task[None]] = []
        self._agen: AsyncGenerator[Any, None] | None = None
        self._sync_iter: Iterator[Any] | None = None

    # -- starting --------------------------------------------------------------------------------
    def _start(self) -> None:
        run = self._run
        run.wire(AsyncChannel)
        plan, stats, channels = run.plan, run.stats, run.channels
        source = plan.source
        first: Coroutine[Any, Any, None]
        if ITERATOR_SOURCE.applies_to_source(source):
            first = run_iterator_source_async(source.open(run), stats[0], channels[0])
        elif source.is_async or source.prefers_async:
            first = self._source(AsyncIteratorInbox(source.open_async(run)), stats[0], channels[0])
        else:
            first = self._source(IteratorInbox(source.open(run)), stats[0], channels[0])
        runners = [first]
        runners += [
            _stage(node, stats[i + 1], channels[i], channels[i + 1])
            for i, node in enumerate(plan.nodes)
        ]
        inboxes = [None, *channels[:-1]]
        self._tasks = [
            asyncio.create_task(_guarded(runner, inbox, outbox))
            for runner, inbox, outbox in zip(runners, inboxes, channels, strict=True)
        ]

    @staticmethod
    async def _source(
        inbox: AsyncIteratorInbox | IteratorInbox, stats: StageStats, outbox: Any
    ) -> None:
        try:
            await drive_async(Part.source(stats, inbox, outbox))
        finally:
            await inbox.aclose()

    # -- consuming -------------------------------------------------------------------------------
    async def _items(self) -> AsyncGenerator[Any, None]:
        self._start()
        run = self._run
        last = run.channels[-1]
        receive_nowait = last.receive_nowait
        try:
            while True:
                try:
                    try:
                        item = receive_nowait()
                    except WouldBlock:
                        item = await last.receive()
                except EndOfChannel:
                    return
                run.delivered += 1
                yield item
        finally:
            await self._stop()

    def iterate(self) -> Iterator[Any]:
        self._sync_iter = iterate_on_private_loop(self._items())
        return self._sync_iter

    def aiterate(self) -> AsyncGenerator[Any, None]:
        self._agen = self._items()  # aclose() closes it: its cleanup does the run's accounting
        return self._agen

    async def collect_async(self) -> list[Any]:
        # Items that reach the list are delivered, not in flight: take every ready one at once.
        self._start()
        run = self._run
        last = run.channels[-1]
        out: list[Any] = []
        try:
            while True:
                try:
                    batch = await last.receive_batch(4096)
                except EndOfChannel:
                    break
                out.extend(batch)
                run.delivered += len(batch)
        finally:
            await self._stop()
        return out

    def collect(self) -> list[Any]:
        return run_on_private_loop(self.collect_async(), "a push/asyncio run from sync code")

    def consume(self, fn: Callable[[Any], object]) -> None:
        # One event-loop call for the whole run, not one per item.
        async def drain() -> None:
            # closed here if fn raises: an abandoned generator is closed by a GC-time task
            # that can outlive the private loop
            async with closing(self._items()) as items:
                async for item in items:
                    fn(item)

        run_on_private_loop(drain(), "a push/asyncio run from sync code")

    # -- stopping --------------------------------------------------------------------------------
    async def _stop(self) -> None:
        """Stop every task (those still running are cancelled) and wait for all of them."""
        run = self._run
        if not run.begin_stop():
            return
        # Closing every channel from the receiving side counts what they held as discarded
        # (lost) and breaks blocked senders; then the stragglers are cancelled.
        run.close_channels()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r  # a runner bug, not a stage error (those travel through channels)
        run.finish()

    def close(self) -> None:
        it, self._sync_iter = self._sync_iter, None
        close = getattr(it, "close", None)
        if close is not None:
            close()  # its cleanup stops every task and waits for them

    async def aclose(self) -> None:
        agen, self._agen = self._agen, None
        if agen is not None:
            try:
                await agen.aclose()  # left suspended at a yield: its cleanup stops the run
            except RuntimeError:  # still running in another task: stopped below instead
                pass
        if self._tasks:
            await self._stop()

    def join(self) -> None:
        """Nothing to wait for from here: the tasks settle on their loop, in :meth:`_stop`."""

    def input_engine(self, engine: PushEngine) -> PushEngine:
        return engine


def _stage(node: Node, stats: StageStats, inbox: Any, outbox: Any) -> Coroutine[Any, Any, None]:
    """A stage's runner: its lowering if one applies (see :mod:`rxpipe.engines.lowerings`), else
    the generic one."""
    stage = node.stage
    if CHANNEL_BATCHES.applies(node):
        if isinstance(stage, Map):
            return run_simple_async(inbox, stats, outbox, stage.fn, keep=False)
        return run_simple_async(inbox, stats, outbox, cast("Filter[Any]", stage).pred, keep=True)
    return drive_async(stage_part(node, stats, inbox, outbox))


async def _guarded(runner: Coroutine[Any, Any, None], inbox: Any, outbox: Any) -> None:
    """Run one runner's task; whatever escapes it fails the stage through its channels.

    A runner lets a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, a user's own) escape, whether its stage raised it or upstream's
    channel carried it. The run must still end: the output channel fails with it, so it
    travels down to the consumer, and the input channel closes, so upstream stops.
    Cancellation is the run stopping the task, and passes.
    """
    try:
        await runner
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        fail_stage(exc, inbox, outbox)
