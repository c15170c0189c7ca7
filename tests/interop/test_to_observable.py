"""flow.to_observable on every engine: cold, batched demand, disposal cancels the run,
schedulers, observer errors, and round trips through real RxPY operators."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import CurrentThreadScheduler, ThreadPoolScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler, AsyncIOThreadSafeScheduler

from rxpipe import Flow, Overflow, Report
from rxpipe.engines import Engine
from rxpipe.interop.rx import BATCH
from tests.helpers import read_ahead

pytestmark = pytest.mark.timeout(30)


def collect(observable: reactivex.Observable[Any], **kwargs: Any) -> list[Any]:
    """Subscribe, wait for the end, return the items (re-raising an on_error)."""
    done: Future[list[Any]] = Future()
    items: list[Any] = []
    observable.subscribe(items.append, done.set_exception, lambda: done.set_result(items), **kwargs)
    return done.result(timeout=20)


class Reports:
    """An ``on_report`` callback that keeps the Reports and says when one arrived."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.arrived = threading.Event()

    def __call__(self, report: Report) -> None:
        self.reports.append(report)
        self.arrived.set()

    def one(self) -> Report:
        assert self.arrived.wait(20)
        [report] = self.reports
        return report


def test_each_subscription_runs_the_flow_anew(engine: Engine) -> None:
    runs = Reports()
    observable = Flow.range(5).map(lambda x: x * x).to_observable(engine=engine, on_report=runs)
    assert collect(observable) == [0, 1, 4, 9, 16]
    assert collect(observable) == [0, 1, 4, 9, 16]
    assert [r.delivered for r in runs.reports] == [5, 5]


def test_errors_of_the_flow_reach_on_error(engine: Engine) -> None:
    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    items: list[int] = []
    failed: Future[Exception] = Future()
    Flow.range(10).map(boom).to_observable(engine=engine).subscribe(
        items.append, failed.set_result, lambda: failed.set_exception(AssertionError("completed"))
    )
    error = failed.result(timeout=20)  # push engines signal from the publisher's thread
    assert items == [0, 1, 2]
    assert isinstance(error, ValueError)


def test_where_the_items_are_delivered(engine: Engine) -> None:
    """A run the engine produces inline (a synchronous flow on the pull engine) delivers inside
    subscribe() on the CurrentThreadScheduler; any other run is served by the publisher's
    pump, so subscribe() returns without waiting for it."""
    gate = threading.Event()

    def gated() -> Iterator[int]:
        assert gate.wait(20)
        yield from range(5)

    flow = Flow.from_iterable(gated())
    items: list[int] = []
    done = threading.Event()
    inline = engine.runs_inline(flow.plan)
    if inline:
        gate.set()  # the run executes right here: it must not wait
    flow.to_observable(engine=engine).subscribe(items.append, on_completed=done.set)
    if inline:
        assert done.is_set()
        assert items == list(range(5))
    else:
        assert not done.is_set()  # subscribe() returned while the run waits at its source
        gate.set()
        assert done.wait(20)
        assert items == list(range(5))


@pytest.mark.parametrize("fails", [False, True], ids=["completed", "failed"])
def test_on_report_comes_before_the_terminal_signal(engine: Engine, fails: bool) -> None:
    def boom(x: int) -> int:
        if fails and x == 3:
            raise ValueError("three")
        return x

    runs = Reports()
    reported: Future[int] = Future()  # how many Reports the terminal signal found
    Flow.range(5).map(boom).to_observable(engine=engine, on_report=runs).subscribe(
        on_error=lambda _: reported.set_result(len(runs.reports)),
        on_completed=lambda: reported.set_result(len(runs.reports)),
    )
    assert reported.result(timeout=20) == 1


def test_a_disposal_inside_an_inline_run_is_reported_before_subscribe_returns() -> None:
    runs = Reports()
    got: list[int] = []
    endless = Flow.from_iterable(itertools.count()).to_observable(engine="pull", on_report=runs)
    endless.pipe(ops.take(3)).subscribe(got.append)  # take() disposes from inside on_next
    assert got == [0, 1, 2]
    [report] = runs.reports  # no waiting: the run was produced and ended inside subscribe()
    assert report.delivered >= 3
    assert report.stages["from_iterable"].emitted == report.delivered + report.lost


