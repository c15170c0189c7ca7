"""map_async on every engine: the concurrency cap, order, errors, cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxpipe import Flow, Result
from rxpipe.engines import Engine
from tests.helpers import turns as _turns


class Gauge:
    """Counts calls running at once (every engine runs them on one loop per stage)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, x: int, delay: float = 0.0005) -> int:
        self.now += 1
        self.calls += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(delay)
        finally:
            self.now -= 1
        return x * 2


@pytest.mark.parametrize("ordered", [True, False])
def test_concurrency_cap_is_never_exceeded(engine: Engine, ordered: bool) -> None:
    gauge = Gauge()
    out = Flow.range(60).map_async(gauge, concurrency=5, ordered=ordered).to_list(engine=engine)
    assert sorted(out) == [2 * x for x in range(60)]
    assert gauge.peak == 5  # reached, never exceeded
    if ordered:
        assert out == [2 * x for x in range(60)]


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=10, deadline=None
)
@given(st.lists(st.floats(0, 0.003), min_size=1, max_size=25), st.integers(1, 6))
def test_ordered_mode_keeps_input_order_under_random_delays(
    engine: Engine, delays: list[float], k: int
) -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(delays[i])
        return i

    flow = Flow.range(len(delays)).map_async(work, concurrency=k)
    assert flow.to_list(engine=engine) == list(range(len(delays)))


def test_a_finished_result_does_not_hold_a_call_slot(engine: Engine) -> None:
    """Item 0 is slow; the others finish and wait: calls keep running meanwhile."""
    started: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        await asyncio.sleep(0.05 if i == 0 else 0.001)
        return i

    flow = Flow.range(12).map_async(work, concurrency=2, ordered=True)
    assert flow.to_list(engine=engine) == list(range(12))
    # with a slot held per waiting result only item 1 could run beside item 0; instead the
    # window (4 x 2 = 8) filled while item 0 was slow
    assert started[:8] == list(range(8))


@pytest.mark.parametrize("window", [2, 5, 16])
def test_ordered_window_caps_items_running_or_waiting(engine: Engine, window: int) -> None:
    """While item 0 is slow, exactly ``window`` items start: the cap is reached, not passed."""
    started: list[int] = []
    started_when_0_finished: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        await asyncio.sleep(0.08 if i == 0 else 0.001)
        if i == 0:
            started_when_0_finished.append(len(started))
        return i

    flow = Flow.range(40).map_async(work, concurrency=2, window=window)
    assert flow.to_list(engine=engine) == list(range(40))
    assert started_when_0_finished == [window]


def test_unordered_mode_emits_as_results_arrive(engine: Engine) -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(0.03 if i == 0 else 0)
        return i

    out = Flow.range(5).map_async(work, concurrency=5, ordered=False).to_list(engine=engine)
    assert sorted(out) == list(range(5))
    assert out[-1] == 0


def test_error_fails_fast_and_stops_every_call(engine: Engine) -> None:
    gauge = Gauge()

    async def work(x: int) -> int:
        if x == 7:
            raise LookupError("no such thing")
        return await gauge(x, 0.01)

    with pytest.raises(LookupError) as info:
        Flow.range(10**6).map_async(work, concurrency=4).to_list(engine=engine)
    assert "rxpipe: raised in stage 'map_async'" in info.value.__notes__
    assert gauge.now == 0  # every running call was cancelled
    assert gauge.calls < 100


def test_skip_and_result_surfaces_keep_order(engine: Engine) -> None:
    async def work(x: int) -> int:
        await asyncio.sleep(random.random() * 0.002)
        if x % 3 == 0:
            raise ValueError(x)
        return x

    skipped = Flow.range(12).map_async(work, concurrency=4, errors="skip")
    assert skipped.to_list(engine=engine) == [x for x in range(12) if x % 3]
    report = skipped.run(engine=engine)
    assert report.stages["map_async"].errored == 4
    results = Flow.range(6).map_async(work, concurrency=3, errors="result").to_list(engine=engine)
    assert [r.item for r in results] == list(range(6))
    assert [r.ok for r in results] == [False, True, True, False, True, True]
    assert all(isinstance(r, Result) for r in results)


def test_leaving_early_cancels_running_calls(engine: Engine) -> None:
    gauge = Gauge()

    async def work(x: int) -> int:
        return await gauge(x, 0.005)

    run = engine.open(Flow.range(1000).map_async(work, concurrency=6).plan)
    out = []
    for x in run:
        out.append(x)
        if len(out) == 3:
            break
    run.close()
    assert out == [0, 2, 4]
    assert gauge.now == 0
    report = run.report()
    assert report.delivered == 3


def test_bad_arguments() -> None:
    async def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="concurrency"):
        Flow.range(3).map_async(f, concurrency=0)
    with pytest.raises(TypeError, match="ordered"):
        Flow.range(3).map_async(f, ordered="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Flow.range(3).map_async(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"window=3\) must be >= concurrency \(4\)"):
        Flow.range(3).map_async(f, concurrency=4, window=3)
    with pytest.raises(ValueError, match="ordered mode only"):
        Flow.range(3).map_async(f, ordered=False, window=8)
    with pytest.raises(TypeError, match="window"):
        Flow.range(3).map_async(f, window=True)
    with pytest.raises(TypeError, match="window"):
        Flow.range(3).map_async(f, window="8")  # type: ignore[arg-type]


def test_sync_terminal_inside_a_loop_points_at_the_async_twin() -> None:
    async def f(x: int) -> int:
        return x

    async def main() -> None:
        with pytest.raises(RuntimeError, match="to_list_async"):
            Flow.range(3).map_async(f).to_list()
        assert await Flow.range(3).map_async(f).to_list_async() == [0, 1, 2]

    asyncio.run(main())


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
