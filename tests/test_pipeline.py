"""The Pipeline handle (API.md section 4): drain, cancel, shutdown(deadline), join, on every
engine, from any thread, sync and async; and what each ending leaves in the Report."""

from __future__ import annotations

import asyncio
import gc
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rxpipe
from rxpipe import Flow, Overflow, PipelineCancelledError, Report
from rxpipe.engines.base import Engine
from tests.accounting import assert_accounted, source_of

pytestmark = pytest.mark.timeout(60)


def _wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.002)


async def _until(cond: Any) -> None:
    """``_wait_for`` on an event loop: polls without blocking the loop (TimeoutError: 10 s)."""
    async with asyncio.timeout(10):
        while not cond():  # noqa: ASYNC110 (a list filled by the calls, on any thread)
            await asyncio.sleep(0.002)


async def _slow(x: int) -> int:
    await asyncio.sleep(0.01)
    return x


def _hanging(started: list[int]) -> Any:
    """A call that never answers (it waits an hour), noting each call in ``started`` as it
    starts (``list.append`` is thread-safe): a test waits for the calls it counts on instead
    of sleeping and hoping that they started (a loaded machine may not have started any)."""

    async def call(x: int) -> int:
        started.append(x)
        await asyncio.sleep(3600)
        return x

    return call


def _endless() -> Flow[int]:
    return Flow.from_iterable(itertools.count())


# -- drain --------------------------------------------------------------------------------------
def test_drain_stops_an_endless_source_and_loses_nothing(engine: Engine) -> None:
    got: list[int] = []
    p = (
        _endless()
        .map_async(_slow, concurrency=4)
        .map(lambda x: x * 2)
        .start(engine=engine, on_item=got.append)
    )
    _wait_for(lambda: len(got) >= 20)
    report = p.drain(timeout=20)
    assert p.state == "completed"
    assert report.lost == 0
    assert report.delivered == len(got) == source_of(report).emitted
    assert got == [2 * i for i in range(len(got))]
    assert_accounted(report)
    assert p.join() == report  # idempotent, and join of a drained pipeline returns the Report


def test_drain_timeout_raises_and_the_pipeline_keeps_draining(engine: Engine) -> None:
    release = threading.Event()

    async def held(x: int) -> int:
        while not release.is_set():  # noqa: ASYNC110 (a thread event)
            await asyncio.sleep(0.005)
        return x

    got: list[int] = []
    p = _endless().map_async(held, concurrency=2).start(engine=engine, on_item=got.append)
    time.sleep(0.05)
    with pytest.raises(TimeoutError):
        p.drain(timeout=0.05)
    assert p.running
    release.set()
    report = p.drain(timeout=20)
    assert report.lost == 0
    assert report.delivered == len(got) >= 1


# -- cancel -------------------------------------------------------------------------------------
def test_cancel_returns_fast_with_eight_calls_in_flight_and_counts_them_lost(
    engine: Engine,
) -> None:
    started: list[int] = []
    p = _endless().map_async(_hanging(started), concurrency=8).start(engine=engine)
    _wait_for(lambda: len(started) >= 8)  # the 8 calls are running (each waits for an hour)
    t0 = time.perf_counter()
    report = p.cancel()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed  # target 50 ms; generous for a shared CI machine
    assert p.state == "cancelled"
    assert report.delivered == 0
    assert report.stages["map_async"].lost >= 8
    assert_accounted(report)
    with pytest.raises(PipelineCancelledError) as caught:
        p.join()
    assert caught.value.report == report


def test_cancel_of_a_run_that_never_waits(engine: Engine) -> None:
    """A synchronous chain over an endless source: cancel gets in between two items."""
    got: list[int] = []
    p = (
        _endless()
        .map(lambda x: x + 1)
        .filter(lambda x: x % 3 != 0)
        .start(engine=engine, on_item=got.append)
    )
    _wait_for(lambda: len(got) >= 100)
    report = p.cancel()
    assert p.state == "cancelled"
    assert report.delivered == len(got)
    assert_accounted(report)


def test_calls_from_many_threads_are_idempotent_and_agree(engine: Engine) -> None:
    p = _endless().map_async(_slow, concurrency=4).start(engine=engine)
    time.sleep(0.05)
    results: list[Report | BaseException] = []

    def call(i: int) -> None:
        try:
            results.append([p.cancel, p.drain, lambda: p.shutdown(0.01)][i % 3]())
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 9
    assert all(isinstance(r, Report) for r in results), results
    assert all(r == results[0] for r in results)
    assert_accounted(results[0])  # type: ignore[arg-type]


