"""What only the push engine has: channel sizes, the in-flight bound, overflow policies, and
the threads runtime (a thread per stage)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from rxpipe import Flow, MissingBackpressureError, Overflow, PushEngine, stage
from rxpipe.stages import Ports, Stage, StageLogic
from tests.helpers import Abort
from tests.helpers import turns as _turns


def test_per_stage_buffer_sizes_by_name() -> None:
    flow = Flow.range(10).map(str, name="parse").map(int).buffer(5)
    engine = PushEngine(buffer={"parse": 16, "*": 1})
    assert engine.channel_sizes(flow.plan) == [1, 16, 1, 5]
    assert engine.in_flight_bound(flow.plan) == 1 + 16 + 1 + 5 + 2 * 4
    assert flow.to_list(engine=engine) == list(range(10))


def test_unknown_stage_name_in_buffer_sizes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not in this flow: \['pasre'\]"):
        Flow.range(3).map(str, name="parse").to_list(engine=PushEngine(buffer={"pasre": 4}))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"buffer": -1}, ValueError),
        ({"buffer": 1.5}, TypeError),
        ({"buffer": True}, TypeError),
        ({"buffer": {"x": -2}}, ValueError),
        ({"buffer": {3: 1}}, TypeError),
        ({"runtime": "trio"}, ValueError),
    ],
)
def test_bad_engine_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        PushEngine(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", ["asyncio", "threads"])
def test_every_task_and_thread_is_joined_after_an_error(runtime: str) -> None:
    before = threading.active_count()

    def boom(x: int) -> int:
        if x == 50:
            raise KeyError("boom")
        return x

    flow = Flow.range(10**6).map(boom, name="risky").map(str).filter(bool)
    with pytest.raises(KeyError) as info:
        flow.to_list(engine=PushEngine(runtime=runtime))  # type: ignore[arg-type]
    assert "rxpipe: raised in stage 'risky'" in info.value.__notes__
    assert threading.active_count() == before


@pytest.mark.parametrize("runtime", ["asyncio", "threads"])
def test_items_in_flight_never_exceed_the_bound(runtime: str) -> None:
    """Instrument every stage: the number of items created but not yet consumed stays bounded."""
    lock = threading.Lock()
    live = 0
    peak = 0

    def make(x: int) -> int:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        return x

    def consume(x: int) -> None:
        nonlocal live
        time.sleep(0.0005) if runtime == "threads" else None
        with lock:
            live -= 1

    engine = PushEngine(buffer={"*": 2}, runtime=runtime)  # type: ignore[arg-type]
    flow = Flow.range(300).map(make).map(lambda x: x).map(lambda x: x)
    flow.foreach(consume, engine=engine)
    # `make` itself is the first stage: everything after it counts, plus the consumer's item
    assert 1 <= peak <= engine.in_flight_bound(flow.plan)


@pytest.mark.timeout(20)
def test_drop_newest_counts_every_drop_threads() -> None:
    flow = Flow.range(200).buffer(2, overflow=Overflow.DROP_NEWEST).map(_slow)
    report = flow.run(engine=PushEngine(buffer=0, runtime="threads"))
    buf = report.stages["buffer"]
    assert buf.dropped > 0
    assert buf.received == 200
    assert buf.received == buf.emitted + buf.dropped
    assert report.delivered + report.dropped + report.lost == 200


@pytest.mark.timeout(20)
def test_drop_oldest_keeps_the_newest_items() -> None:
    flow = Flow.range(200).buffer(3, overflow=Overflow.DROP_OLDEST).map(_slow)
    out = flow.to_list(engine=PushEngine(buffer=0, runtime="threads"))
    assert out[-1] == 199  # the newest item always survives
    assert out == sorted(out)
    report = flow.run(engine=PushEngine(buffer=0, runtime="threads"))
    assert report.delivered + report.dropped + report.lost == 200
    assert report.stages["buffer"].dropped > 0


@pytest.mark.timeout(20)
def test_fail_overflow_raises_missing_backpressure_naming_the_stage() -> None:
    flow = Flow.range(200).buffer(2, overflow=Overflow.FAIL, name="intake").map(_slow)
    with pytest.raises(MissingBackpressureError, match="'intake'"):
        flow.to_list(engine=PushEngine(buffer=0, runtime="threads"))


def test_overflow_policies_on_asyncio_with_a_slow_consumer() -> None:
    flow = Flow.range(100).buffer(2, overflow=Overflow.DROP_NEWEST)

    async def main() -> list[int]:
        got = []
        async for x in _aiter(flow, PushEngine(buffer=0)):
            got.append(x)
            await asyncio.sleep(0.0005)
        return got

    got = asyncio.run(main())
    assert 0 < len(got) < 100
    assert got == sorted(got)


def _aiter(flow: Flow[int], engine: PushEngine):  # type: ignore[no-untyped-def]
    return aiter(engine.open(flow.plan))


def _slow(x: int) -> int:
    time.sleep(0.0005)
    return x


def test_buffer_zero_is_a_rendezvous() -> None:
    """With buffer=0 the producer is at most one hand-over ahead of each stage."""
    produced: list[int] = []

    def src():  # type: ignore[no-untyped-def]
        for i in range(100):
            produced.append(i)
            yield i

    flow = Flow.from_iterable(src()).map(lambda x: x)
    engine = PushEngine(buffer=0)
    run = engine.open(flow.plan)
    it = iter(run)
    assert next(it) == 0
    assert len(produced) <= 1 + engine.in_flight_bound(flow.plan)
    run.close()
    assert engine.in_flight_bound(flow.plan) == 0 + 0 + 2 * 2


@pytest.mark.parametrize("buffer", [0, 1, 4, 8])
@pytest.mark.parametrize("runtime", ["asyncio", "threads"])
@pytest.mark.parametrize("stages", ["pass-through", "new objects"])
def test_live_items_never_exceed_the_in_flight_bound(
    buffer: int, runtime: str, stages: str
) -> None:
    """Count live objects (not items seen): batching must not keep consumed items alive.

    Regression: with maps that build a new object per item, push/asyncio peaked one item per
    map above the bound (a stage held its input while it sent its output, and a stage holds
    both for a moment while its function runs: the bound counts that now).
    """
    lock = threading.Lock()
    counts = {"live": 0, "peak": 0}

    class Item:
        def __init__(self) -> None:
            with lock:
                counts["live"] += 1
                counts["peak"] = max(counts["peak"], counts["live"])

        def __del__(self) -> None:
            with lock:
                counts["live"] -= 1

    def source():  # type: ignore[no-untyped-def]
        for _ in range(80):
            yield Item()

    if stages == "pass-through":
        flow = Flow.from_iterable(source()).map(lambda x: x).filter(lambda x: True)
    else:
        flow = Flow.from_iterable(source()).map(lambda x: Item()).filter(bool).map(lambda x: Item())
    engine = PushEngine(buffer=buffer, runtime=runtime)  # type: ignore[arg-type]

    async def consume() -> None:
        async for item in aiter(engine.open(flow.plan)):
            await asyncio.sleep(0.0003)  # a slow consumer: every channel fills up
            del item

    asyncio.run(consume())
    assert counts["live"] == 0
    assert 1 <= counts["peak"] <= engine.in_flight_bound(flow.plan)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("runtime", ["asyncio", "threads"])
def test_books_balance_when_an_async_consumer_is_cancelled_at_any_moment(runtime: str) -> None:
    """Regression: on the threads runtime, a consumer cancelled while its helper thread waited
    to receive lost the item the helper took after all (counted after the Report was built)."""
    import itertools
    import random

    engine = PushEngine(buffer=16, runtime=runtime)  # type: ignore[arg-type]
    flow = Flow.from_iterable(itertools.count()).map(lambda x: x + 1)
    rng = random.Random(7)

    async def once(delay: float) -> tuple[int, int, int]:
        run = engine.open(flow.plan)

        async def consume() -> None:
            items = aiter(run)
            try:
                while True:
                    await anext(items)
                    await asyncio.sleep(0)
            finally:
                await run.aclose()

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        report = run.report()
        return report.stages["from_iterable"].emitted, report.delivered, report.lost

    for _ in range(400):  # the race hit about 1 run in 100
        emitted, delivered, lost = asyncio.run(once(rng.random() * 0.003))
        assert emitted == delivered + lost


@pytest.mark.parametrize("runtime", ["asyncio", "threads"])
def test_aclose_of_a_run_left_at_a_yield_stops_it_at_once(runtime: str) -> None:
    """aclose() closes the run's own async iterator: no helper thread waits for a GC pass."""
    engine = PushEngine(runtime=runtime)  # type: ignore[arg-type]

    async def main() -> tuple[int, int, int]:
        run = engine.open(Flow.range(10**6).plan)
        items = aiter(run)
        for _ in range(5):
            await anext(items)
        await run.aclose()
        assert [t for t in threading.enumerate() if t.name.startswith("rxpipe")] == []
        report = run.report()
        return report.stages["range"].emitted, report.delivered, report.lost

    emitted, delivered, lost = asyncio.run(main())
    assert delivered == 5
    assert emitted == delivered + lost


