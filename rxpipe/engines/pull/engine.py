"""The demand-pull engine: synchronous islands run in the caller's thread, item by item on demand.

A plan is cut into segments: maximal runs of fusible stages become one generated loop
(``fused.py``), everything else is run by the generic interpreter (``stages/chain.py``). Each
segment is an iterator transform, so pulling an item from the run pulls exactly as much as
needed through every segment: demand of one, with no buffering between stages. Sources that
live on an event loop (async iterables, publishers signalling from other threads) make the
run asynchronous; the sync terminals then drive a private event loop, or refuse with a clear
error inside a running one.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final, cast, final

from rxpipe.engines.base import (
    Engine,
    Plan,
    Run,
    closing,
    iterate_on_private_loop,
    run_on_private_loop,
    settle_tasks,
)
from rxpipe.engines.pull.boundary import Boundary
from rxpipe.engines.pull.fused import FusedRun, is_fusible
from rxpipe.stages._base import Done, StageStats
from rxpipe.stages.buffering import Buffer
from rxpipe.stages.chain import Interpreter
from rxpipe.stages.errors import Node, annotate
from rxpipe.telemetry.report import Report

__all__ = ("PullEngine",)

#: How many items an async run processes between two yields to the event loop, when the run
#: never has to wait (a synchronous source): keeps other tasks responsive.
_YIELD_EVERY: Final = 256


@final
class PullEngine(Engine):
    """Reactive Streams demand: stages pull items one by one; sync stages are fused.

    Args:
        prefetch: the demand window at asynchronous boundaries (publishers): how many items
            are requested at once; more are requested when 75% of the window was used.
        fuse: lower runs of simple stages into one generated loop (``False`` forces the
            generic interpreter, for tests and for comparison).
    """

    name = "pull"

    def __init__(self, *, prefetch: int = 256, fuse: bool = True) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be an int >= 1, got {prefetch!r}")
        self.prefetch = prefetch
        self.fuse = fuse

    def __repr__(self) -> str:
        return f"PullEngine(prefetch={self.prefetch}, fuse={self.fuse})"

    def open(self, plan: Plan) -> PullRun:
        return PullRun(self, plan)

    def runs_inline(self, plan: Plan) -> bool:
        # A synchronous plan over a source that never waits runs in the caller's thread,
        # without an event loop: the fused loop or the generic interpreter, nothing else.
        return not (plan.is_async or plan.source.prefers_async)

    def refuses_running_loop(self, plan: Plan) -> bool:
        # A source that waits (Flow.queue, a publisher) would block the loop once it ran dry:
        # refuse before reading anything, so no item is taken and then stranded.
        return not self.runs_inline(plan)


class _GenericSegment:
    """A run of stages on the generic interpreter (a fresh interpreter per iteration)."""

    __slots__ = ("nodes", "stats")

    def __init__(self, nodes: Sequence[Node], stats: Sequence[StageStats]) -> None:
        self.nodes = nodes
        self.stats = stats

    @property
    def width(self) -> int:
        return len(self.stats)

    def iterate(self, src: Iterator[Any], upstream: StageStats) -> Iterator[Any]:
        return _drive(Interpreter(self.nodes, self.stats), src, upstream)

    def aiterate(
        self, src: AsyncIterator[Any] | Iterator[Any], upstream: StageStats, *, sync: bool
    ) -> AsyncIterator[Any]:
        """``sync``: ``src`` is a plain iterator, to be read inline."""
        return _adrive(Interpreter(self.nodes, self.stats), src, upstream, sync=sync)

    def settle(self) -> int:
        return self.stats[0].received


Segment = FusedRun | Boundary | _GenericSegment


def _segments(nodes: Sequence[Node], stats: Sequence[StageStats], fuse: bool) -> list[Segment]:
    """Cut the nodes into fused runs, boundaries and generic runs, each with its stats."""
    out: list[Segment] = []
    i = 0
    while i < len(nodes):
        stage = nodes[i].stage
        if isinstance(stage, Buffer):
            out.append(Boundary(stage.n, stats[i], stage.overflow))
            i += 1
            continue
        fusible = fuse and is_fusible(nodes[i])
        j = i + 1
        while (
            j < len(nodes)
            and (fuse and is_fusible(nodes[j])) == fusible
            and not isinstance(nodes[j].stage, Buffer)
        ):
            j += 1
        if fusible:
            out.append(FusedRun(nodes[i:j], stats[i:j]))
        else:
            out.append(_GenericSegment(nodes[i:j], stats[i:j]))
        i = j
    return out


def _feed_next(interp: Interpreter, src: Iterator[Any], upstream: StageStats) -> None:
    """Feed the interpreter the next item of a synchronous ``src``, or its end or error."""
    try:
        item = next(src)
    except StopIteration:
        interp.feed_end()
    except Exception as exc:
        interp.feed_error(annotate(exc, upstream.name))
    else:
        interp.feed(item)


def _drive(interp: Interpreter, src: Iterator[Any], upstream: StageStats) -> Iterator[Any]:
    """A generic segment as a generator: one ``demand`` per item asked for."""
    interp.start()
    try:
        while True:
            if not interp.output and not interp.finished:
                interp.demand()
                while not interp.output and not interp.finished:
                    if interp.scheduled:
                        raise RuntimeError(_NO_LOOP)
                    if not interp.input_wanted:
                        raise RuntimeError(_STALL)
                    _feed_next(interp, src, upstream)
            if interp.output:
                yield interp.output.popleft()
            elif interp.finished:
                if interp.error is not None:
                    raise interp.error
                return
    finally:
        if not interp.finished:
            interp.cancel()
        interp.stop()
        close = getattr(src, "close", None)
        if close is not None:
            close()


async def _adrive(
    interp: Interpreter,
    src: AsyncIterator[Any] | Iterator[Any],
    upstream: StageStats,
    *,
    sync: bool,
) -> AsyncIterator[Any]:
    """The async twin of :func:`_drive`, which also runs the work stages schedule.

    While work is running, the segment waits for whichever comes first: a finished piece of
    work, or the input item a stage asked for. With no work in flight it simply awaits input.
    A ``sync`` ``src`` (a sync source, or fused maps over one) is read inline: the item is
    there at once, so no task is spent waiting for it; the loop still gets a turn every few
    hundred items.
    """
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[Any]] = set()
    finished: deque[tuple[int, Done, Any, BaseException | None]] = deque()
    wake: list[asyncio.Future[None]] = []
    input_task: asyncio.Task[Any] | None = None
    sync_src = cast("Iterator[Any]", src) if sync else None
    inline_reads = 0

    def on_work_end(index: int, done: Done, task: asyncio.Task[Any]) -> None:
        running.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        finished.append((index, done, None if error is not None else task.result(), error))
        poke(task)

    def poke(_: object) -> None:
        if wake and not wake[0].done():
            wake[0].set_result(None)

    def start_work() -> None:
        scheduled = interp.scheduled
        while scheduled:
            index, work, done = scheduled.pop(0)
            try:
                task = asyncio.ensure_future(work())
            except Exception as exc:  # the work failed before it could even start
                finished.append((index, done, None, exc))
                continue
            running.add(task)
            task.add_done_callback(functools.partial(on_work_end, index, done))

    async def next_input() -> None:
        try:
            item = await anext(cast("AsyncIterator[Any]", src))
        except StopAsyncIteration:
            interp.feed_end()
        except Exception as exc:
            interp.feed_error(annotate(exc, upstream.name))
        else:
            interp.feed(item)

    interp.start()
    try:
        while True:
            if input_task is not None and input_task.done():
                # it may have ended while this generator was suspended at a yield, when no
                # waiter was there to be woken: look at it before deciding to wait
                task, input_task = input_task, None
                task.result()  # next_input handles its errors; this re-raises only bugs
            while finished:
                interp.work_done(*finished.popleft())
            start_work()
            if interp.output:
                yield interp.output.popleft()
                continue
            if interp.finished:
                if interp.error is not None:
                    raise interp.error
                return
            interp.demand()
            start_work()
            if interp.output or interp.finished or finished:
                continue
            if sync_src is not None and interp.input_wanted:
                _feed_next(interp, sync_src, upstream)
                start_work()
                inline_reads += 1
                if inline_reads >= _YIELD_EVERY:
                    inline_reads = 0
                    await asyncio.sleep(0)
                continue
            if not running and input_task is None:
                if not interp.input_wanted:
                    raise RuntimeError(_STALL)
                await next_input()  # nothing else can happen meanwhile: no task needed
                start_work()
                continue
            if interp.input_wanted and input_task is None:
                input_task = loop.create_task(next_input())
                input_task.add_done_callback(poke)
            waiter: asyncio.Future[None] = loop.create_future()
            wake[:] = [waiter]
            await waiter  # woken by finished work or by the input item
            wake.clear()
    finally:
        pending = [*running, *([input_task] if input_task is not None else [])]
        again = await settle_tasks(pending) if pending else False
        if not interp.finished:
            interp.cancel()
        interp.stop()
        if sync_src is not None:
            close = getattr(sync_src, "close", None)
            if close is not None:
                close()
        else:
            aclose = getattr(src, "aclose", None)
            if aclose is not None:
                await aclose()
        if again:
            raise asyncio.CancelledError


_NO_LOOP: Final = (
    "a stage scheduled asynchronous work in a run without an event loop; its blueprint must "
    "set is_async = True"
)
_STALL: Final = (
    "a stage neither pushed nor pulled after on_pull: its logic breaks the port protocol"
)


async def _cooperative(src: Iterator[Any]) -> AsyncIterator[Any]:
    """A sync iterator inside an async run: give the loop a turn every few hundred items."""
    n = 0
    try:
        for item in src:
            yield item
            n += 1
            if n >= _YIELD_EVERY:
                n = 0
                await asyncio.sleep(0)
    finally:
        close = getattr(src, "close", None)
        if close is not None:
            close()


class _Counted:
    """Counts items passing from the source when no stage follows it to count them."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def iterate(self, src: Iterator[Any]) -> Iterator[Any]:
        try:
            for item in src:
                self.n += 1
                yield item
        finally:
            close = getattr(src, "close", None)
            if close is not None:
                close()

    async def aiterate(self, src: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for item in src:
                self.n += 1
                yield item
        finally:
            close = getattr(src, "aclose", None)
            if close is not None:
                await close()


def _is_running(agen: object) -> bool:
    """Whether an async generator is being run (or closed) by someone else right now."""
    return bool(getattr(agen, "ag_running", False))


@final
class PullRun(Run[Any]):
    """One run on the pull engine."""

    __slots__ = (
        "_agen",
        "_counted",
        "_engine",
        "_gen",
        "_plan",
        "_report",
        "_segments",
        "_started",
        "_stats",
    )

    def __init__(self, engine: PullEngine, plan: Plan) -> None:
        self._engine = engine
        self._plan = plan
        self._stats = [StageStats(name) for name in plan.names()]
        self._segments = _segments(plan.nodes, self._stats[1:], engine.fuse)
        self._counted = _Counted()
        self._gen: Iterator[Any] | None = None
        self._agen: AsyncIterator[Any] | None = None
        self._report: Report | None = None
        self._started = 0.0

    # -- building the chain of iterators ---------------------------------------------------
    def _chain(self) -> Iterator[Any]:
        self._started = time.perf_counter()
        it: Iterator[Any] = self._plan.source.open(self)
        if not self._segments:
            return self._counted.iterate(it)
        position = 0  # index into self._stats of the stage upstream of the next segment
        for seg in self._segments:
            it = seg.iterate(it, self._stats[position])
            position += seg.width
        return it

    def _achain(self) -> AsyncIterator[Any]:
        self._started = time.perf_counter()
        source = self._plan.source
        # A synchronous prefix (a sync source, and fused stages that read one item per output)
        # stays a plain iterator until something needs the loop; a generic segment reads it
        # inline, without a task per item.
        sync = not (source.is_async or source.prefers_async)
        it: Any = source.open(self) if sync else source.open_async(self)
        if not self._segments:
            return self._counted.aiterate(_cooperative(it) if sync else it)
        position = 0
        for seg in self._segments:
            upstream = self._stats[position]
            position += seg.width
            if isinstance(seg, _GenericSegment):
                it, sync = seg.aiterate(it, upstream, sync=sync), False
            elif sync and isinstance(seg, FusedRun) and seg.reads_one_per_output:
                it = seg.iterate(it, upstream)
            else:
                it, sync = seg.aiterate(_cooperative(it) if sync else it, upstream), False
        return _cooperative(it) if sync else it

    # -- RunContext: what the source may ask of this run -------------------------------------
    @property
    def source_stats(self) -> StageStats:
        return self._stats[0]

    def open_input(self, plan: Plan) -> PullRun:
        return self._engine.open(plan)

    # -- Run interface ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        if self._plan.is_async:
            self._gen = iterate_on_private_loop(self._achain())
            return self._iter_sync(self._gen)
        segs, sized = self._segments, self._sized()
        if len(segs) == 1 and isinstance(segs[0], FusedRun) and sized is not None:
            self._started = time.perf_counter()
            direct = segs[0].iterate_builtin(self._plan.source.open(self), sized)
            if direct is not None:  # it names the stage of any error itself
                self._gen = direct
                return direct
        self._gen = self._chain()
        return self._iter_sync(self._gen)

    def _sized(self) -> int | None:
        """The exact length of a range, list or tuple source (it lets builtins run the chain)."""
        items = getattr(self._plan.source, "iterable", None)
        return len(items) if isinstance(items, range | list | tuple) else None

    def _iter_sync(self, gen: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from gen
        except Exception as exc:
            annotate(exc, self._plan.source_name)
            raise
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        agen = self._agen = self._achain()
        try:
            async for item in agen:
                yield item
        except Exception as exc:
            annotate(exc, self._plan.source_name)
            raise
        finally:
            await self.aclose()

    def collect(self) -> list[Any]:
        segs = self._segments
        if self._plan.is_async:
            return super().collect()  # through consume: one event-loop call for the run
        if len(segs) != 1 or not isinstance(segs[0], FusedRun):
            return list(self)
        out: list[Any] = []
        self._started = time.perf_counter()
        try:
            segs[0].collect(self._plan.source.open(self), out, self._sized())
        except Exception as exc:
            annotate(exc, self._plan.source_name)
            raise
        finally:
            self._finish()
        return out

    def consume(self, fn: Callable[[Any], object]) -> None:
        if not self._plan.is_async:
            super().consume(fn)
            return

        async def drain() -> None:  # one event-loop call for the run, not one per item
            async with closing(aiter(self)) as items:  # closed now if fn raises
                async for item in items:
                    fn(item)

        run_on_private_loop(drain(), "iterating a flow with an async part")

    def close(self) -> None:
        if self._report is not None:
            return
        try:
            close = getattr(self._gen, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    async def aclose(self) -> None:
        if self._report is not None:
            return
        try:
            if self._agen is not None:
                aclose = getattr(self._agen, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except RuntimeError:
                        # "already running": a loop left with `break` made the run garbage,
                        # and the collector finalizes the chain on its own, concurrently
                        if not _is_running(self._agen):
                            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        """Turn the segments' counters into stats and freeze the Report."""
        if self._report is not None:
            return
        stats = self._stats
        # Walk backwards: each segment tells what it received, which its upstream emitted.
        position = len(stats) - 1
        for seg in reversed(self._segments):
            received = seg.settle()
            position -= seg.width
            stats[position].emitted = received
        if not self._segments:
            stats[0].emitted = self._counted.n
        self._plan.source.settle(stats[0])  # what only the source knows (rejected offers)
        delivered = stats[-1].emitted
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        self._report = Report.build(
            stats, delivered=delivered, engine=self._engine.name, elapsed_seconds=elapsed
        )

    def report(self) -> Report:
        if self._report is None:
            self._finish()
        assert self._report is not None
        return self._report
