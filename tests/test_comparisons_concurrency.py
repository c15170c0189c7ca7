"""Smoke tests of the concurrency workloads (io_fanout, cpu_fanout, dask_fanout), on tiny sizes.

No timing is asserted: targets are reported by ``make bench``, never tested. What is checked:
every contender runs and appears in its table, the reference rows and targets are rendered, a
contender doing the wrong work is caught, the "not available" paths render, and the process
pool and the Dask cluster are gone afterwards.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest

from comparisons import workloads
from comparisons.harness import Contender, ResultMismatch, measure
from comparisons.workloads import cpu_fanout, dask_fanout, io_fanout
from rxpipe import Flow

TINY = 40


def _rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("| ")]


def _has_row(rows: list[str], name: str) -> bool:
    return any(r.startswith(f"| {name} ") or f"**{name}**" in r for r in rows)


def _assert_targets_reported(rows: list[str], texts: list[str]) -> None:
    for text in texts:
        row = next(r for r in rows if r.startswith(f"| {text} |"))
        assert "**MET**: " in row or "**MISSED**: " in row, row


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    """A stand-in executor: the contenders accept any concurrent.futures.Executor."""
    with ThreadPoolExecutor(2) as pool:
        yield pool


def test_concurrency_workloads_are_registered() -> None:
    for name in ("io_fanout", "cpu_fanout", "dask_fanout"):
        assert name in workloads.names()
        assert workloads.load(name).name == name


# -- io_fanout ---------------------------------------------------------------------------------
def test_delays_are_seeded_skewed_and_median_one_ms() -> None:
    waits = io_fanout.delays(2_000)
    assert waits == io_fanout.delays(2_000)
    assert statistics.median(waits) == pytest.approx(1e-3)
    assert 6e-3 < io_fanout.p99(waits) < 16e-3
    assert min(waits) > 0


def test_hand_written_fan_outs_give_every_result() -> None:
    items = list(range(TINY))
    work = io_fanout.make_work(io_fanout.delays(TINY))
    c = io_fanout.CONCURRENCY

    async def all_of_them() -> list[list[int]]:
        return [
            await io_fanout.queue_pool(items, work, c, ordered=True),
            await io_fanout.semaphore_gather(items, work, c),
            await io_fanout.aiostream_map(items, work, c, ordered=True),
            await io_fanout.rx_merge(items, work, c, ordered=True),
            sorted(await io_fanout.queue_pool(items, work, c, ordered=False)),
            sorted(await io_fanout.aiostream_map(items, work, c, ordered=False)),
            sorted(await io_fanout.rx_merge(items, work, c, ordered=False)),
        ]

    for out in asyncio.run(all_of_them()):
        assert out == items


def test_every_io_contender_runs_exactly_eight_calls_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = peak = 0
    waits = io_fanout.delays(TINY)

    def tracked(_: object) -> io_fanout.Work:
        async def work(i: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(waits[i])
            finally:
                running -= 1
            return i

        return work

    monkeypatch.setattr(io_fanout, "make_work", tracked)
    for c in io_fanout.contenders(TINY):
        peak = 0
        assert c.run() == list(range(TINY)), c.name
        assert peak == io_fanout.CONCURRENCY, c.name


def test_schedule_computes_list_schedules_with_and_without_the_ordered_window() -> None:
    assert io_fanout.schedule([1.0, 1.0, 1.0, 1.0], 2) == 2.0
    # item 0 is slow: unordered, the others flow past it; with a window of 2 they must wait
    assert io_fanout.schedule([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert io_fanout.schedule([3.0, 1.0, 1.0, 1.0], 2, window=2) == 4.0
    refs = io_fanout.references(io_fanout.delays(200))
    assert refs[0].seconds <= refs[1].seconds <= refs[3].seconds <= refs[2].seconds


def test_io_fanout_table_lists_every_contender_references_and_targets() -> None:
    m = io_fanout.measure_fanout(TINY, rounds=1, warmup=0)
    names = [c.name for c in io_fanout.contenders(TINY)]
    assert m.names == tuple(names)
    assert {
        io_fanout.BASELINE,
        io_fanout.POOL_O,
        io_fanout.PULL_U,
        io_fanout.PULL_O,
        io_fanout.PUSH_U,
        io_fanout.PUSH_O,
        io_fanout.PULL_O_WIDE,
        io_fanout.PUSH_O_WIDE,
        io_fanout.THREADS_U,
        io_fanout.THREADS_O,
        io_fanout.SEMAPHORE,
        io_fanout.AIOSTREAM_U,
        io_fanout.AIOSTREAM_O,
        io_fanout.RX_U,
        io_fanout.RX_O,
    } == set(names)
    for c in io_fanout.contenders(TINY):  # what measure compared, checked once more here
        assert c.run() == list(range(TINY)), c.name

    overhead = io_fanout.measure_fanout(TINY, rounds=1, warmup=0, zero=True)
    text = io_fanout.render(m, TINY, overhead)
    assert text.startswith("## ")
    rows = _rows(text)
    for name in names:
        assert _has_row(rows, name), name
    for ref in io_fanout.references(io_fanout.delays(TINY)):
        assert any(r.startswith(f"| {ref.name} (reference, not run) |") for r in rows)
    _assert_targets_reported(rows, [t.text for t in io_fanout.TARGETS])
    assert "What the fan-out itself costs per item" in text


def test_io_fanout_catches_a_contender_doing_the_wrong_work() -> None:
    def one_short() -> list[int]:
        return list(range(TINY - 1))

    def unsorted() -> list[int]:  # unordered output left unsorted
        return list(reversed(range(TINY)))

    for wrong in (one_short, unsorted):
        contenders = [*io_fanout.contenders(TINY), Contender("wrong", wrong)]
        with pytest.raises(ResultMismatch, match="'wrong'") as info:
            measure(contenders, baseline=io_fanout.BASELINE, items=TINY, rounds=1, warmup=0)
        assert info.value.contender == "wrong"


# -- cpu_fanout --------------------------------------------------------------------------------
def test_cpu_work_is_deterministic_and_calibrated() -> None:
    assert cpu_fanout.cpu_work(3, 100) == cpu_fanout.cpu_work(3, 100)
    assert cpu_fanout.cpu_work(3, 100)[0] == 3
    assert cpu_fanout.calibrate() >= 1


def test_cpu_fanout_on_a_process_pool_lists_every_contender_and_target() -> None:
    children = set(multiprocessing.active_children())
    result = cpu_fanout.measure_cpu(12, rounds=1, warmup=0, loops=50)
    assert not set(multiprocessing.active_children()) - children  # the pool is gone
    m = result.measurement
    assert result.capacity_before > 0
    assert result.capacity_after > 0
    expected = {
        cpu_fanout.BASELINE,
        cpu_fanout.POOL_MAP,
        cpu_fanout.POOL_MAP_10,
        cpu_fanout.IN_FLIGHT,
    }
    if cpu_fanout.has_parallel():
        expected |= {cpu_fanout.RXPIPE, cpu_fanout.RXPIPE_ORDERED, cpu_fanout.RXPIPE_B10}
    assert set(m.names) == expected
    text = cpu_fanout.render(result, 12)
    assert "**Effective cores**" in text
    assert text.startswith("## ")
    rows = _rows(text)
    for name in m.names:
        assert _has_row(rows, name), name
    if cpu_fanout.has_parallel():
        _assert_targets_reported(rows, [t.text for t in cpu_fanout.TARGETS])


def test_cpu_fanout_catches_a_contender_doing_the_wrong_work(threads: Executor) -> None:
    items = range(12)

    def too_little_work() -> list[tuple[int, int]]:
        return [cpu_fanout.cpu_work(x, 49) for x in items]

    contenders = [
        *cpu_fanout.contenders(12, threads, loops=50),
        Contender("wrong", too_little_work),
    ]
    with pytest.raises(ResultMismatch, match="'wrong'"):
        measure(contenders, baseline=cpu_fanout.BASELINE, items=12, rounds=1, warmup=0)


def test_cpu_fanout_rxpipe_rows_say_not_available_without_parallel(
    monkeypatch: pytest.MonkeyPatch, threads: Executor
) -> None:
    monkeypatch.setattr(cpu_fanout, "has_parallel", lambda: False)
    contenders = cpu_fanout.contenders(12, threads, loops=50)
    names = [c.name for c in contenders]
    assert not any(n.startswith("rxpipe") for n in names)
    m = measure(contenders, baseline=cpu_fanout.BASELINE, items=12, rounds=1, warmup=0)
    rows = _rows(cpu_fanout.render(cpu_fanout.CpuRun(m, 2.0, 2.0), 12))
    for name in (cpu_fanout.RXPIPE, cpu_fanout.RXPIPE_ORDERED, cpu_fanout.RXPIPE_B10):
        row = next(r for r in rows if r.startswith(f"| {name} "))
        assert "not available" in row
    for target in cpu_fanout.TARGETS:
        row = next(r for r in rows if r.startswith(f"| {target.text} |"))
        assert "**NOT MEASURED**" in row


# -- dask_fanout -------------------------------------------------------------------------------
def test_dask_contenders_run_on_any_executor_and_catch_wrong_work(threads: Executor) -> None:
    n = 2_500
    batched = dask_fanout.batched_contenders(n, threads)
    single = dask_fanout.single_contenders(20, threads)
    names = {c.name for c in (*batched, *single)}
    assert {dask_fanout.BATCH_BASELINE, dask_fanout.IN_PROCESS, dask_fanout.MAP_BASELINE} <= names
    if dask_fanout.has_parallel():
        assert {dask_fanout.rxpipe_name(b) for b in (1, *dask_fanout.BATCHES)} <= names
    for c in batched:
        assert c.run() == list(range(1, n + 1)), c.name

    def off_by_one() -> list[int]:
        return list(range(n))

    with pytest.raises(ResultMismatch, match="'wrong'"):
        measure(
            [*batched, Contender("wrong", off_by_one)],
            baseline=dask_fanout.BATCH_BASELINE,
            items=n,
            rounds=1,
            warmup=0,
        )


def test_dask_fanout_reports_a_cluster_that_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> AbstractContextManager[Executor]:
        raise OSError("no TCP here")

    monkeypatch.setattr(dask_fanout, "dask_executor", broken)
    result = dask_fanout.measure_dask(100, 10, rounds=1)
    assert result.batched is None
    assert result.error == "OSError: no TCP here"
    text = dask_fanout.render(result, 100, 10)
    assert "**Not available**" in text
    assert "OSError: no TCP here" in text
    for r in dask_fanout.target_results(None):
        assert r.status == "NOT MEASURED"


def test_dask_fanout_rxpipe_rows_say_not_available_without_parallel(
    monkeypatch: pytest.MonkeyPatch, threads: Executor
) -> None:
    monkeypatch.setattr(dask_fanout, "has_parallel", lambda: False)
    b = measure(
        dask_fanout.batched_contenders(200, threads),
        baseline=dask_fanout.BATCH_BASELINE,
        items=200,
        rounds=1,
        warmup=0,
    )
    s = measure(
        dask_fanout.single_contenders(10, threads),
        baseline=dask_fanout.MAP_BASELINE,
        items=10,
        rounds=1,
        warmup=0,
    )
    rows = _rows(dask_fanout.render(dask_fanout.DaskRun(b, s), 200, 10))
    for batch in (1, *dask_fanout.BATCHES):
        row = next(r for r in rows if r.startswith(f"| {dask_fanout.rxpipe_name(batch)} "))
        assert "not available" in row
    assert all(r.status == "NOT MEASURED" for r in dask_fanout.target_results(b))


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.rxpipe_allow_threads("Dask-Offload")  # distributed's process-wide offload pool
def test_dask_fanout_on_a_local_cluster_lists_every_contender_and_cleans_up() -> None:
    pytest.importorskip("distributed")
    children = set(multiprocessing.active_children())
    result = dask_fanout.measure_dask(2_000, 10, rounds=1, warmup=0)
    assert not set(multiprocessing.active_children()) - children  # the workers are gone
    assert result.error == ""
    assert result.batched is not None
    assert result.single is not None
    expected_batched = {dask_fanout.BATCH_BASELINE, dask_fanout.IN_PROCESS}
    expected_single = {dask_fanout.MAP_BASELINE}
    if dask_fanout.has_parallel():
        expected_batched |= {dask_fanout.rxpipe_name(b) for b in dask_fanout.BATCHES}
        expected_batched.add(dask_fanout.rxpipe_name(dask_fanout.BATCHES[0], dask_fanout.DEEP))
        expected_single |= {dask_fanout.rxpipe_name(1, n) for n in (2, dask_fanout.DEEP)}
    assert expected_batched <= set(result.batched.names)
    assert set(result.single.names) == expected_single
    text = dask_fanout.render(result, 2_000, 10)
    rows = _rows(text)
    for name in (*result.batched.names, *result.single.names):
        assert _has_row(rows, name), name
    if dask_fanout.has_parallel():
        for r in dask_fanout.target_results(result.batched):
            assert r.status in ("MET", "MISSED")


def test_flow_parallel_is_what_the_rxpipe_rows_call() -> None:
    # The rxpipe rows are built with Any (Flow.parallel arrived separately): check its name.
    assert cpu_fanout.has_parallel() == dask_fanout.has_parallel()
    assert cpu_fanout.has_parallel() == callable(getattr(Flow, "parallel", None))