class _BusyHelper:
    """The threads runtime's consumer helper (a one-thread pool) while its thread is still
    busy: what is submitted waits; ``shutdown`` runs what was not cancelled meanwhile (the
    helper gets to it), as a real pool's ``shutdown(wait=True)`` would."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[Any], Callable[[], Any]]] = []
        self.submitted = asyncio.Event()  # submit() is called on the consumer's loop

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.pending.append((future, fn))
        self.submitted.set()
        return future

    def shutdown(self, wait: bool = True) -> None:
        for future, fn in self.pending:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)


def test_an_aclose_cancelled_before_the_helper_began_the_stop_still_stops_the_run() -> None:
    """Regression (threads runtime): the stop waited for its helper thread, which was still
    busy; the consumer's task, cancelled meanwhile, cancelled the stop before it began. Nobody
    joined the runners, and the Report was built while they still counted: now and then a
    disposal of a ``to_observable`` subscription (which cancels its pump's task) left an item
    counted emitted and nowhere else."""
    stopped = threading.Event()

    def held() -> Iterator[int]:
        yield from range(5)
        # held until the run's stop begins (the join waits for it): a runner still counting
        # when an unstopped run's Report would be built
        deadline = time.monotonic() + 10
        while not run.stopping and time.monotonic() < deadline:
            time.sleep(0.001)
        stopped.set()
        yield 5  # sent into a closed channel: lost

    flow = Flow.from_iterable(held()).map(lambda x: x)
    run = PushEngine(runtime="threads").open(flow.plan)
    helper = _BusyHelper()
    kept: list[Any] = []  # the consumer's iterator: its finalizer would stop the run too

    async def consume() -> None:
        items = aiter(run)
        kept.append(items)
        for _ in range(3):
            await anext(items)
        runtime = run._runtime
        real, runtime._pool = runtime._pool, helper  # type: ignore[attr-defined]
        if real is not None:
            real.shutdown(wait=True)  # idle: the items it waited for were taken
        await run.aclose()

    async def main() -> None:
        task = asyncio.ensure_future(consume())
        await helper.submitted.wait()  # the stop waits for the helper now: cancel it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # what a cancelled aclose() leaves, before anything else could stop the run
        assert stopped.is_set()  # the run's stop began
        assert [t for t in threading.enumerate() if t.name.startswith("rxpipe")] == []

    try:
        asyncio.run(main())
    finally:
        run.close()  # a no-op once stopped; otherwise ends the runners (no leak)
    report = run.report()
    assert report.delivered == 3
    assert report.stages["from_iterable"].emitted == 6
    assert report.stages["from_iterable"].emitted == report.delivered + report.lost


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
