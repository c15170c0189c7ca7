"""The demand-pull engine: synchronous islands run in the caller's thread, item by item on demand.

A plan is cut into segments: maximal runs of fusible stages become one generated loop
(``fused.py``), everything else is run by the kernel's interpreter (``_core/interpreter.py``).
Each segment is an iterator transform, so pulling an item from the run pulls exactly as much as
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
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Any, Final, cast, final

from rxpipe._core import clock
from rxpipe._core.clock import Deadlines
from rxpipe._core.interpreter import Interpreter
from rxpipe._core.stats import StageStats
from rxpipe._core.steps import (
    COMPLETE,
    END,
    GONE,
    NOTHING,
    RECEIVE,
    SEND,
    STALL,
    Failure,
    Steps,
    stage_steps,
)
from rxpipe._core.work import Work
from rxpipe.engines.base import (
    Engine,
    Plan,
    Run,
    StopRequest,
    closing,
    iterate_on_private_loop,
    run_on_private_loop,
)
from rxpipe.engines.pull.boundary import Boundary
from rxpipe.engines.pull.fused import FusedRun, is_fusible
from rxpipe.stages.buffering import Buffer
from rxpipe.stages.errors import Node, annotate, interpreter
from rxpipe.telemetry.collector import RunTelemetry, check_stall_after
from rxpipe.telemetry.report import Report
from rxpipe.telemetry.sampler import DEFAULT_STALL_SECONDS

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
        stall_after: in a run with an observed stage, log one warning on the ``"rxpipe"``
            logger when no item moved for this many seconds (``None``: never).
    """

    name = "pull"

    def __init__(
        self,
        *,
        prefetch: int = 256,
        fuse: bool = True,
        stall_after: float | None = DEFAULT_STALL_SECONDS,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be an int >= 1, got {prefetch!r}")
        self.prefetch = prefetch
        self.fuse = fuse
        self.stall_after = check_stall_after(stall_after)

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
        return _drive(interpreter(self.nodes, self.stats), src, upstream)

    def aiterate(
        self,
        src: AsyncIterator[Any] | Iterator[Any],
        upstream: StageStats,
        stop: StopRequest,
        *,
        sync: bool,
    ) -> AsyncIterator[Any]:
        """``sync``: ``src`` is a plain iterator, to be read inline."""
        return _adrive(interpreter(self.nodes, self.stats), src, upstream, stop, sync=sync)

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


def _drive(interp: Interpreter, src: Iterator[Any], upstream: StageStats) -> Iterator[Any]:
    """A generic segment in a sync run: the kernel's step machine, its output yielded to the
    consumer (one ``demand`` per item asked for), its input read from ``src``.

    Once a stage starts a timer the rest of the run goes on in :func:`_drive_timed`: a run
    that never does pays nothing for timers.
    """
    finished: deque[Any] = deque()
    steps = stage_steps(interp, finished)
    output, scheduled = interp.output, interp.scheduled
    held: list[Any] = []  # an input read but not yet handed over (see _drive_timed)
    got: Any = None
    try:
        op = next(steps)
        while True:
            if scheduled:
                how = yield from _drive_timed(steps, op, interp, src, upstream, finished, held)
                if how is not COMPLETE and how is not GONE:
                    raise how
                return
            if op == SEND:
                yield output.popleft()
                got = None
            elif op == RECEIVE:
                got = _next_outcome(src, upstream)
            else:
                raise RuntimeError(STALL)
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        if ended.value is not COMPLETE and ended.value is not GONE:
            raise ended.value from None
    finally:
        steps.close()
        if held and _is_item(held[0]):
            # read from upstream, never handed over: the first stage received it and lost it
            interp.stats[0].received += 1
            interp.stats[0].lost += 1
        if not interp.finished:
            interp.cancel()
        interp.stop()
        close = getattr(src, "close", None)
        if close is not None:
            close()


def _drive_timed(
    steps: Steps,
    op: int,
    interp: Interpreter,
    src: Iterator[Any],
    upstream: StageStats,
    finished: deque[Any],
    held: list[Any],
) -> Generator[Any, None, Any]:
    """:func:`_drive` once a stage started a timer: the timers are deadlines, no event loop.

    A timer that came due is delivered before the input read after it (a ``chunk(within=)``
    group closes before an item that came late), and before the next read when the consumer
    had the thread meanwhile; a stage waiting for nothing but a timer sleeps until it is due.
    """
    output, scheduled = interp.output, interp.scheduled
    timers = Deadlines(finished)
    monotonic = clock.monotonic
    sent = False
    got: Any = None
    try:
        while True:
            if scheduled:
                timers.arm(scheduled)
            if op == SEND:
                yield output.popleft()
                got = None
                sent = True
            elif op == RECEIVE:
                if held:
                    got = held.pop()
                elif sent and timers.next_due <= monotonic() and timers.fire():
                    got = NOTHING  # due while the consumer had the thread: deliver it first
                else:
                    got = _next_outcome(src, upstream)
                    if timers.next_due <= monotonic() and timers.fire():
                        held.append(got)  # the timer first, then this input
                        got = NOTHING
                sent = False
            elif not timers.wait():
                raise RuntimeError(STALL)
            else:
                got = None
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        return ended.value  # how the steps ended
    finally:
        timers.clear()


def _is_item(got: Any) -> bool:
    """Whether an outcome of a read is an item (not the end, a failure or nothing)."""
    return got is not NOTHING and got is not END and type(got) is not Failure


async def _adrive(
    interp: Interpreter,
    src: AsyncIterator[Any] | Iterator[Any],
    upstream: StageStats,
    stop: StopRequest,
    *,
    sync: bool,
) -> AsyncIterator[Any]:
    """A generic segment in an async run: the kernel's step machine, its output yielded to the
    consumer, its input read from ``src``, the work its stages schedule run beside it.

    While work is running, the segment waits for whichever comes first: a finished piece of
    work, or the input item a stage asked for. With no work in flight it simply awaits input.
    A ``sync`` ``src`` (a sync source, or fused maps over one) is read inline: the item is
    there at once, so no task is spent waiting for it; the loop still gets a turn every few
    hundred items.
    """
    work = Work()
    steps = stage_steps(interp, work.finished)
    output, scheduled = interp.output, interp.scheduled
    sync_src = cast("Iterator[Any]", src) if sync else None
    receive = functools.partial(_anext_outcome, cast("AsyncIterator[Any]", src), upstream)
    inline_reads = 0
    loop_time = asyncio.get_running_loop().time
    held: list[Any] = []  # an input read inline, handed over after a timer that came due
    got: Any = None
    try:
        op = next(steps)
        while True:
            if scheduled:
                work.start(scheduled)
            if op == SEND:
                yield output.popleft()
                got = None
            elif op == RECEIVE:
                if held:
                    got = held.pop()
                elif sync_src is not None:
                    got = _next_outcome(sync_src, upstream)
                    inline_reads += 1
                    if work.timers and work.next_due <= loop_time() and work.fire_due():
                        # due while the read blocked the loop: the timer first, then the input
                        held.append(got)
                        got = NOTHING
                    elif inline_reads >= _YIELD_EVERY or stop.hurry:
                        inline_reads = 0
                        await asyncio.sleep(0)  # (a stop from elsewhere lands here)
                else:
                    got = await work.awaiting(receive)
            else:  # WAIT
                await work.wait_or_stall(upstream.name)
                got = None
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        if ended.value is not COMPLETE and ended.value is not GONE:
            raise ended.value from None
    finally:
        again = await work.stop()
        got = work.input_at_stop()
        if held and _is_item(held[0]):
            got = held[0]
        if _is_item(got):
            # upstream handed it over while the segment was stopping: the first stage
            # received it and held it, so it is lost there (upstream counted it emitted)
            interp.stats[0].received += 1
            interp.stats[0].lost += 1
        steps.close()
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


def _next_outcome(src: Iterator[Any], upstream: StageStats) -> Any:
    """The next item of a sync ``src``, as the step machine takes it."""
    try:
        return next(src)
    except StopIteration:
        return END
    except Exception as exc:
        return Failure(annotate(exc, upstream.name))


async def _anext_outcome(src: AsyncIterator[Any], upstream: StageStats) -> Any:
    """The next item of an async ``src``, as the step machine takes it."""
    try:
        return await anext(src)
    except StopAsyncIteration:
        return END
    except Exception as exc:
        return Failure(annotate(exc, upstream.name))


async def _cooperative(src: Iterator[Any], stop: StopRequest) -> AsyncIterator[Any]:
    """A sync iterator inside an async run: give the loop a turn every few hundred items, and
    at once when the run is asked to stop from elsewhere (the stop is a cancellation that
    lands at the next turn: a filter that rejects every item would otherwise delay it by a
    few hundred reads)."""
    n = 0
    try:
        for item in src:
            yield item
            n += 1
            if n >= _YIELD_EVERY or stop.hurry:
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


def _fill(boundary: Boundary) -> Callable[[], tuple[int, int]]:
    """How the sampler reads a buffer's fill: (items held, capacity)."""
    return lambda: (len(boundary.held), boundary.n)


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
        "_telemetry",
    )

    def __init__(self, engine: PullEngine, plan: Plan) -> None:
        self._engine = engine
        self._plan = plan
        self._stats = [StageStats(name) for name in plan.names()]
        self._telemetry = RunTelemetry(plan, self._stats, engine.name, engine.stall_after)
        # an observed run keeps its fused loops: they call the user's functions timed
        self._segments = _segments(plan.nodes, self._stats[1:], engine.fuse)
        if plan.observed:  # a buffer's fill is the input queue of the stage after it
            position = 1
            for seg in self._segments:
                position += seg.width
                if isinstance(seg, Boundary):
                    self._telemetry.probe_queue(position, _fill(seg))
        self._counted = _Counted()
        self._gen: Iterator[Any] | None = None
        self._agen: AsyncIterator[Any] | None = None
        self._report: Report | None = None
        self._started = 0.0

    # -- building the chain of iterators ---------------------------------------------------
    def _chain(self) -> Iterator[Any]:
        self._started = time.perf_counter()
        self._telemetry.start()
        it: Iterator[Any] = self._telemetry.source(self._plan.source.open(self))
        if not self._segments:
            return self._counted.iterate(it)
        position = 0  # index into self._stats of the stage upstream of the next segment
        for seg in self._segments:
            it = seg.iterate(it, self._stats[position])
            position += seg.width
        return it

    def _achain(self) -> AsyncIterator[Any]:
        self._started = time.perf_counter()
        self._telemetry.start()
        source = self._plan.source
        # A synchronous prefix (a sync source, and fused stages that read one item per output)
        # stays a plain iterator until something needs the loop; a generic segment reads it
        # inline, without a task per item.
        sync = not (source.is_async or source.prefers_async)
        stop = self._stop_request()
        telemetry = self._telemetry
        it: Any = (
            telemetry.source(source.open(self))
            if sync
            else telemetry.source_async(source.open_async(self))
        )
        if not self._segments:
            return self._counted.aiterate(_cooperative(it, stop) if sync else it)
        position = 0
        for seg in self._segments:
            upstream = self._stats[position]
            position += seg.width
            if isinstance(seg, _GenericSegment):
                it, sync = seg.aiterate(it, upstream, stop, sync=sync), False
            elif sync and isinstance(seg, FusedRun) and seg.reads_one_per_output:
                it = seg.iterate(it, upstream)
            else:
                it, sync = seg.aiterate(_cooperative(it, stop) if sync else it, upstream), False
        return _cooperative(it, stop) if sync else it

    # -- RunContext: what the source may ask of this run -------------------------------------
    @property
    def source_stats(self) -> StageStats:
        return self._stats[0]

    def open_input(self, plan: Plan) -> PullRun:
        return self._engine.open(plan)

    # -- Run interface ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        return self._guarded(self._iterate())

    def _iterate(self) -> Iterator[Any]:
        if self._plan.is_async:
            self._gen = iterate_on_private_loop(self._achain(), self._stop_request())
            return self._iter_sync(self._gen)
        segs, sized = self._segments, self._sized()
        if (
            len(segs) == 1
            and isinstance(segs[0], FusedRun)
            and sized is not None
            and not self._plan.observed  # the observed source is timed, in _chain
        ):
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

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._aguarded(self._aiterate())

    async def _aiterate(self) -> AsyncIterator[Any]:
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
        if len(segs) != 1 or not isinstance(segs[0], FusedRun) or self._plan.observed:
            return list(self)  # (an observed run: its source is timed and sampled, in _chain)
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
        if self._report is not None or self._close_elsewhere():
            return
        try:
            close = getattr(self._gen, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    async def aclose(self) -> None:
        if self._report is not None or await self._aclose_elsewhere():
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
        self._telemetry.stop()
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
            stats,
            delivered=delivered,
            engine=self._engine.name,
            elapsed_seconds=elapsed,
            telemetry=self._telemetry,
        )
        self._telemetry.flush()

    def report(self) -> Report:
        if self._report is None:
            self._finish()
        assert self._report is not None
        return self._report
