"""buffer(n, overflow=...): a dropping or failing buffer keeps reading upstream on every engine.

Regression for the pull engine treating every policy as BACKPRESSURE (it only asked upstream for
what fit, so a fast producer was never decoupled from a slow consumer while push dropped).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from rxpipe import Flow, MissingBackpressureError, Overflow, PullEngine, PushEngine
from rxpipe.engines import Engine

N = 300
CAPACITY = 8


def _gated(overflow: Overflow, patience: float = 5.0) -> tuple[Flow[int], threading.Event]:
    """A fast source, a buffer, and a consumer whose first call waits until the source ended.

    While the first call waits, the source keeps producing: whatever does not fit in the
    buffer (and the engine's other channels) must meet the overflow policy.
    """
    source_done = threading.Event()

    def source() -> Iterator[int]:
        yield from range(N)
        source_done.set()

    calls = 0

    async def slow_first(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            for _ in range(int(patience * 1000)):  # never forever
                if source_done.is_set():
                    break
                await asyncio.sleep(0.001)
        return x

    flow = Flow.from_iterable(source()).buffer(CAPACITY, overflow=overflow).map_async(slow_first)
    return flow, source_done


@pytest.mark.timeout(30)
@pytest.mark.parametrize("overflow", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST])
def test_dropping_buffer_keeps_reading_while_downstream_waits(
    engine: Engine, overflow: Overflow
) -> None:
    flow, source_done = _gated(overflow)
    run = engine.open(flow.plan)
    out = run.collect()
    report = run.report()
    buf = report.stages["buffer"]
    assert source_done.is_set()
    assert buf.received == N
    assert buf.dropped > 0, "a full dropping buffer must drop, not slow its producer"
    assert buf.emitted + buf.dropped == N  # every item accounted for
    assert report.delivered == len(out) == buf.emitted
    assert out == sorted(out)
    # the buffer plus what the engine's channels and stages hold around it
    bound = CAPACITY + 4 + getattr(engine, "in_flight_bound", lambda _: 0)(flow.plan)
    assert len(out) <= bound
    if overflow is Overflow.DROP_NEWEST:
        # the first items got in (a few more may slip in whenever the consumer gets a turn)
        assert out[:CAPACITY] == list(range(CAPACITY))
    else:
        assert out[-1] == N - 1  # the newest item is always kept


@pytest.mark.timeout(30)
def test_failing_buffer_names_itself_on_every_engine(engine: Engine) -> None:
    # FAIL stops the source, so the gate cannot open on its end: it opens after a moment
    # (the overflow takes microseconds); the failure then reaches the terminal.
    flow, _ = _gated(Overflow.FAIL, patience=0.3)
    with pytest.raises(MissingBackpressureError, match=r"stage 'buffer'.*full") as info:
        flow.to_list(engine=engine)
    assert "rxpipe: raised in stage 'buffer'" in info.value.__notes__


@pytest.mark.timeout(30)
def test_backpressure_buffer_loses_nothing(engine: Engine) -> None:
    async def identity(x: int) -> int:
        await asyncio.sleep(0)
        return x

    flow = Flow.range(N).buffer(CAPACITY).map_async(identity)
    report = flow.run(engine=engine)
    assert report.delivered == N
    assert report.stages["buffer"].dropped == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("overflow", list(Overflow))
def test_sync_pull_run_has_no_concurrent_downstream_so_nothing_overflows(
    overflow: Overflow,
) -> None:
    """Documented: with no async stage, downstream works on the caller's thread, in turn."""
    flow = Flow.range(N).buffer(CAPACITY, overflow=overflow).map(lambda x: x + 1)
    report = flow.run(engine=PullEngine())
    assert report.delivered == N
    assert report.stages["buffer"].dropped == 0


@pytest.mark.timeout(30)
def test_dropping_buffer_is_counted_from_an_async_terminal(engine: Engine) -> None:
    flow, _ = _gated(Overflow.DROP_NEWEST)

    async def main() -> tuple[int, int]:
        run = engine.open(flow.plan)
        n = 0
        async for _ in run:
            n += 1
        return n, run.report().stages["buffer"].dropped

    delivered, dropped = asyncio.run(main())
    assert delivered + dropped == N
    assert dropped > 0


def _three_then_boom() -> Iterator[int]:
    yield from (1, 2, 3)
    raise ValueError("boom")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("tail", ["sync", "async"])
def test_items_read_before_an_upstream_failure_go_out_before_it(engine: Engine, tail: str) -> None:
    """Regression: a sync pull run's buffer dropped what it had read when upstream raised,
    and the generic path blamed the buffer for the source's error."""

    async def same(x: int) -> int:
        return x

    flow = Flow.from_iterable(_three_then_boom()).buffer(8)
    flow = flow.map(lambda x: x) if tail == "sync" else flow.map_async(same)
    got: list[int] = []
    with pytest.raises(ValueError, match="boom") as info:
        got.extend(engine.open(flow.plan))
    assert got == [1, 2, 3]
    assert info.value.__notes__ == ["rxpipe: raised in stage 'from_iterable'"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("overflow", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST, Overflow.FAIL])
@pytest.mark.parametrize("fuse", [True, False])
def test_pull_buffer_drops_nothing_while_its_consumer_keeps_up(
    overflow: Overflow, fuse: bool
) -> None:
    """Regression (review): an async pull run dropped half the items of a consumer that was
    not busy at all, because the producer filled the buffer without giving it a turn."""
    flow = Flow.range(1000).buffer(1, overflow=overflow).map(lambda x: x + 1)
    run = PullEngine(fuse=fuse).open(flow.plan)

    async def main() -> list[int]:
        return [x async for x in run]

    assert asyncio.run(main()) == list(range(1, 1001))
    assert run.report().stages["buffer"].dropped == 0


def test_overflow_buffer_needs_a_channel_with_room() -> None:
    flow = Flow.range(10).buffer(4, overflow=Overflow.DROP_OLDEST, name="buf")
    with pytest.raises(ValueError, match="needs room"):
        flow.to_list(engine=PushEngine(buffer={"buf": 0, "*": 1}))