# -- shutdown -----------------------------------------------------------------------------------
def test_shutdown_cancels_what_is_left_at_the_deadline(engine: Engine) -> None:
    started: list[int] = []
    p = _endless().map_async(_hanging(started), concurrency=8).start(engine=engine)
    # a call runs, which the drain cannot finish (a stop before the first read would drain an
    # empty run: completed, nothing lost)
    _wait_for(lambda: bool(started))
    t0 = time.perf_counter()
    report = p.shutdown(0.2)
    elapsed = time.perf_counter() - t0
    assert 0.2 <= elapsed < 10.0, elapsed  # the deadline, then a prompt cancel (slack: CI)
    assert p.state == "cancelled"
    assert report.stages["map_async"].lost >= 1  # the calls in flight at the deadline
    assert_accounted(report)


def test_shutdown_that_drains_in_time_loses_nothing(engine: Engine) -> None:
    got: list[int] = []
    p = _endless().map_async(_slow, concurrency=4).start(engine=engine, on_item=got.append)
    _wait_for(lambda: len(got) >= 10)
    report = p.shutdown(30)
    assert p.state == "completed"
    assert report.lost == 0
    assert report.delivered == len(got)


def test_a_stage_finishes_the_item_it_holds_at_the_deadline(engine: Engine) -> None:
    """The two-select sandwich: a sync stage's call is never interrupted."""
    started, finished = [], []

    def work(x: int) -> int:
        started.append(x)
        time.sleep(0.3)
        finished.append(x)
        return x

    p = _endless().map(work).start(engine=engine)
    _wait_for(lambda: bool(started))
    report = p.shutdown(0.05)
    assert started == finished  # every call that started ran to its end
    assert_accounted(report)


# -- join and failures --------------------------------------------------------------------------
def test_join_waits_for_natural_completion(engine: Engine) -> None:
    got: list[int] = []
    p = Flow.range(100).map(lambda x: x * x).start(engine=engine, on_item=got.append)
    report = p.join(timeout=30)
    assert p.state == "completed"
    assert got == [x * x for x in range(100)]
    assert report.delivered == 100
    assert report.lost == 0


def test_join_timeout_raises_and_the_pipeline_keeps_running(engine: Engine) -> None:
    p = _endless().map_async(_slow).start(engine=engine)
    with pytest.raises(TimeoutError):
        p.join(timeout=0.05)
    assert p.running
    p.cancel()


class Boom(Exception):
    pass


def _boom_at(n: int) -> Any:
    def f(x: int) -> int:
        if x == n:
            raise Boom(x)
        return x

    return f


def test_join_and_drain_raise_the_original_exception(engine: Engine) -> None:
    p = _endless().map(_boom_at(50)).start(engine=engine)
    with pytest.raises(Boom):
        p.join(timeout=30)
    assert p.state == "failed"
    with pytest.raises(Boom):
        p.drain()
    with pytest.raises(Boom):
        p.shutdown(1)
    assert isinstance(p.cancel(), Report)  # cancel always gives the Report


def test_on_item_that_raises_fails_the_pipeline(engine: Engine) -> None:
    p = Flow.range(10).start(engine=engine, on_item=_boom_at(3))
    with pytest.raises(Boom):
        p.join(timeout=30)


@pytest.mark.parametrize("where", ["map", "parallel"])
def test_keyboard_interrupt_in_a_stage_ends_the_pipeline_and_is_counted(
    engine: Engine, where: str
) -> None:
    def interrupt(x: int) -> int:
        if x == 5:
            raise KeyboardInterrupt
        return x

    flow = _endless()
    if where == "map":
        flow = flow.map(interrupt)
    else:  # an interpreter inside the outer one's callback: counted once all the same
        flow = flow.parallel(2, rxpipe.stage().map(interrupt), ordered=True)
    p = flow.start(engine=engine)
    with pytest.raises(KeyboardInterrupt):
        p.join(timeout=30)
    assert p.state == "failed"
    report = p.cancel()
    assert report.stages[where].errored == 1  # the item it was processing is counted
    assert_accounted(report)


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="on_item"):
        Flow.range(3).start(on_item=3)  # type: ignore[arg-type]
    p = Flow.range(3).start()
    with pytest.raises(ValueError, match="deadline"):
        p.shutdown(-1)
    with pytest.raises(ValueError, match="timeout"):
        p.join(timeout=-1)
    p.join()


