"""Regressions for defects a review found: each test failed before its fix."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from rxpipe import Flow, MissingBackpressureError, Overflow, PushEngine, stage
from rxpipe.engines import Engine
from rxpipe.stages import LinearLogic, LinearStage, Ports, Stage, StageLogic
from tests.helpers import read_ahead


class Recorder:
    def __init__(self, request: int = 100) -> None:
        self.events: list[Any] = []
        self.request = request
        self.sub: Any = None

    def on_subscribe(self, s: Any) -> None:
        self.sub = s
        if self.request:
            s.request(self.request)

    def on_next(self, x: Any) -> None:
        self.events.append(x)

    def on_error(self, e: BaseException) -> None:
        self.events.append(("error", type(e).__name__))

    def on_complete(self) -> None:
        self.events.append("complete")


def test_processor_works_when_downstream_subscribes_first() -> None:
    proc = stage().map(lambda x: x * 10).to_processor()
    down = Recorder()
    proc.subscribe(down)
    Flow.range(5).to_publisher().subscribe(proc)
    assert down.events == [0, 10, 20, 30, 40, "complete"]


def test_processor_cancels_upstream_that_ignores_demand() -> None:
    cancelled = []

    class Greedy:
        def subscribe(self, s: Any) -> None:
            class Sub:
                def request(self, n: int) -> None:
                    pass

                def cancel(self) -> None:
                    cancelled.append(True)

            s.on_subscribe(Sub())
            s.on_next(1)  # nobody asked

    proc = stage().map(lambda x: x).to_processor()
    down = Recorder(request=0)
    proc.subscribe(down)
    Greedy().subscribe(proc)
    assert down.events == [("error", MissingBackpressureError.__name__)]
    assert cancelled == [True]


def test_to_processor_refuses_stages_that_need_an_event_loop() -> None:
    async def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="event loop"):
        stage().map_async(f).to_processor()


@pytest.mark.parametrize(
    "frag",
    [
        stage().filter(lambda x: x % 2),
        stage().map(lambda x: 1 // (x % 5), errors="skip"),
        stage().filter(lambda x: x % 3).take(2),
    ],
    ids=["filter", "skip-errors", "take"],
)
@pytest.mark.parametrize("fan", ["parallel", "partition"])
def test_fan_out_reports_what_its_copies_filtered_and_failed(
    engine: Engine, frag: Any, fan: str
) -> None:
    flow = (
        Flow.range(20).parallel(2, frag)
        if fan == "parallel"
        else Flow.range(20).partition(lambda x: x % 3, 2, frag)
    )
    report = flow.run(engine=engine)
    st = report.stages[fan]
    assert 0 < st.received <= 20
    if read_ahead(engine, flow) == 0:  # push engines also count channel items as lost here
        assert st.received == st.emitted + st.filtered + st.errored + st.lost
    source = report.stages["range"]
    assert source.emitted == report.delivered + sum(
        s.filtered + s.errored + s.dropped + s.lost for s in report.stages.values()
    )


def test_overflow_buffer_needs_a_channel_with_room() -> None:
    flow = Flow.range(10).buffer(4, overflow=Overflow.DROP_OLDEST, name="buf")
    with pytest.raises(ValueError, match="needs room"):
        flow.to_list(engine=PushEngine(buffer={"buf": 0, "*": 1}))


def test_to_publisher_checks_engine_settings_when_made() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        Flow.range(3).to_publisher(engine=PushEngine(buffer={"nosuch": 1}))


def test_stop_iteration_from_a_user_function_is_not_a_silent_end(engine: Engine) -> None:
    def f(x: int) -> int:
        if x == 5:
            raise StopIteration
        return x

    with pytest.raises((RuntimeError, StopIteration)):
        Flow.range(10).map(f).to_list(engine=engine)
    with pytest.raises((RuntimeError, StopIteration)):
        list(Flow.range(10).map(f))


def test_stop_iteration_inside_async_flows_too() -> None:
    def f(x: int) -> int:
        if x == 2:
            raise StopIteration
        return x

    with pytest.raises((RuntimeError, StopIteration)):
        asyncio.run(Flow.range(5).map(f).to_list_async())


@pytest.mark.timeout(60)
def test_fan_out_stops_cleanly_while_copies_still_have_work_running(engine: Engine) -> None:
    async def jitter(x: int) -> int:
        await asyncio.sleep((x * 7919 % 13) / 5000)
        return x

    flow = Flow.range(30).parallel(3, stage().map_async(jitter, concurrency=3)).take(3)
    for _ in range(15):  # the hang it guards against needed an unlucky interleaving
        report = flow.run(engine=engine)
        assert report.delivered == 3


@pytest.mark.parametrize("ordered", [True, False])
def test_executor_batches_report_errors_and_in_flight_items(engine: Engine, ordered: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def every_third_fails(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(x)
        return x

    def slow(x: int) -> int:
        import time

        time.sleep(0.002)
        return x

    with ThreadPoolExecutor(4) as pool:
        skipping = Flow.range(12).parallel(
            2, stage().map(every_third_fails, errors="skip"), executor=pool, ordered=ordered
        )
        report = skipping.run(engine=engine)
        assert report.delivered == 8
        assert report.stages["parallel"].errored == 4
        early = Flow.range(40).parallel(2, stage().map(slow), executor=pool, ordered=ordered)
        report = early.take(1).run(engine=engine)
        source = report.stages["range"].emitted
        accounted = report.delivered + sum(
            s.filtered + s.errored + s.dropped + s.lost for s in report.stages.values()
        )
        assert source == accounted


# -- second review (session 2) ------------------------------------------------------------------


class Abort(BaseException):
    """Not an ``Exception``: what ``SystemExit`` or a user's own BaseException looks like."""


