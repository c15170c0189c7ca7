"""Flow.queue on every engine: offers from threads and loops, overflow policies, one-shot runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rxpipe import Flow, MissingBackpressureError, Overflow, QueueHandle, Report
from rxpipe.engines import Engine


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


def test_offers_before_the_flow_runs_are_buffered(engine: Engine) -> None:
    flow, handle = Flow.queue(4, Overflow.DROP_NEWEST)
    assert [handle.offer(x) for x in (1, None, 3)] == [True, True, True]
    assert handle.buffered == 3
    handle.close()
    items, error, report = run_all(engine, flow.map(lambda x: x))
    assert items == [1, None, 3]
    assert error is None
    assert report.stages["queue"].emitted == 3
    assert report.stages["queue"].dropped == 0
    assert flow.stage_names == ("queue",)


@pytest.mark.timeout(30)
def test_offers_from_another_thread_while_the_flow_runs(engine: Engine) -> None:
    flow, handle = Flow.queue(4, Overflow.DROP_NEWEST)
    rejected = 0

    def produce() -> None:
        nonlocal rejected
        for i in range(200):
            while not handle.offer(i):  # False: full; the producer's backpressure signal
                rejected += 1
                threading.Event().wait(0.0002)
        handle.close()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        items, error, report = run_all(engine, flow.map(lambda x: x + 1))
    finally:
        producer.join()
    assert error is None
    assert items == list(range(1, 201))
    assert report.stages["queue"].dropped == rejected == handle.dropped
    assert report.delivered == 200


@pytest.mark.timeout(30)
def test_close_ends_a_running_flow(engine: Engine) -> None:
    flow, handle = Flow.queue(2, Overflow.DROP_NEWEST)
    got: list[int] = []
    first = threading.Event()

    def consume(x: int) -> None:
        got.append(x)
        first.set()

    consumer = threading.Thread(target=lambda: flow.foreach(consume, engine=engine))
    consumer.start()
    try:
        assert handle.offer(1)
        assert first.wait(10)
        assert handle.offer(2)
        handle.close()
    finally:
        consumer.join(10)
    assert not consumer.is_alive()
    assert got == [1, 2]


@pytest.mark.parametrize(
    ("overflow", "returns", "items", "failed"),
    [
        (Overflow.DROP_NEWEST, [True, True, False, False], [0, 1], False),
        (Overflow.DROP_OLDEST, [True, True, True, True], [2, 3], False),
        (Overflow.FAIL, [True, True, False, False], [0, 1], True),
    ],
)
def test_overflow_policies_return_values_and_dropped_counts(
    engine: Engine, overflow: Overflow, returns: list[bool], items: list[int], failed: bool
) -> None:
    flow, handle = Flow.queue(2, overflow)
    assert [handle.offer(i) for i in range(4)] == returns
    assert handle.dropped == 2
    handle.close()
    got, error, report = run_all(engine, flow)
    assert got == items  # FAIL: the buffered items come first, then the error
    if failed:
        assert isinstance(error, MissingBackpressureError)
        assert "buffer of 2 was full" in str(error)
        assert handle.closed  # FAIL ended the queue: the offer after it was rejected too
    else:
        assert error is None
    assert report.stages["queue"].dropped == 2
    assert report.dropped == 2
    assert report.delivered == len(items)


def test_fail_raises_missing_backpressure_error_from_terminals(engine: Engine) -> None:
    flow, handle = Flow.queue(1, Overflow.FAIL)
    assert handle.offer("a")
    assert not handle.offer("b")
    with pytest.raises(MissingBackpressureError, match=r"overflow=Overflow\.FAIL"):
        flow.to_list(engine=engine)


def test_offer_after_close_returns_false_and_is_counted(engine: Engine) -> None:
    flow, handle = Flow.queue(3, Overflow.DROP_OLDEST)
    handle.offer("kept")
    handle.close()
    handle.close()  # idempotent
    assert handle.closed
    assert handle.offer("late") is False
    assert handle.dropped == 1
    items, error, report = run_all(engine, flow)
    assert (items, error) == (["kept"], None)
    assert report.stages["queue"].dropped == 1
    assert handle.offer("later") is False  # after the run: counted in the next run's Report
    assert handle.dropped == 2
    assert run_all(engine, flow)[2].stages["queue"].dropped == 1


def test_bad_arguments_fail_when_built() -> None:
    with pytest.raises(ValueError, match=r"never blocks.*DROP_NEWEST"):
        Flow.queue(4, Overflow.BACKPRESSURE)
    with pytest.raises(ValueError, match="maxsize"):
        Flow.queue(0, Overflow.DROP_NEWEST)
    with pytest.raises(TypeError, match="maxsize"):
        Flow.queue(2.5, Overflow.DROP_NEWEST)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Overflow"):
        Flow.queue(2, "drop_newest")  # type: ignore[arg-type]


def test_a_completed_queue_is_one_shot(engine: Engine) -> None:
    flow, handle = Flow.queue(4, Overflow.DROP_NEWEST)
    handle.offer(1)
    handle.close()
    assert flow.to_list(engine=engine) == [1]
    assert flow.to_list(engine=engine) == []  # the terminal, at once
    assert flow.count(engine=engine) == 0

    signals: list[Any] = []

    class Sub:
        def on_subscribe(self, s: Any) -> None:
            signals.append("subscribed")
            s.request(1)

        def on_next(self, item: Any) -> None:
            signals.append(item)

        def on_error(self, error: BaseException) -> None:
            signals.append(error)

        def on_complete(self) -> None:
            signals.append("complete")
            ended.set()

    ended = threading.Event()
    flow.subscribe(Sub(), engine=engine)
    # a queue's publisher waits for items on a thread of its own: the terminal comes from there
    assert ended.wait(5)
    assert signals == ["subscribed", "complete"]


def test_a_failed_queue_fails_every_later_run_at_once(engine: Engine) -> None:
    flow, handle = Flow.queue(1, Overflow.FAIL)
    handle.offer(1)
    handle.offer(2)
    with pytest.raises(MissingBackpressureError):
        flow.to_list(engine=engine)
    with pytest.raises(MissingBackpressureError):
        flow.to_list(engine=engine)


@pytest.mark.timeout(30)
def test_a_run_that_stops_early_ends_the_queue(engine: Engine) -> None:
    flow, handle = Flow.queue(8, Overflow.DROP_NEWEST)
    for i in range(5):
        handle.offer(i)  # the queue stays open: the run ends it when it stops
    items, error, report = run_all(engine, flow.take(2))
    assert (items, error) == ([0, 1], None)
    assert handle.closed
    assert handle.buffered == 0
    assert handle.offer(9) is False  # the consumer is gone
    # nothing vanished: what the run did not deliver (still in the queue, in channels, or
    # held by a stage) was lost with it
    assert report.delivered + report.lost == 5
    assert flow.to_list(engine=engine) == []


@pytest.mark.timeout(30)
def test_a_second_run_at_the_same_time_is_refused(engine: Engine) -> None:
    flow, handle = Flow.queue(4, Overflow.DROP_NEWEST)
    got: list[int] = []
    consuming = threading.Event()

    def consume(x: int) -> None:
        got.append(x)
        consuming.set()

    first = threading.Thread(target=lambda: flow.foreach(consume, engine=engine))
    first.start()
    try:
        handle.offer(1)
        assert consuming.wait(10)
        with pytest.raises(RuntimeError, match="another run is consuming this queue"):
            flow.to_list(engine=engine)
        handle.offer(2)
        handle.close()
    finally:
        first.join(10)
    assert not first.is_alive()
    assert got == [1, 2]  # the refused run took nothing from the first one


@pytest.mark.timeout(30)
def test_offers_from_loop_callbacks_to_an_async_run(engine: Engine) -> None:
    """The producer lives on the consumer's own loop: offer must never block it."""

    async def main() -> list[int]:
        flow, handle = Flow.queue(8, Overflow.DROP_NEWEST)  # room for all: none dropped
        loop = asyncio.get_running_loop()
        for i in range(5):
            loop.call_later(0.002 * (i + 1), handle.offer, i)
        loop.call_later(0.02, handle.close)

        async def slow_double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        return await flow.map_async(slow_double).to_list_async(engine=engine)

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]


