"""Fan-in sources: several flows into one (``Flow.merge``, ``Flow.concat``).

Each input flow runs as a run of its own on the engine of the combined run (opened through
its :class:`~rxpipe.stages.plan.RunContext`, with the same settings), inside that run: its
stages pull exactly what the combined source asks for (plus what its own buffers hold), and
stopping the combined run stops every input run. The inputs' stages are not
listed in the combined run's Report; the combined source counts what it emitted.

``merge`` runs every input at once, each read by its own asyncio task, handing items over through
a bounded queue: an input that produced :data:`MERGE_AHEAD` items the consumer has not taken
yet waits before it asks its flow for the next one. ``concat`` runs one input after the other
and needs no task: it is a plain (async) iterator over the inputs' items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from rxpipe.stages.sources import Source

if TYPE_CHECKING:
    from rxpipe.stages.plan import Plan, RunContext

__all__ = ("MERGE_AHEAD", "AsyncConcatSource", "ConcatSource", "MergeSource")

T = TypeVar("T")

#: How many items of one input may wait in a merge for the consumer to take them. The merge
#: itself holds at most ``MERGE_AHEAD * len(flows)`` items; an input does not ask its flow
#: for another item while it has that many waiting.
MERGE_AHEAD: Final = 1


@dataclass(frozen=True, slots=True)
class MergeSource(Source[T]):
    """Blueprint of :meth:`rxpipe.Flow.merge`."""

    plans: tuple[Plan, ...]
    operator: ClassVar[str] = "merge"
    is_async: ClassVar[bool] = True

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return _merge(ctx, self.plans)


async def _merge(ctx: RunContext, plans: tuple[Plan, ...]) -> AsyncIterator[Any]:
    """Every input's items as they come; the first error cancels the other inputs."""
    if not plans:
        return
    loop = asyncio.get_running_loop()
    ready: deque[tuple[int, Any]] = deque()  # (input, item), in arrival order
    room = [asyncio.Semaphore(MERGE_AHEAD) for _ in plans]
    wake = asyncio.Event()
    errors: list[BaseException] = []
    live = len(plans)

    async def pump(index: int, plan: Plan) -> None:
        items: AsyncIterator[Any] = aiter(ctx.open_input(plan))
        try:
            while True:
                await room[index].acquire()  # released when the consumer takes the item
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
                ready.append((index, item))
                wake.set()
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()  # a no-op when the run already ended or was cancelled

    def on_done(task: asyncio.Task[None]) -> None:
        nonlocal live
        live -= 1
        error = None if task.cancelled() else task.exception()
        if error is not None and not errors:
            errors.append(error)  # the first error wins; it cancels the others below
        wake.set()

    tasks: list[asyncio.Task[None]] = []
    for index, plan in enumerate(plans):
        task = loop.create_task(pump(index, plan), name=f"rxpipe-merge-{index}")
        task.add_done_callback(on_done)
        tasks.append(task)
    try:
        while True:
            if errors:
                raise errors[0]  # fail fast: items still waiting are not emitted
            if ready:
                index, item = ready.popleft()
                room[index].release()
                yield item
                del item
                continue
            if live == 0:
                return
            wake.clear()
            await wake.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class ConcatSource(Source[T]):
    """Blueprint of :meth:`rxpipe.Flow.concat` when every input is synchronous."""

    plans: tuple[Plan, ...]
    operator: ClassVar[str] = "concat"
    # an input may wait for items (a Flow.queue): inside a loop, await it rather than block
    prefers_async: ClassVar[bool] = True

    def open(self, ctx: RunContext) -> Iterator[T]:
        return _concat(ctx, self.plans)

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return _aconcat(ctx, self.plans)


@dataclass(frozen=True, slots=True)
class AsyncConcatSource(Source[T]):
    """Blueprint of :meth:`rxpipe.Flow.concat` when an input needs an event loop."""

    plans: tuple[Plan, ...]
    operator: ClassVar[str] = "concat"
    is_async: ClassVar[bool] = True

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return _aconcat(ctx, self.plans)


def _concat(ctx: RunContext, plans: tuple[Plan, ...]) -> Iterator[Any]:
    for plan in plans:
        # closing this generator closes the input's run (yield from forwards close())
        yield from iter(ctx.open_input(plan))


async def _aconcat(ctx: RunContext, plans: tuple[Plan, ...]) -> AsyncIterator[Any]:
    for plan in plans:
        items: AsyncIterator[Any] = aiter(ctx.open_input(plan))
        try:
            async for item in items:
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