def _abort_at_10(x: int) -> int:
    if x == 10:
        raise Abort
    return x


async def _abort_at_10_async(x: int) -> int:
    return _abort_at_10(x)


async def _slow_identity(x: int) -> int:
    await asyncio.sleep(0.002)
    return x


@pytest.mark.parametrize(
    "build",
    [
        lambda: Flow.range(100).map(_abort_at_10),
        lambda: Flow.range(100).map(_abort_at_10).map(str),
        lambda: Flow.range(100).map_async(_abort_at_10_async).map(str),
        lambda: Flow.range(100).map(_abort_at_10).map_async(_slow_identity, concurrency=4),
        lambda: (
            Flow.range(100).map_async(_abort_at_10_async).map_async(_slow_identity, concurrency=4)
        ),
        lambda: Flow.range(100).map(_abort_at_10).buffer(4, overflow=Overflow.DROP_OLDEST),
        lambda: Flow.range(100).map(_abort_at_10, errors="skip"),
        lambda: Flow.range(100).map_async(_abort_at_10_async, concurrency=3, errors="skip"),
        lambda: Flow.range(100).parallel(2, stage().map(_abort_at_10), ordered=True),
    ],
    ids=[
        "map",
        "map-map",
        "map_async-map",
        "map-map_async",
        "map_async-map_async",
        "buffer",
        "skip",
        "map_async-skip",
        "parallel",
    ],
)
def test_a_base_exception_ends_the_run_on_every_engine(engine: Engine, build: Any) -> None:
    """The push runners let it escape and the run hung; now it travels down like any error."""
    with pytest.raises(Abort):
        build().to_list(engine=engine)


def test_async_run_gives_the_loop_turns_through_a_filtering_prefix() -> None:
    """A filter reading without end must not hold the loop (the inline read skipped it)."""

    async def main(with_map_async: bool) -> int:
        turns = 0

        async def heartbeat() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        flow = Flow.range(200_000).filter(lambda x: x == -1)
        if with_map_async:
            flow = flow.map_async(_slow_identity)
        beat = asyncio.create_task(heartbeat())
        try:
            assert await flow.to_list_async() == []
        finally:
            beat.cancel()
        return turns

    assert asyncio.run(main(True)) > 100
    assert asyncio.run(main(False)) > 100


def test_an_endless_filtered_source_can_be_cancelled() -> None:
    closed: list[bool] = []

    def endless() -> Any:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    async def main() -> None:
        flow = Flow.from_iterable(endless()).filter(lambda x: x < 0).map_async(_slow_identity)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flow.to_list_async(), 0.1)

    asyncio.run(main())
    assert closed == [True]


