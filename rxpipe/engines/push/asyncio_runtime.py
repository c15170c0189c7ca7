"""The push engine on asyncio: one task per runner, :class:`AsyncChannel` between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, final

from rxpipe.engines.base import (
    StopRequest,
    closing,
    iterate_on_private_loop,
    run_on_private_loop,
)
from rxpipe.engines.lowerings import ITERATOR_SOURCE
from rxpipe.engines.push._channel_common import EndOfChannel
from rxpipe.engines.push.channel import AsyncChannel
from rxpipe.engines.push.drivers import drive_async, fail_stage
from rxpipe.engines.push.parts import (
    AsyncIteratorInbox,
    IteratorInbox,
    Part,
    iterator_source_part,
    stage_part,
)

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.engines.push.engine import PushEngine, PushRun
    from rxpipe.stages.errors import Node

__all__ = ("AsyncioRuntime",)


@final
class AsyncioRuntime:
    """A push run on the caller's event loop (or a private one, from sync code)."""

    __slots__ = ("_run", "_tasks")

    def __init__(self, run: PushRun) -> None:
        self._run = run
        self._tasks: list[asyncio.Task[None]] = []

    # -- starting --------------------------------------------------------------------------------
    def start(self) -> None:
        run = self._run
        run.wire(AsyncChannel)
        plan, stats, channels = run.plan, run.stats, run.channels
        source, timed = plan.source, run.telemetry  # timed: the source's items, if observed
        inbox: AsyncIteratorInbox | IteratorInbox
        if source.is_async or source.prefers_async:
            inbox = AsyncIteratorInbox(timed.source_async(source.open_async(run)))
            part = Part.source(stats[0], inbox, channels[0])
        else:
            inbox = IteratorInbox(timed.source(source.open(run)))
            if ITERATOR_SOURCE.applies_to_source(source):
                part = iterator_source_part(inbox, stats[0], channels[0], batch=True)
            else:
                part = Part.source(stats[0], inbox, channels[0])
        first = self._source(inbox, part)
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
    async def _source(inbox: AsyncIteratorInbox | IteratorInbox, part: Part) -> None:
        try:
            await drive_async(part)
        finally:
            await inbox.aclose()

    # -- consuming -------------------------------------------------------------------------------
    async def receive(self) -> Any:
        """The next item of the last channel (raises ``EndOfChannel`` at the end)."""
        return await self._run.channels[-1].receive()

    def iterate(self, stop: StopRequest) -> Iterator[Any]:
        return iterate_on_private_loop(self.aiterate(), stop)

    def aiterate(self) -> AsyncGenerator[Any, None]:
        return self._run.items_async(self)

    async def collect_async(self) -> list[Any]:
        # Items that reach the list are delivered, not in flight: take every ready one at once.
        self.start()
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
            await self.stop_async()
        return out

    def collect(self) -> list[Any]:
        return run_on_private_loop(self.collect_async(), "a push/asyncio run from sync code")

    def consume(self, fn: Callable[[Any], object]) -> None:
        # One event-loop call for the whole run, not one per item.
        async def drain() -> None:
            # closed here if fn raises: an abandoned generator is closed by a GC-time task
            # that can outlive the private loop
            async with closing(self.aiterate()) as items:
                async for item in items:
                    fn(item)

        run_on_private_loop(drain(), "a push/asyncio run from sync code")

    # -- stopping --------------------------------------------------------------------------------
    async def stop_async(self) -> None:
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
        """Nothing left to do from sync code: closing the iterator stopped the tasks."""

    async def aclose(self) -> None:
        if self._tasks:
            await self.stop_async()

    def join(self) -> None:
        """Nothing to wait for from here: the tasks settle on their loop, in :meth:`stop_async`."""

    def input_engine(self, engine: PushEngine) -> PushEngine:
        return engine


def _stage(node: Node, stats: StageStats, inbox: Any, outbox: Any) -> Coroutine[Any, Any, None]:
    """A stage's runner (its lowering, if one applies: see :func:`stage_part`)."""
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