def test_demand_is_requested_in_bounded_batches(engine: Engine) -> None:
    pulled = 0

    def counting() -> Iterator[int]:
        nonlocal pulled
        for i in range(3 * BATCH):
            pulled += 1
            yield i

    flow = Flow.from_iterable(counting())
    most_ahead = 0

    def on_next(_: int) -> None:
        nonlocal most_ahead, seen
        seen += 1
        most_ahead = max(most_ahead, pulled - seen)

    seen = 0
    done = threading.Event()
    flow.to_observable(engine=engine).subscribe(on_next, on_completed=done.set)
    assert done.wait(20)  # push engines signal from the publisher's thread
    assert seen == 3 * BATCH
    assert 0 <= most_ahead <= BATCH + read_ahead(engine, flow)


def test_demand_is_requested_in_batches_replenished_at_three_quarters() -> None:
    from rxpipe.interop.rx import _ObserverSubscriber

    class Spy:
        def __init__(self) -> None:
            self.requests: list[int] = []
            self.cancelled = False

        def request(self, n: int) -> None:
            self.requests.append(n)

        def cancel(self) -> None:
            self.cancelled = True

    got: list[int] = []
    subscriber: _ObserverSubscriber[int] = _ObserverSubscriber(
        reactivex.Observer(got.append)  # type: ignore[arg-type]
    )
    spy = Spy()
    subscriber.on_subscribe(spy)
    assert spy.requests == [BATCH]
    outstanding = BATCH
    for i in range(5 * BATCH):
        assert outstanding > 0  # never signalled beyond demand
        subscriber.on_next(i)
        outstanding -= 1
        if len(spy.requests) > 1 and spy.requests[-1] != 0:
            outstanding += spy.requests[-1]
            spy.requests.append(0)  # marks it as counted
        assert outstanding <= BATCH  # never more than one batch outstanding
    batches = [n for n in spy.requests if n]
    assert batches[0] == BATCH
    assert all(n == BATCH - BATCH // 4 for n in batches[1:])
    subscriber.dispose()
    assert spy.cancelled
    assert got == list(range(5 * BATCH))


def test_disposing_cancels_the_run_and_counts_what_was_in_flight(engine: Engine) -> None:
    runs = Reports()
    flow = Flow.from_iterable(itertools.count()).map(lambda x: x + 1)
    observable = flow.to_observable(engine=engine, on_report=runs)
    assert collect(observable.pipe(ops.take(5))) == [1, 2, 3, 4, 5]  # take disposes
    report = runs.one()
    source = report.stages["from_iterable"]
    assert report.delivered == 5  # what the observer received, not what the pump fetched
    assert source.emitted == report.delivered + report.lost  # nothing unaccounted
    assert source.emitted <= 5 + BATCH + read_ahead(engine, flow)


def test_dispose_from_another_thread_stops_an_endless_run(engine: Engine) -> None:
    runs = Reports()
    started = threading.Event()

    def note(_: int) -> None:
        started.set()

    observable = Flow.from_iterable(itertools.count()).to_observable(engine=engine, on_report=runs)
    pool = ThreadPoolScheduler(1)
    try:
        subscription = observable.subscribe(note, scheduler=pool)  # returns at once
        assert started.wait(20)
        subscription.dispose()
        report = runs.one()
        assert report.delivered > 0
    finally:
        pool.executor.shutdown(wait=True)


def accounted(report: Report) -> None:
    """One-to-one flows: what the source emitted is delivered or lost, and nothing else."""
    source = next(iter(report.stages.values()))
    assert source.emitted == report.delivered + report.lost, report


@pytest.mark.parametrize("trial", range(5))
def test_items_in_the_hand_over_at_a_disposal_from_another_thread_are_lost(
    engine: Engine, trial: int
) -> None:
    # a disposal from another thread races the hand-over: an item the run produced then
    # handed over once the subscription was disposed never reached the observer; it was
    # counted delivered (and, from the pump, so were the items fetched ahead of it)
    runs = Reports()
    got: list[int] = []
    flow = Flow.from_iterable(itertools.count()).map(lambda x: x)
    observable = flow.to_observable(engine=engine, on_report=runs)
    pool = ThreadPoolScheduler(1)
    try:
        subscription = observable.subscribe(got.append, scheduler=pool)
        while len(got) < 100 * (trial + 1):
            threading.Event().wait(0.001)
        disposing = threading.Thread(target=subscription.dispose)
        disposing.start()
        disposing.join()
        report = runs.one()
    finally:
        pool.executor.shutdown(wait=True)
    assert report.delivered == len(got)
    accounted(report)


@pytest.mark.parametrize("length", [10, None], ids=["short", "endless"])
def test_an_observer_that_raises_received_every_delivered_item(
    engine: Engine, length: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    # a pumped run fetched up to a batch ahead of the observer, then cleared it on cancel:
    # delivered 256 where the observer got 3; a short run even completed (and reported)
    # before the observer raised
    runs = Reports()
    got: list[int] = []

    def on_next(x: int) -> None:
        got.append(x)
        if x == 2:
            raise RuntimeError("observer broke")

    source = itertools.count() if length is None else range(length)
    observable = Flow.from_iterable(source).to_observable(engine=engine, on_report=runs)
    with caplog.at_level(logging.CRITICAL, logger="rxpipe"):
        observable.subscribe(on_next)
        report = runs.one()
    assert got == [0, 1, 2]
    assert report.delivered == 3  # the item it raised on was received
    accounted(report)
    last = report.stages["from_iterable"]  # the only stage: also the last
    assert last.lost == report.lost


def test_observer_errors_are_logged_and_cancel_the_run(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    runs = Reports()
    seen: list[int] = []

    def on_next(x: int) -> None:
        seen.append(x)
        if x == 2:
            raise RuntimeError("observer broke")

    observable = Flow.from_iterable(itertools.count()).to_observable(engine=engine, on_report=runs)
    with caplog.at_level(logging.ERROR, logger="rxpipe"):
        observable.subscribe(on_next)
        report = runs.one()
    assert seen == [0, 1, 2]
    [record] = [r for r in caplog.records if r.name == "rxpipe"]
    assert "observer broke" in str(record.exc_info[1] if record.exc_info else "")
    assert report.delivered == 3


def test_subscribe_on_and_observe_on_a_thread_pool(engine: Engine) -> None:
    pool = ThreadPoolScheduler(2)
    threads: set[str] = set()

    def where(x: int) -> int:
        threads.add(threading.current_thread().name)
        return x

    try:
        observable = (
            Flow.range(100)
            .to_observable(engine=engine)
            .pipe(ops.subscribe_on(pool), ops.observe_on(pool), ops.map(where))
        )
        assert collect(observable) == list(range(100))
    finally:
        pool.executor.shutdown(wait=True)
    assert threading.current_thread().name not in threads


def test_the_current_thread_scheduler(engine: Engine) -> None:
    observable = Flow.range(10).to_observable(engine=engine)
    assert collect(observable, scheduler=CurrentThreadScheduler()) == list(range(10))


def test_the_asyncio_scheduler(engine: Engine) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        scheduler = AsyncIOScheduler(loop)  # the run starts from the loop (on a thread)
        back = AsyncIOThreadSafeScheduler(loop)  # the items come back to it from there
        done: asyncio.Future[list[int]] = loop.create_future()
        items: list[int] = []
        Flow.range(20).map(lambda x: x * 3).to_observable(engine=engine).pipe(
            ops.observe_on(back)
        ).subscribe(
            items.append,
            done.set_exception,
            lambda: done.set_result(items),
            scheduler=scheduler,
        )
        return await done

    assert asyncio.run(main()) == [x * 3 for x in range(20)]


def test_an_async_flow_as_an_observable(engine: Engine) -> None:
    async def twice(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    observable = Flow.range(50).map_async(twice, concurrency=4).to_observable(engine=engine)
    assert collect(observable) == [2 * x for x in range(50)]


# -- round trips through RxPY operators --------------------------------------------------------
def test_round_trip_through_rxpy_operators(engine: Engine) -> None:
    evens = Flow.range(0, 40, 2).to_observable(engine=engine)
    odds = Flow.range(1, 40, 2).to_observable(engine=engine)
    middle = reactivex.merge(evens, odds).pipe(
        ops.map(lambda x: x * 10),
        ops.buffer_with_count(4),
        ops.take(5),
    )
    flow = Flow.from_observable(middle, buffer=4, overflow=Overflow.BACKPRESSURE).map(sum)
    got = flow.to_list(engine=engine)
    assert len(got) == 5
    merged = sorted(x for chunk in [got] for x in chunk)
    assert merged == sorted(got)
    assert sum(got) <= sum(range(0, 400, 10))


def test_round_trip_keeps_every_item_in_order(engine: Engine) -> None:
    observable = Flow.range(1000).map(lambda x: x + 1).to_observable(engine=engine)
    back = Flow.from_observable(
        observable.pipe(ops.map(lambda x: -x)), buffer=16, overflow=Overflow.BACKPRESSURE
    )
    report = back.filter(lambda x: x % 2 == 0).run(engine=engine)
    assert back.to_list(engine=engine) == [-(x + 1) for x in range(1000)]
    assert report.delivered == 500
    assert report.stages["from_observable"].dropped == 0
