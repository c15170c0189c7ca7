"""Sources: where a flow's items come from."""

from __future__ import annotations

import asyncio

import pytest

from rxpipe import Flow
from tests.helpers import slow_identity as _slow_identity


class _BothProtocols:
    """An async iterator that also has ``__next__`` (some cursors do): only async works."""

    def __init__(self, n: int) -> None:
        self.i, self.n = 0, n

    def __iter__(self) -> _BothProtocols:
        return self

    def __next__(self) -> int:
        raise RuntimeError("use async for")

    def __aiter__(self) -> _BothProtocols:
        return self

    async def __anext__(self) -> int:
        await asyncio.sleep(0)
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i


@pytest.mark.parametrize("tail", ["map_async", "map", "none"])
def test_an_async_source_that_is_also_an_iterator_is_read_async(tail: str) -> None:
    flow = Flow.from_async_iterable(_BothProtocols(5))
    if tail == "map_async":
        flow = flow.map_async(_slow_identity)
    elif tail == "map":
        flow = flow.map(lambda x: x)
    assert asyncio.run(flow.to_list_async()) == [1, 2, 3, 4, 5]
