"""parallel and partition on every engine: caps, order, per-key order, errors, executors."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxpipe import Flow, stage
from rxpipe.engines import Engine
from tests.helpers import read_ahead


class Gauge:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def __call__(self, x: int) -> int:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(random.random() * 0.002)
        finally:
            self.now -= 1
        return x


def square(x: int) -> int:
    """Module level, so a process pool can pickle it."""
    return x * x


@pytest.mark.parametrize("ordered", [True, False])
def test_parallel_copies_overlap_up_to_n(engine: Engine, ordered: bool) -> None:
    gauge = Gauge()
    flow = Flow.range(40).parallel(4, stage().map_async(gauge), ordered=ordered)
    out = flow.to_list(engine=engine)
    assert (out if ordered else sorted(out)) == list(range(40))
    assert gauge.peak == 4


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=8, deadline=None
)
@given(st.lists(st.floats(0, 0.003), min_size=1, max_size=20), st.integers(1, 4))
def test_parallel_ordered_keeps_input_order_under_random_delays(
    engine: Engine, delays: list[float], n: int
) -> None:
    async def work(i: int) -> list[int]:
        await asyncio.sleep(delays[i])
        return [i, i]

    frag = stage().map_async(work).flat_map(lambda pair: pair)
    out = Flow.range(len(delays)).parallel(n, frag, ordered=True).to_list(engine=engine)
    assert out == [i for i in range(len(delays)) for _ in (0, 1)]


def test_parallel_of_a_filtering_fragment(engine: Engine) -> None:
    frag = stage().map(lambda x: x + 1).filter(lambda x: x % 3 == 0)
    out = Flow.range(30).parallel(3, frag, ordered=True).to_list(engine=engine)
    assert out == [x + 1 for x in range(30) if (x + 1) % 3 == 0]


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=8, deadline=None
)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 0.002)), max_size=25))
def test_partition_keeps_order_per_key(engine: Engine, items: list[tuple[int, float]]) -> None:
    async def work(item: tuple[int, tuple[int, float]]) -> tuple[int, int]:
        index, (key, delay) = item
        await asyncio.sleep(delay)
        return key, index

    flow = Flow.from_iterable(list(enumerate(items))).partition(
        lambda it: it[1][0], 3, stage().map_async(work)
    )
    out = flow.to_list(engine=engine)
    assert sorted(i for _, i in out) == list(range(len(items)))
    for key in {k for k, _ in items}:
        seen = [i for k, i in out if k == key]
        assert seen == sorted(seen)


def test_partition_copies_keep_their_own_state(engine: Engine) -> None:
    running_total = stage().scan(lambda acc, x: acc + x, 0).skip(1)
    flow = Flow.of(1, 10, 2, 20, 3, 30).partition(lambda x: x >= 10, 2, running_total)
    out = flow.to_list(engine=engine)
    assert [x for x in out if x < 10] == [1, 3, 6]
    assert [x for x in out if x >= 10] == [10, 30, 60]


def test_partition_memory_is_bounded_by_copies_not_keys(engine: Engine) -> None:
    """A million distinct keys go through 4 copies; the stage never holds more than a few."""
    flow = Flow.range(20_000).partition(lambda x: x, 4, stage().map(lambda x: x))
    report = flow.run(engine=engine)
    assert report.delivered == 20_000


def test_a_failing_copy_stops_every_copy(engine: Engine) -> None:
    gauge = Gauge()

    async def work(x: int) -> int:
        if x == 9:
            raise OSError("copy failed")
        return await gauge(x)

    with pytest.raises(OSError, match="copy failed"):
        Flow.range(10**6).parallel(4, stage().map_async(work)).to_list(engine=engine)
    assert gauge.now == 0


def test_parallel_on_a_thread_pool(engine: Engine) -> None:
    seen: set[str] = set()

    def work(x: int) -> int:
        seen.add(threading.current_thread().name)
        return x * 3

    with ThreadPoolExecutor(3, thread_name_prefix="pool") as pool:
        flow = Flow.range(50).parallel(3, stage().map(work), executor=pool, ordered=True)
        assert flow.to_list(engine=engine) == [3 * x for x in range(50)]
        batched = Flow.range(50).parallel(3, stage().map(work), executor=pool, batch=7)
        assert sorted(batched.to_list(engine=engine)) == [3 * x for x in range(50)]
    assert all(name.startswith("pool") for name in seen)


@pytest.mark.timeout(60)
def test_parallel_on_a_process_pool_and_a_clear_pickling_error(engine: Engine) -> None:
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        flow = Flow.range(30).parallel(2, stage().map(square), executor=pool, ordered=True)
        assert flow.to_list(engine=engine) == [x * x for x in range(30)]
        unpicklable = stage().map(lambda x: x)
        bad = Flow.range(3).parallel(2, unpicklable, executor=pool, name="enrich")
        with pytest.raises(TypeError, match="module level") as info:
            bad.to_list(engine=engine)
        # regression: pull said 'range', push named no stage
        assert info.value.__notes__ == ["rxpipe: raised in stage 'enrich'"]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Flow.range(3).parallel(0, stage().map(str)), ValueError, "n must be >= 1"),
        (lambda: Flow.range(3).parallel(2, str), TypeError, "Stage or a rxpipe.stage"),
        (lambda: Flow.range(3).parallel(2, stage()), ValueError, "empty fragment"),
        (lambda: Flow.range(3).parallel(2, stage().map(str), batch=4), ValueError, "executor"),
        (lambda: Flow.range(3).parallel(2, stage().map(str), executor=1), TypeError, "Executor"),
        (lambda: Flow.range(3).partition(1, 2, stage().map(str)), TypeError, "callable"),
        (lambda: Flow.range(3).partition(str, 0, stage().map(str)), ValueError, ">= 1"),
    ],
)
def test_bad_arguments_fail_when_built(build: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


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