class _BothProtocols:
    """An async iterator that also has ``__next__`` (some cursors do): only async works."""

    def __init__(self, n: int) -> None:
        self.i, self.n = 0, n

    def __iter__(self) -> _BothProtocols:
        return self

    def __next__(self) -> int:
        raise RuntimeError("use async for")

    def __aiter__(self) -> _BothProtocols:
        return self

    async def __anext__(self) -> int:
        await asyncio.sleep(0)
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i


@pytest.mark.parametrize("tail", ["map_async", "map", "none"])
def test_an_async_source_that_is_also_an_iterator_is_read_async(tail: str) -> None:
    flow = Flow.from_async_iterable(_BothProtocols(5))
    if tail == "map_async":
        flow = flow.map_async(_slow_identity)
    elif tail == "map":
        flow = flow.map(lambda x: x)
    assert asyncio.run(flow.to_list_async()) == [1, 2, 3, 4, 5]


class _TimerLogic(StageLogic[Any, Any]):
    """Passes items on; a 10 ms timer scheduled at start records how many had passed."""

    def __init__(self, ports: Ports[Any, Any], log: dict[str, int]) -> None:
        super().__init__(ports)
        self.log = log
        self.n = 0
        self.held: list[Any] = []

    def pre_start(self) -> None:
        self.ports.schedule(lambda: asyncio.sleep(0.01), self._fired)
        self.ports.pull()

    def _fired(self, result: Any, error: BaseException | None) -> None:
        self.log["items_before_timer"] = self.n
        if self.ports.is_upstream_closed() and not self.held:
            self.ports.complete()

    def on_pull(self) -> None:
        if self.held:
            self.ports.push(self.held.pop())
            if not self.ports.is_upstream_closed():
                self.ports.pull()
            elif "items_before_timer" in self.log:
                self.ports.complete()

    def on_push(self) -> None:
        self.n += 1
        item = self.ports.grab()
        if self.ports.can_push():
            self.ports.push(item)
            self.ports.pull()
        else:
            self.held.append(item)

    def on_upstream_finish(self) -> None:
        if not self.held and "items_before_timer" in self.log:
            self.ports.complete()


@dataclass(frozen=True)
class _Timer(Stage[Any, Any]):
    log: dict[str, int]
    operator: ClassVar[str] = "timer"
    is_async: ClassVar[bool] = True

    def create_logic(self, ports: Ports[Any, Any]) -> StageLogic[Any, Any]:
        return _TimerLogic(ports, self.log)


def test_a_stage_whose_input_is_always_ready_still_runs_its_timers() -> None:
    """Threads runtime: taking ready items without a pause starved the stage's own loop."""
    log: dict[str, int] = {}
    n = 200_000
    flow = Flow.range(n).via(_Timer(log))
    assert flow.count(engine=PushEngine(runtime="threads", buffer=4096)) == n
    assert log["items_before_timer"] < n


# -- found by the random-chain property once it had map_async and parallel -----------------------


async def _after_turns(x: int) -> int:
    """Finishes after ``x % 4`` loop turns: calls end out of order."""
    for _ in range(x % 4):
        await asyncio.sleep(0)
    return x * 2


def test_a_stage_is_not_told_upstream_closed_while_its_last_item_is_on_the_way(
    engine: Engine,
) -> None:
    """The interpreter closed the port before delivering the item queued ahead of the end:
    a map_async asked, saw nothing running and upstream closed, and finished without it."""
    flow = (
        Flow.from_iterable([1, 0])
        .map_async(_after_turns)
        .map_async(_after_turns)
        .map_async(_after_turns, concurrency=2)
    )
    assert flow.to_list(engine=engine) == [8, 0]


def test_async_segments_on_both_sides_of_a_fused_one(engine: Engine) -> None:
    """The pull engine read its input twice at once ("anext(): ... already running")."""

    async def same_after_turns(x: int) -> int:
        return await _after_turns(x) // 2

    flow = Flow.range(50).map_async(same_after_turns, concurrency=2).map(lambda x: x + 1)
    flow = flow.map_async(same_after_turns, concurrency=3)
    assert flow.to_list(engine=engine) == [x + 1 for x in range(50)]