# -- garbage collection -------------------------------------------------------------------------
def test_a_running_pipeline_that_is_collected_is_cancelled_with_a_warning(engine: Engine) -> None:
    p = _endless().map_async(_slow).start(engine=engine)
    core = p._core
    with pytest.warns(ResourceWarning, match="garbage-collected"):
        del p  # no reference cycle: collected at once
    assert core.done.wait(10)
    assert core.state == "cancelled"
    _wait_for(lambda: not any(t.name.startswith("rxpipe-") for t in threading.enumerate()))


def test_an_ended_pipeline_that_is_collected_says_nothing(recwarn: pytest.WarningsRecorder) -> None:
    p = Flow.range(3).start()
    p.join()
    del p
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


# -- start_async --------------------------------------------------------------------------------
def test_start_async_async_with_drains_on_leaving(engine: Engine) -> None:
    got: list[int] = []

    async def main() -> rxpipe.Pipeline[int]:
        async with (
            await _endless().map_async(_slow).start_async(engine=engine, on_item=got.append) as p
        ):
            while len(got) < 10:  # noqa: ASYNC110 (a list filled by on_item)
                await asyncio.sleep(0.005)
        return p

    p = asyncio.run(main())
    assert p.state == "completed"
    report = p.cancel()  # ended already: the same Report
    assert report.lost == 0
    assert report.delivered == len(got)


def test_start_async_exception_in_the_block_cancels(engine: Engine) -> None:
    async def main() -> rxpipe.Pipeline[int]:
        started: list[int] = []
        flow = _endless().map_async(_hanging(started), concurrency=8)
        p = await flow.start_async(engine=engine)

        async def block() -> None:
            async with p:
                await _until(lambda: len(started) >= 8)  # the 8 calls are running
                raise Boom

        with pytest.raises(Boom):
            await block()
        return p

    p = asyncio.run(main())
    assert p.state == "cancelled"
    with pytest.raises(PipelineCancelledError) as caught:
        p.join()
    assert caught.value.report is not None
    assert caught.value.report.stages["map_async"].lost >= 8


def test_async_twins_and_the_sync_calls_that_would_wait_for_their_own_loop(
    engine: Engine,
) -> None:
    async def main() -> None:
        p = await _endless().map_async(_slow).start_async(engine=engine)
        with pytest.raises(RuntimeError, match="drain_async"):
            p.drain()
        with pytest.raises(TimeoutError):
            await p.join_async(timeout=0.02)
        report = await p.shutdown_async(10)
        assert report.lost == 0
        assert (await p.cancel_async()) == report

    asyncio.run(main())


def test_an_async_pipeline_is_cancelled_from_another_thread(engine: Engine) -> None:
    async def main() -> Report:
        started: list[int] = []
        flow = _endless().map_async(_hanging(started), concurrency=8)
        p = await flow.start_async(engine=engine)
        stopper = threading.Thread(target=p.cancel)
        await _until(lambda: len(started) >= 8)  # the 8 calls are running
        stopper.start()
        with pytest.raises(PipelineCancelledError):
            await p.join_async(timeout=10)
        await asyncio.to_thread(stopper.join)
        return await p.cancel_async()

    report = asyncio.run(main())
    assert report.stages["map_async"].lost >= 8


def test_sync_with_block_drains_or_cancels(engine: Engine) -> None:
    with Flow.range(1000).map(lambda x: x).start(engine=engine) as p:
        pass
    assert p.state == "completed"
    with pytest.raises(Boom), _endless().map_async(_slow).start(engine=engine) as q:
        raise Boom
    assert q.state == "cancelled"


# -- Flow.queue -----------------------------------------------------------------------------------
def test_a_queue_fed_pipeline_runs_until_close_then_drains(engine: Engine) -> None:
    flow, handle = Flow.queue(64, Overflow.DROP_NEWEST)
    got: list[int] = []
    last_held = threading.Event()  # holds the run open until the late offer was made

    def add_one(x: int) -> int:
        if x == 19:
            last_held.wait(10)
        return x + 1

    p = flow.map(add_one).start(engine=engine, on_item=got.append)
    for i in range(20):
        assert handle.offer(i)
    with pytest.raises(TimeoutError):
        p.join(timeout=0.05)  # an open queue: the pipeline waits for more
    handle.close()
    # refused after close, while the run still runs (an offer refused after the run ended
    # is counted by the handle and in the next run's Report: the guide says so)
    assert handle.offer(99) is False
    last_held.set()
    report = p.join(timeout=10)
    assert got == list(range(1, 21))
    assert report.stages["queue"].dropped == 1  # ... and counted in this run's Report
    assert report.lost == 0