@pytest.mark.timeout(30)
def test_offers_from_another_thread_to_an_async_run(engine: Engine) -> None:
    flow, handle = Flow.queue(64, Overflow.DROP_NEWEST)

    def produce() -> None:
        for i in range(50):
            assert handle.offer(i)
            if i % 10 == 0:
                threading.Event().wait(0.001)
        handle.close()

    async def main() -> list[int]:
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            return await flow.to_list_async(engine=engine)
        finally:
            await asyncio.to_thread(producer.join)

    assert asyncio.run(main()) == list(range(50))


def test_a_sync_terminal_inside_a_loop_refuses_to_wait() -> None:
    flow, handle = Flow.queue(2, Overflow.DROP_NEWEST)

    async def main() -> list[str]:
        with pytest.raises(RuntimeError, match=r"use `await flow\.to_list_async\(\)` instead"):
            flow.to_list()
        assert not handle.closed  # the refused run did not end the queue
        handle.offer("x")
        handle.close()
        return await flow.to_list_async()

    assert asyncio.run(main()) == ["x"]


def test_handle_repr_and_properties() -> None:
    _flow, handle = Flow.queue(3, Overflow.DROP_OLDEST)
    assert isinstance(handle, QueueHandle)
    assert (handle.maxsize, handle.overflow) == (3, Overflow.DROP_OLDEST)
    handle.offer("x")
    assert repr(handle) == "<QueueHandle 1/3 buffered, overflow=DROP_OLDEST, dropped=0>"
    handle.close()
    assert repr(handle).endswith("dropped=0, ended>")


@pytest.mark.timeout(20)
def test_sync_terminal_in_a_running_loop_refuses_before_taking_any_item(engine: Engine) -> None:
    """Regression (new-user trial): on the pull engine the terminal took the buffered items,
    then refused when it would wait: they vanished, counted nowhere."""

    async def main() -> int:
        flow, handle = Flow.queue(4, Overflow.DROP_NEWEST)
        handle.offer(1)
        handle.offer(2)
        with pytest.raises(RuntimeError, match=r"await flow\.to_list_async\(\)"):
            flow.to_list(engine=engine)
        handle.offer(3)
        handle.close()
        report = await flow.run_async(engine=engine)
        return report.delivered

    assert asyncio.run(main()) == 3
