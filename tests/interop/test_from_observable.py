"""Flow.from_observable on every engine: the four overflow policies, terminals, disposal,
observables emitting from other threads, and RxPY's TestScheduler for virtual time."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxpipe import Flow, MissingBackpressureError, Overflow, Report
from rxpipe.engines import Engine
from rxpipe.stages.buffering import overflow_error
from tests.helpers import read_ahead

pytestmark = pytest.mark.timeout(30)


def run_all(engine: Engine, flow: Flow[Any]) -> tuple[list[Any], BaseException | None, Report]:
    """Run ``flow`` to its end: the items, the error it ended with (or None), its Report."""
    run = engine.open(flow.plan)
    items: list[Any] = []
    error: BaseException | None = None
    try:
        for item in run:
            items.append(item)
    except Exception as exc:
        error = exc
    finally:
        run.close()
    return items, error, run.report()


class Tracked:
    """A cold observable over an iterable that records its subscriptions and disposals."""

    def __init__(self, items: Callable[[], Iterator[Any]]) -> None:
        self.subscribed = 0
        self.ended = threading.Event()
        self.emitted = 0

        def count(_: Any) -> None:
            self.emitted += 1

        def subscribed() -> None:
            self.subscribed += 1

        self.observable: reactivex.Observable[Any] = reactivex.defer(
            lambda _: (subscribed(), reactivex.from_iterable(items()))[1]
        ).pipe(ops.do_action(count), ops.finally_action(self.ended.set))


def conserved(report: Report, emitted: int) -> None:
    """Everything the observable emitted is delivered, dropped or lost (one-to-one flows)."""
    src = report.stages["from_observable"]
    assert emitted == report.delivered + src.dropped + report.lost, report


# -- BACKPRESSURE: lossless for cold observables ---------------------------------------------
def test_backpressure_delivers_a_synchronous_observable_losslessly(engine: Engine) -> None:
    source = Tracked(lambda: iter(range(2000)))
    flow = Flow.from_observable(source.observable, buffer=4, overflow=Overflow.BACKPRESSURE)
    items, error, report = run_all(engine, flow.map(lambda x: x * 2))
    assert error is None
    assert items == [x * 2 for x in range(2000)]
    assert report.stages["from_observable"].dropped == 0
    assert report.lost == 0
    assert source.subscribed == 1
    assert source.ended.is_set()  # disposed (completed) by the end of the run


def test_each_run_subscribes_anew(engine: Engine) -> None:
    source = Tracked(lambda: iter("abc"))
    flow = Flow.from_observable(source.observable, buffer=2, overflow=Overflow.BACKPRESSURE)
    assert flow.to_list(engine=engine) == ["a", "b", "c"]
    assert flow.to_list(engine=engine) == ["a", "b", "c"]
    assert source.subscribed == 2


def test_nothing_subscribes_before_the_first_demand(engine: Engine) -> None:
    source = Tracked(lambda: iter(range(3)))
    flow = Flow.from_observable(source.observable, buffer=2, overflow=Overflow.BACKPRESSURE)
    run = engine.open(flow.plan)
    assert source.subscribed == 0
    run.close()
    assert source.subscribed == 0


def test_none_is_an_item(engine: Engine) -> None:
    flow = Flow.from_observable(reactivex.of(None, 1, None), buffer=1, overflow=Overflow.FAIL)
    with pytest.raises(MissingBackpressureError):
        flow.to_list(engine=engine)
    flow = Flow.from_observable(
        reactivex.of(None, 1, None), buffer=1, overflow=Overflow.BACKPRESSURE
    )
    assert flow.to_list(engine=engine) == [None, 1, None]


def test_take_disposes_an_infinite_synchronous_observable(engine: Engine) -> None:
    source = Tracked(lambda: itertools.count())
    flow = Flow.from_observable(source.observable, buffer=8, overflow=Overflow.BACKPRESSURE)
    items, error, report = run_all(engine, flow.take(5))
    assert error is None
    assert items == [0, 1, 2, 3, 4]
    assert source.ended.is_set()  # disposed before the run returned; its thread was joined
    src = report.stages["from_observable"]
    assert src.dropped == 0
    # what the source had buffered, the one item waiting for room and the one emitted after
    # the run ended (take_while disposes at it) are lost; the bound is the buffer, one
    # waiting emission, one late one, and what the engine holds between stages
    conserved(report, source.emitted)
    assert source.emitted <= src.emitted + 8 + 1 + 1 + 1


@pytest.mark.parametrize("buffer", [1, 2, 8])
def test_an_early_stop_under_backpressure_counts_every_emission(
    engine: Engine, buffer: int
) -> None:
    # the emission waiting for room when take() stopped the run, and the one the observable
    # made after (take_while then disposed it), vanished uncounted: off by one
    source = Tracked(lambda: iter(range(100)))
    flow = Flow.from_observable(source.observable, buffer=buffer, overflow=Overflow.BACKPRESSURE)
    items, error, report = run_all(engine, flow.take(1))
    assert error is None
    assert items == [0]
    assert source.ended.is_set()
    assert report.delivered == 1
    conserved(report, source.emitted)


def test_async_terminals_backpressure_without_blocking_the_loop(engine: Engine) -> None:
    async def main() -> None:
        source = Tracked(lambda: iter(range(500)))
        flow = Flow.from_observable(source.observable, buffer=3, overflow=Overflow.BACKPRESSURE)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            assert await flow.to_list_async(engine=engine) == list(range(500))
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert ticks > 0  # the loop kept running while the bridge waited for items
        assert source.ended.is_set()

    asyncio.run(main())


# -- the dropping and failing policies ---------------------------------------------------------
def test_drop_newest_keeps_the_first_items_of_a_synchronous_burst(engine: Engine) -> None:
    flow = Flow.from_observable(
        reactivex.from_iterable(range(100)), buffer=10, overflow=Overflow.DROP_NEWEST
    )
    items, error, report = run_all(engine, flow)
    assert error is None
    assert items == list(range(10))
    assert report.stages["from_observable"].dropped == 90
    conserved(report, 100)


def test_drop_oldest_keeps_the_last_items_of_a_synchronous_burst(engine: Engine) -> None:
    flow = Flow.from_observable(
        reactivex.from_iterable(range(100)), buffer=10, overflow=Overflow.DROP_OLDEST
    )
    items, error, report = run_all(engine, flow)
    assert error is None
    assert items == list(range(90, 100))
    assert report.stages["from_observable"].dropped == 90
    conserved(report, 100)


def test_fail_ends_the_flow_with_missing_backpressure_naming_the_stage(engine: Engine) -> None:
    source = Tracked(lambda: itertools.count())
    flow = Flow.from_observable(source.observable, buffer=10, overflow=Overflow.FAIL)
    items, error, report = run_all(engine, flow)
    assert isinstance(error, MissingBackpressureError)
    assert str(error) == str(overflow_error("from_observable", 10))  # as a buffer stage says
    assert error.__notes__ == ["rxpipe: raised in stage 'from_observable'"]  # once
    assert items == list(range(10))  # the buffered items first, then the failure
    assert source.ended.is_set()  # disposed at once: the infinite observable stopped
    # the overflowing item was the 11th; the 12th finds the bridge failed and ends the
    # subscription (take_while), which disposes the observable: both are rejected, dropped
    # (the 12th went uncounted)
    assert source.emitted == 12
    assert report.stages["from_observable"].dropped == 2
    conserved(report, 12)


def test_the_observables_error_becomes_the_flows_after_the_buffered_items(
    engine: Engine,
) -> None:
    boom = ValueError("boom")
    observable = reactivex.concat(reactivex.of(1, 2), reactivex.throw(boom))
    for overflow in Overflow:
        flow = Flow.from_observable(observable, buffer=4, overflow=overflow)
        items, error, _ = run_all(engine, flow)
        assert items == [1, 2]
        assert error is boom


def test_an_observable_whose_subscribe_raises_fails_the_flow(engine: Engine) -> None:
    def subscribe(_: Any, __: Any = None) -> Any:
        raise KeyError("no")

    for overflow in (Overflow.BACKPRESSURE, Overflow.DROP_NEWEST):
        flow = Flow.from_observable(reactivex.create(subscribe), buffer=1, overflow=overflow)
        with pytest.raises(KeyError):
            flow.to_list(engine=engine)


# -- hot observables, other threads ------------------------------------------------------------
def test_a_subject_fed_by_several_threads_under_backpressure_loses_nothing(
    engine: Engine,
) -> None:
    subject: Subject[tuple[int, int]] = Subject()
    flow = Flow.from_observable(subject, buffer=2, overflow=Overflow.BACKPRESSURE)
    producers, per = 4, 300
    result: Future[tuple[list[Any], BaseException | None, Report]] = Future()

    def consume() -> None:
        result.set_result(run_all(engine, flow))

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        # producers start once the bridge is subscribed (a hot Subject drops earlier items)
        while not subject.observers and consumer.is_alive():
            threading.Event().wait(0.001)

        def produce(p: int) -> None:
            for i in range(per):
                subject.on_next((p, i))

        with ThreadPoolExecutor(producers) as pool:
            list(pool.map(produce, range(producers)))
        subject.on_completed()
    finally:
        consumer.join()
    items, error, report = result.result()
    assert error is None
    assert sorted(items) == [(p, i) for p in range(producers) for i in range(per)]
    for p in range(producers):  # each producer's order is kept
        assert [i for q, i in items if q == p] == list(range(per))
    assert report.stages["from_observable"].dropped == 0


def test_backpressure_refuses_to_block_an_event_loop(engine: Engine) -> None:
    async def main() -> None:
        subject: Subject[int] = Subject()
        loop = asyncio.get_running_loop()
        subscribed = asyncio.Event()

        def subscribe(observer: Any, _: Any = None) -> Any:
            disposable = subject.subscribe(observer)
            loop.call_soon_threadsafe(subscribed.set)  # from the bridge's own thread
            return disposable

        observable: reactivex.Observable[int] = reactivex.create(subscribe)
        flow = Flow.from_observable(observable, buffer=2, overflow=Overflow.BACKPRESSURE)
        consumer = asyncio.ensure_future(flow.to_list_async(engine=engine))
        await subscribed.wait()
        # On this loop's thread: while it emits, the loop's consumer takes nothing, so once
        # the bridge's buffer and everything downstream of it are full, one must wait.
        for i in range(2 + read_ahead(engine, flow) + 3):
            subject.on_next(i)
        with pytest.raises(MissingBackpressureError, match="event loop"):
            await consumer
        assert not subject.observers  # disposed

    asyncio.run(main())


def test_hot_interval_on_the_consumers_loop_into_a_slow_consumer(engine: Engine) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        from reactivex.scheduler.eventloop import AsyncIOScheduler

        ticks = reactivex.interval(0.001, scheduler=AsyncIOScheduler(loop))
        flow = Flow.from_observable(ticks, buffer=4, overflow=Overflow.DROP_OLDEST)
        got: list[int] = []

        async def slow(x: int) -> int:
            await asyncio.sleep(0.01)  # ten ticks per item
            return x

        report = await flow.map_async(slow).take(6).foreach_async(got.append, engine=engine)
        assert len(got) == 6
        assert got == sorted(got)
        assert report.stages["from_observable"].dropped > 0  # the slow consumer made it drop

    asyncio.run(main())


# -- RxPY's TestScheduler: virtual time ------------------------------------------------------
def _on_next(ticks: int, value: Any) -> Any:
    return ReactiveTest.on_next(ticks, value)


@pytest.mark.parametrize("overflow", list(Overflow))
def test_hot_observable_in_virtual_time_under_each_policy(
    engine: Engine, overflow: Overflow
) -> None:
    scheduler = TestScheduler()
    n = 40
    messages = [_on_next(300 + i, i) for i in range(n)]
    xs = scheduler.create_hot_observable(*messages, ReactiveTest.on_completed(400))
    gate = threading.Event()

    def slow(x: int) -> int:
        gate.wait()  # the consumer holds its first item until every emission was made
        return x

    flow = Flow.from_observable(xs, buffer=5, overflow=overflow).map(slow)
    result: Future[tuple[list[Any], BaseException | None, Report]] = Future()
    consumer = threading.Thread(target=lambda: result.set_result(run_all(engine, flow)))
    consumer.start()
    try:
        while not xs.observers and consumer.is_alive():
            threading.Event().wait(0.001)
        scheduler.advance_to(250)
        assert len(xs.subscriptions) == 1
        if overflow is Overflow.BACKPRESSURE:
            gate.set()  # the emitting thread (this one) waits for room as time advances
        scheduler.advance_to(500)
        gate.set()
    finally:
        consumer.join()
    items, error, report = result.result()
    src = report.stages["from_observable"]
    if overflow is Overflow.BACKPRESSURE:
        assert (items, error, src.dropped) == (list(range(n)), None, 0)
    elif overflow is Overflow.FAIL:
        assert isinstance(error, MissingBackpressureError)
        assert items == sorted(items)
        assert len(items) < n
    else:
        assert error is None
        assert 5 <= len(items) < n
        assert items == sorted(items)
        conserved(report, n)
        if overflow is Overflow.DROP_OLDEST:
            assert items[-5:] == list(range(n - 5, n))
        else:
            assert src.dropped >= n - 5 - 30  # the engine holds at most a few more
    [subscription] = xs.subscriptions
    assert subscription.unsubscribe != ReactiveTest.disposed or error is not None


def test_disposal_at_completion_is_seen_by_the_test_scheduler(engine: Engine) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        _on_next(10, "a"), _on_next(20, "b"), ReactiveTest.on_completed(30)
    )
    flow = Flow.from_observable(xs, buffer=4, overflow=Overflow.DROP_NEWEST)
    result: Future[list[Any]] = Future()
    consumer = threading.Thread(target=lambda: result.set_result(flow.to_list(engine=engine)))
    consumer.start()
    try:
        while not xs.subscriptions and consumer.is_alive():
            threading.Event().wait(0.001)
        scheduler.advance_to(100)
    finally:
        consumer.join()
    assert result.result() == ["a", "b"]
    [subscription] = xs.subscriptions
    assert (subscription.subscribe, subscription.unsubscribe) == (0, 30)


def test_overlapping_runs_each_report_their_own_drops(engine: Engine) -> None:
    """Regression (review): the counts went through a queue shared by every run of the flow,
    so overlapping runs could swap their dropped/lost counts; each run counts into its own
    source statistics now."""
    sizes = iter([100, 1000])
    observable = reactivex.defer(lambda _: reactivex.range(next(sizes)))
    base = Flow.from_observable(observable, buffer=8, overflow=Overflow.DROP_NEWEST)
    first_item = threading.Event()
    release = threading.Event()

    def hold(x: int) -> int:
        first_item.set()
        assert release.wait(10)
        return x

    reports: dict[str, Report] = {}
    slow = threading.Thread(target=lambda: reports.update(a=base.map(hold).run(engine=engine)))
    slow.start()
    try:
        assert first_item.wait(10)
        reports["b"] = base.run(engine=engine)  # starts and ends while run a is held
    finally:
        release.set()
        slow.join(10)
    a, b = reports["a"].stages["from_observable"], reports["b"].stages["from_observable"]
    assert (a.emitted, a.dropped) == (8, 92)
    assert (b.emitted, b.dropped) == (8, 992)