def test_input_that_arrives_while_the_consumer_holds_an_item_is_not_missed() -> None:
    """Sync iteration of an async flow: the input read beside running work finished while the
    driver sat at a yield (no waiter to wake), and the driver then waited forever."""

    def after_turns(f: Any) -> Any:
        async def call(x: int) -> int:
            for _ in range(x % 4):
                await asyncio.sleep(0)
            return int(f(x))

        return call

    items = [16, 10, 1, 4, 2, -4]
    flow = (
        Flow.from_iterable(items)
        .flat_map(lambda x: range(x % 3))
        .map_async(after_turns(lambda x: -x), concurrency=5)
        .flat_map(lambda x: [x, x])
        .map_async(after_turns(lambda x: x - 3), concurrency=3, ordered=False)
    )
    want = [-y - 3 for x in items for y in range(x % 3) for _ in range(2)]
    assert sorted(flow) == sorted(want)


# -- third review: port state changes when events are delivered ---------------------------------


async def _turns(x: int, n: int) -> int:
    for _ in range(n):
        await asyncio.sleep(0)
    return x


def test_a_stage_does_not_pull_again_while_an_item_is_queued_for_it(engine: Engine) -> None:
    """The pull was cleared when the push was queued: the stage pulled again and the second
    item overwrote the first, with nothing counted."""
    d1 = {2: 4, 14: 4, -20: 2}
    d2 = {-2: 2, -14: 2, 20: 4}
    frag = (
        stage()
        .flat_map(lambda x: [x, x])
        .partition(lambda x: x % 3, 2, stage().map_async(lambda x: _turns(-x, d1[x])))
        .map_async(lambda x: _turns(x, d2[x]), concurrency=2, window=3)
    )
    out = Flow.from_iterable([2, 14, -20]).parallel(1, frag).to_list(engine=engine)
    assert sorted(out) == [-14, -14, -2, -2, 20, 20]


def test_map_async_never_exceeds_its_concurrency_behind_a_flat_map(engine: Engine) -> None:
    live = peak = 0

    async def counted(x: int) -> int:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await _turns(x, x % 4)
        live -= 1
        return x

    flow = (
        Flow.range(60)
        .flat_map(lambda x: [x, x], errors="skip")
        .map_async(counted, concurrency=1)
        .map_async(lambda x: _turns(x, (x * 7) % 4), concurrency=2)
    )
    assert sorted(flow.to_list(engine=engine)) == sorted(2 * list(range(60)))
    assert peak == 1


class _FlushAtEnd(LinearLogic[int, list[int]]):
    """Keeps items and emits them as one list at the end; item 4 raises."""

    def __init__(self, ports: Ports[int, list[int]]) -> None:
        super().__init__(ports)
        self.kept: list[int] = []

    def on_item(self, item: int) -> tuple[list[int], ...]:
        if item == 4:
            raise ValueError("bad item")
        self.kept.append(item)
        return ()

    def on_finish(self) -> tuple[list[int], ...]:
        return (self.kept,)


@dataclass(frozen=True)
class _Flush(LinearStage[int, list[int]]):
    operator: ClassVar[str] = "flush"

    def create_logic(self, ports: Ports[int, list[int]]) -> LinearLogic[int, list[int]]:
        return _FlushAtEnd(ports)


def test_a_skipped_error_on_the_last_item_still_lets_the_stage_flush(engine: Engine) -> None:
    """The supervisor saw upstream closed before on_upstream_finish and completed the stage."""

    async def last_is_slow(x: int) -> int:
        return await _turns(x, 3 if x == 4 else 0)

    flow = Flow.range(5).map_async(last_is_slow, concurrency=2).via(_Flush(), errors="skip")
    assert flow.to_list(engine=engine) == [[0, 1, 2, 3]]


class _FailsAfterEnd(LinearLogic[int, int]):
    def __init__(self, ports: Ports[int, int], error: type[BaseException]) -> None:
        super().__init__(ports)
        self.error = error

    def on_item(self, item: int) -> tuple[int, ...]:
        return (item,)

    def post_stop(self) -> None:
        raise self.error("post_stop failed")


@dataclass(frozen=True)
class _PostStopRaises(LinearStage[int, int]):
    error: type[BaseException]
    operator: ClassVar[str] = "post_stop_raises"

    def create_logic(self, ports: Ports[int, int]) -> LinearLogic[int, int]:
        return _FailsAfterEnd(ports, self.error)


