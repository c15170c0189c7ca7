"""The drivers that run the kernel's step machine: they hand back what they were told, promptly,
on every engine (pull's async segments, push on asyncio and on threads)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rxpipe import Flow, Overflow
from rxpipe.engines import Engine
from rxpipe.engines.push.channel import BrokenChannelError, ClosedChannelError


@pytest.mark.timeout(30)
def test_work_that_fails_as_it_starts_fails_the_run_without_waiting_for_more_input(
    engine: Engine,
) -> None:
    """The failure was queued as ended work while nothing ran: a driver that then waited for
    the next input (from a queue that stays open) hung."""
    flow, handle = Flow.queue(8, Overflow.DROP_NEWEST)
    handle.offer(1)
    with pytest.raises(TypeError, match="map_async"):
        flow.map_async(lambda x: x, concurrency=2).to_list(engine=engine)


def _raise_closed_at_3(x: int) -> int:
    if x == 3:
        raise ClosedChannelError("an inner run was closed")
    return x


@pytest.mark.timeout(30)
def test_a_stage_that_raises_a_channel_error_fails_the_run_with_it(engine: Engine) -> None:
    """A channel error carried from upstream is upstream's failure, not the run stopping:
    taken for the latter, the stage after it left without ending its output (a hang)."""
    flow = Flow.range(10).map(_raise_closed_at_3).scan(lambda acc, x: x, 0)
    with pytest.raises(ClosedChannelError, match="inner run") as caught:
        flow.to_list(engine=engine)
    assert "rxpipe: raised in stage 'map'" in caught.value.__notes__


async def _broken_after_two() -> AsyncIterator[int]:
    yield 1
    yield 2
    raise BrokenChannelError("an inner run is gone")


@pytest.mark.timeout(30)
def test_a_source_that_raises_a_channel_error_fails_the_run_with_it(engine: Engine) -> None:
    flow = Flow.from_async_iterable(_broken_after_two()).map(lambda x: x)
    with pytest.raises(BrokenChannelError, match="inner run"):
        flow.to_list(engine=engine)
