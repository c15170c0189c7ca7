"""Async functions where sync ones belong, and the reverse, are refused when the flow is built.

Regression: ``foreach(async_fn)`` and ``foreach_async(async_fn)`` lost every item (the
coroutines were never awaited; only a RuntimeWarning said so, and the Report claimed the items
were delivered).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest

from rxpipe import Flow, stage
from rxpipe.engines import Engine


async def store(x: int) -> None:
    await asyncio.sleep(0)


def double(x: int) -> int:
    return 2 * x


class AsyncCall:
    async def __call__(self, x: int) -> int:
        return x


BUILD_SYNC_WITH_ASYNC: dict[str, Callable[[Any], object]] = {
    "map": lambda f: Flow.range(3).map(f),
    "filter": lambda f: Flow.range(3).filter(f),
    "flat_map": lambda f: Flow.range(3).flat_map(f),
    "take_while": lambda f: Flow.range(3).take_while(f),
    "scan": lambda f: Flow.range(3).scan(f, 0),
    "partition key": lambda f: Flow.range(3).partition(f, 2, stage().map(double)),
    "fragment map": lambda f: stage().map(f),
    "foreach": lambda f: Flow.range(3).foreach(f),
    "fold": lambda f: Flow.range(3).fold(f, 0),
}


@pytest.mark.parametrize("where", sorted(BUILD_SYNC_WITH_ASYNC))
@pytest.mark.parametrize(
    "fn",
    [store, functools.partial(store), AsyncCall()],
    ids=["async-def", "partial", "async-call-object"],
)
def test_sync_stage_or_terminal_refuses_an_async_function(where: str, fn: object) -> None:
    with pytest.raises(TypeError, match="async function"):
        BUILD_SYNC_WITH_ASYNC[where](fn)


def test_refusals_point_at_the_async_twin() -> None:
    with pytest.raises(TypeError, match=r"map_async\(f\)"):
        Flow.range(3).map(store)
    with pytest.raises(TypeError, match=r"foreach_async\(f\)"):
        Flow.range(3).foreach(store)


@pytest.mark.parametrize("fn", [double, str, functools.partial(double)], ids=repr)
def test_map_async_refuses_a_plain_function_and_points_at_map(fn: object) -> None:
    with pytest.raises(TypeError, match=r"async function.*use map\(f\)"):
        Flow.range(3).map_async(fn)  # type: ignore[arg-type]


def test_map_async_accepts_a_lambda_that_returns_an_awaitable(engine: Engine) -> None:
    flow = Flow.range(3).map_async(lambda x: asyncio.sleep(0, x * 3))
    assert flow.to_list(engine=engine) == [0, 3, 6]
    assert Flow.range(2).map_async(AsyncCall()).to_list(engine=engine) == [0, 1]


def test_map_async_lambda_returning_a_plain_value_fails_clearly(engine: Engine) -> None:
    with pytest.raises(TypeError, match=r"not an awaitable: use map\(f\)") as info:
        Flow.range(3).map_async(lambda x: x).to_list(engine=engine)
    assert "rxpipe: raised in stage 'map_async'" in info.value.__notes__


def test_foreach_refuses_an_awaitable_returned_by_a_lambda(engine: Engine) -> None:
    with pytest.raises(TypeError, match="nothing would await"):
        Flow.range(3).foreach(lambda x: store(x), engine=engine)


@pytest.mark.parametrize("sink", ["async-def", "lambda", "sync"])
def test_foreach_async_awaits_each_item_on_every_engine(engine: Engine, sink: str) -> None:
    seen: list[int] = []

    async def record(x: int) -> None:
        await asyncio.sleep(0)
        seen.append(x)

    f: Callable[[int], object] = {
        "async-def": record,
        "lambda": lambda x: record(x),
        "sync": seen.append,
    }[sink]
    report = asyncio.run(Flow.range(5).foreach_async(f, engine=engine))
    assert seen == [0, 1, 2, 3, 4]
    assert report.delivered == 5


def test_foreach_async_error_from_the_sink_reaches_the_caller(engine: Engine) -> None:
    async def broken(x: int) -> None:
        if x == 2:
            raise KeyError(x)

    with pytest.raises(KeyError):
        asyncio.run(Flow.range(5).foreach_async(broken, engine=engine))
