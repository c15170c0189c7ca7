"""run_or_start: a read runs to its first suspension in the caller; only a read that waits
costs a task, which goes on with the same coroutine (and takes a cancellation into it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rxpipe._core.work import run_or_start


async def _ready(x: int) -> int:
    return x


def test_a_read_that_does_not_wait_costs_no_task() -> None:
    async def main() -> None:
        got, task = run_or_start(_ready(7))
        assert (got, task) == (7, None)
        assert len(asyncio.all_tasks()) == 1

    asyncio.run(main())


def test_a_read_that_waits_goes_on_in_a_task() -> None:
    async def main() -> None:
        gate = asyncio.get_running_loop().create_future()

        async def waits() -> str:
            value = await gate
            await asyncio.sleep(0)
            return f"got {value}"

        got, task = run_or_start(waits())
        assert got is None
        assert task is not None
        assert not task.done()
        gate.set_result("it")
        assert await task == "got it"

    asyncio.run(main())


@pytest.mark.parametrize("started", [False, True])
def test_a_cancellation_reaches_the_coroutine_even_before_the_task_started(
    started: bool,
) -> None:
    """Cancelled before its first step, an ``async def`` wrapper never ran, and left the
    async generator it was reading suspended: its ``aclose()`` said "already running"."""
    closed: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            await asyncio.Event().wait()  # never set
            yield 1
        finally:
            closed.append("source")

    async def main() -> None:
        items = source()
        _, task = run_or_start(anext(items))
        assert task is not None
        if started:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await items.aclose()

    asyncio.run(main())
    assert closed == ["source"]