def test_drain_closes_the_queue_first_and_delivers_what_it_accepted(engine: Engine) -> None:
    flow, handle = Flow.queue(1000, Overflow.DROP_NEWEST)
    got: list[int] = []
    p = flow.map_async(_slow, concurrency=2).start(engine=engine, on_item=got.append)
    for i in range(50):
        handle.offer(i)
    report = p.drain(timeout=20)
    assert handle.closed
    assert handle.offer(1) is False
    assert got == list(range(50))  # all accepted items, none lost
    assert report.lost == 0
    assert report.delivered == 50


def test_offers_refused_while_draining_are_in_that_runs_report(engine: Engine) -> None:
    flow, handle = Flow.queue(8, Overflow.DROP_NEWEST)
    release = threading.Event()
    p = flow.map(lambda x: (release.wait(10), x)[1]).start(engine=engine)
    handle.offer(0)
    handle.close()
    assert handle.offer(1) is False  # refused while the run still works on item 0 ...
    assert handle.offer(2) is False
    release.set()
    report = p.join(timeout=10)
    assert report.stages["queue"].dropped == 2  # ... and counted in that run's Report
    assert report.delivered == 1


def test_offers_refused_after_a_fail_queue_ended_are_in_that_runs_report(engine: Engine) -> None:
    flow, handle = Flow.queue(8, Overflow.FAIL)
    for i in range(8):
        handle.offer(i)
    assert handle.offer(8) is False  # full: FAIL ends the queue
    assert handle.offer(9) is False  # after the end: refused
    p = flow.start(engine=engine)
    with pytest.raises(rxpipe.MissingBackpressureError):
        p.join(timeout=10)
    report = p.cancel()
    assert report.stages["queue"].dropped == 2
    assert report.delivered == 8


def test_handle_fail_ends_the_flow_with_the_error_after_what_is_buffered(engine: Engine) -> None:
    flow, handle = Flow.queue(16, Overflow.DROP_NEWEST)
    got: list[int] = []
    p = flow.start(engine=engine, on_item=got.append)
    for i in range(5):
        handle.offer(i)
    handle.fail(Boom("upstream failed"))
    assert handle.closed
    assert handle.offer(5) is False
    with pytest.raises(Boom, match="upstream failed"):
        p.join(timeout=10)
    assert got == list(range(5))
    with pytest.raises(TypeError):
        handle.fail("not an exception")  # type: ignore[arg-type]


def test_the_interpreter_exits_with_a_pipeline_still_running() -> None:
    """A script that forgets its endless pipeline still exits: it is cancelled, with a
    warning, instead of being frozen mid-item or keeping the process alive."""
    script = (
        "import itertools, rxpipe\n"
        "p = rxpipe.Flow.from_iterable(itertools.count()).map(lambda x: x).start()\n"
        "print('bye')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        cwd=Path(__file__).resolve().parent.parent,  # this checkout's rxpipe
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == "bye"
    assert "still running at interpreter exit: cancelled" in done.stderr


def _slow_source() -> Iterator[int]:
    """A blocking synchronous source: 20 ms per read, without end."""
    for i in itertools.count():
        time.sleep(0.02)
        yield i


@pytest.mark.parametrize("stage", ["filter", "chunk", "chunk_within"])
def test_cancel_lands_at_the_next_read_of_a_blocking_sync_source(
    engine: Engine, stage: str
) -> None:
    """Regression: the pull engine read such a source inline on its loop and gave the loop a
    turn only every 256 reads, so cancel() waited about 5 s here while nothing reached the
    consumer (a filter rejecting everything, a chunk still filling)."""
    source = Flow.from_iterable(_slow_source())
    flow: Flow[Any]
    if stage == "filter":
        flow = source.filter(lambda x: False)
    elif stage == "chunk":
        flow = source.chunk(10_000)
    else:
        flow = source.chunk(10_000, within=60)
    pipeline = flow.start(engine=engine)
    time.sleep(0.2)
    started = time.perf_counter()
    report = pipeline.cancel()
    assert time.perf_counter() - started < 2.0
    assert report.delivered == 0
    assert pipeline.state == "cancelled"
    assert not [t for t in threading.enumerate() if t.name.startswith("rxpipe-")]
