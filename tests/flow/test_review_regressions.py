"""Regressions for defects a review found: each test failed before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rxpipe import Flow, MissingBackpressureError, Overflow, PushEngine, stage
from rxpipe.engines.base import Engine

from .conftest import read_ahead


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
