"""The pull engine's drivers: async runs, sync iteration of async flows, stopping a run."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from rxpipe import Flow, Overflow, PullEngine
from rxpipe.engines import Engine
from tests.helpers import after_turns as _after_turns
from tests.helpers import slow_identity as _slow_identity


def test_async_run_gives_the_loop_turns_through_a_filtering_prefix() -> None:
    """A filter reading without end must not hold the loop (the inline read skipped it)."""

    async def main(with_map_async: bool) -> int:
        turns = 0

        async def heartbeat() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        flow = Flow.range(200_000).filter(lambda x: x == -1)
        if with_map_async:
            flow = flow.map_async(_slow_identity)
        beat = asyncio.create_task(heartbeat())
        try:
            assert await flow.to_list_async() == []
        finally:
            beat.cancel()
        return turns

    assert asyncio.run(main(True)) > 100
    assert asyncio.run(main(False)) > 100


def test_an_endless_filtered_source_can_be_cancelled() -> None:
    closed: list[bool] = []

    def endless() -> Any:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    async def main() -> None:
        flow = Flow.from_iterable(endless()).filter(lambda x: x < 0).map_async(_slow_identity)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flow.to_list_async(), 0.1)

    asyncio.run(main())
    assert closed == [True]


def test_async_segments_on_both_sides_of_a_fused_one(engine: Engine) -> None:
    """The pull engine read its input twice at once ("anext(): ... already running")."""

    async def same_after_turns(x: int) -> int:
        return await _after_turns(x) // 2

    flow = Flow.range(50).map_async(same_after_turns, concurrency=2).map(lambda x: x + 1)
    flow = flow.map_async(same_after_turns, concurrency=3)
    assert flow.to_list(engine=engine) == [x + 1 for x in range(50)]


def test_input_that_arrives_while_the_consumer_holds_an_item_is_not_missed() -> None:
    """Sync iteration of an async flow: the input read beside running work finished while the
    driver sat at a yield (no waiter to wake), and the driver then waited forever."""

    def after_turns(f: Any) -> Any:
        async def call(x: int) -> int:
            for _ in range(x % 4):
                await asyncio.sleep(0)
            return int(f(x))

        return call

    items = [16, 10, 1, 4, 2, -4]
    flow = (
        Flow.from_iterable(items)
        .flat_map(lambda x: range(x % 3))
        .map_async(after_turns(lambda x: -x), concurrency=5)
        .flat_map(lambda x: [x, x])
        .map_async(after_turns(lambda x: x - 3), concurrency=3, ordered=False)
    )
    want = [-y - 3 for x in items for y in range(x % 3) for _ in range(2)]
    assert sorted(flow) == sorted(want)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("overflow", [Overflow.BACKPRESSURE, Overflow.DROP_OLDEST])
def test_breaking_out_of_async_for_then_running_again_reports_no_task_error(
    overflow: Overflow,
) -> None:
    """Regression (new-user trial): the collector finalized a pull run's chain while the run's
    own iterator closed it too: "Task exception was never retrieved ... aclose():
    asynchronous generator is already running"."""

    async def slow(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    problems: list[dict[str, Any]] = []

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
        flow = Flow.range(10**6).map_async(slow, concurrency=4).buffer(8, overflow=overflow)
        async for x in flow:
            if x == 4:
                break
        first: int = await flow.first_async()
        await asyncio.sleep(0.05)  # the finalizer's tasks run meanwhile
        return first

    assert asyncio.run(main()) == 0
    assert problems == []


async def _double_async(x: int) -> int:
    return x * 2


def test_an_item_handed_over_while_an_async_segment_stops_is_received_and_lost() -> None:
    """The segment's input task took the second item from upstream just as the take_while
    downstream ended the run: it must be counted (received and lost), not vanish between
    an upstream that emitted it and a stage that never saw it (found by the soak profile)."""
    flow = (
        Flow.from_iterable([0, 0])
        .map_async(_double_async, concurrency=1)
        .map(lambda x: x * 2)
        .map_async(_double_async, concurrency=2)
        .buffer(1)
        .take_while(lambda x: x < 0)
    )
    report = flow.run(engine=PullEngine())
    stages = list(report.stages.values())
    for up, down in itertools.pairwise(stages):
        assert up.emitted == down.received, (up, down)
    accounted = report.delivered + sum(s.filtered + s.errored + s.dropped + s.lost for s in stages)
    assert stages[0].emitted == accounted == 2