@pytest.mark.parametrize("error", [ValueError, Abort])
def test_an_error_after_a_stage_ended_is_raised_not_swallowed(
    engine: Engine, error: type[BaseException]
) -> None:
    with pytest.raises(error, match="post_stop failed"):
        Flow.range(5).via(_PostStopRaises(error)).map(str).to_list(engine=engine)


def test_a_base_exception_in_an_async_stage_on_the_threads_runtime_ends_the_run() -> None:
    """The stage's helper pool waited for a thread blocked on the input channel: a hang."""

    async def few_then_quiet() -> Any:
        for i in range(3):
            yield i
        await asyncio.sleep(3600)

    flow = Flow.from_async_iterable(few_then_quiet()).parallel(
        4, stage().map_async(lambda x: _turns(x, 3)).map(_abort_at_10_or_always)
    )
    with pytest.raises(Abort):
        flow.to_list(engine=PushEngine(runtime="threads"))


def _abort_at_10_or_always(x: int) -> int:
    raise Abort


def test_a_base_exception_before_a_buffer_reaches_the_caller(engine: Engine) -> None:
    flow = Flow.range(100).map_async(_abort_at_10_async).buffer(4).map(str)
    with pytest.raises(Abort):
        flow.to_list(engine=engine)


def test_an_early_stop_on_the_threads_runtime_counts_every_item() -> None:
    """An async stage's helper thread could take an item after the stage stopped waiting for
    it: the item reached no one and was counted nowhere."""

    async def f(x: int) -> int:
        return await _turns(x, x % 3)

    for seed in range(120):
        rng = random.Random(seed)
        stop_after = rng.randint(1, 8)
        flow = (
            Flow.range(40)
            .filter(lambda x: x % 5 != 0)
            .map_async(f, concurrency=rng.randint(1, 4), ordered=False)
            .map_async(f, concurrency=rng.randint(1, 4))
        )
        run = PushEngine(runtime="threads").open(flow.plan)
        for n, _ in enumerate(run, 1):
            if n >= stop_after:
                break
        run.close()
        report = run.report()
        stages = list(report.stages.values())
        gone = sum(s.filtered + s.errored + s.dropped + s.lost for s in stages)
        counted = report.delivered + gone
        assert counted == stages[0].emitted


@pytest.mark.parametrize("terminal", ["foreach", "fold", "foreach_async", "fold_async"])
def test_a_terminal_whose_function_raises_leaves_nothing_running(
    engine: Engine, terminal: str
) -> None:
    """Regression: the abandoned async generator of a sync terminal was closed by a GC-time
    task that outlived the private loop ("Task was destroyed but it is pending")."""

    def bad(*args: int) -> int:
        if args[-1] == 1:
            raise KeyError(args[-1])
        return 0

    flow = Flow.range(50).map_async(_turns_zero)
    calls: dict[str, Callable[[], object]] = {
        "foreach": lambda: flow.foreach(bad, engine=engine),
        "fold": lambda: flow.fold(bad, 0, engine=engine),
        "foreach_async": lambda: asyncio.run(flow.foreach_async(bad, engine=engine)),
        "fold_async": lambda: asyncio.run(flow.fold_async(bad, 0, engine=engine)),
    }
    with pytest.raises(KeyError):
        calls[terminal]()
    # the no-leak check after the test finds no task or thread left behind


async def _turns_zero(x: int) -> int:
    await asyncio.sleep(0)
    return x


@pytest.mark.timeout(30)
@pytest.mark.parametrize("overflow", [Overflow.BACKPRESSURE, Overflow.DROP_OLDEST])
def test_breaking_out_of_async_for_then_running_again_reports_no_task_error(
    overflow: Overflow,
) -> None:
    """Regression (new-user trial): the collector finalized a pull run's chain while the run's
    own iterator closed it too: "Task exception was never retrieved ... aclose():
    asynchronous generator is already running"."""

    async def slow(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    problems: list[dict[str, Any]] = []

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
        flow = Flow.range(10**6).map_async(slow, concurrency=4).buffer(8, overflow=overflow)
        async for x in flow:
            if x == 4:
                break
        first: int = await flow.first_async()
        await asyncio.sleep(0.05)  # the finalizer's tasks run meanwhile
        return first

    assert asyncio.run(main()) == 0
    assert problems == []
