"""Helpers shared by test modules: how far an engine reads ahead, and small async callables.

The ``engine`` fixture (every engine) comes from rxpipe's pytest plugin, not from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rxpipe import Flow
from rxpipe.engines import Engine


def read_ahead(engine: Engine, flow: Flow[Any]) -> int:
    """How many items beyond demand an engine may pull from a source.

    The pull engine pulls exactly what is asked for; a push engine runs ahead by at most its
    in-flight bound, ``sum(buffers) + stages``.
    """
    bound: Callable[[Any], int] | None = getattr(engine, "in_flight_bound", None)
    return 0 if bound is None else bound(flow.plan)


def assert_pulled(engine: Engine, flow: Flow[Any], pulled: int, exact: int) -> None:
    """The source was pulled ``exact`` times on the pull engine, at most the bound more on push."""
    if read_ahead(engine, flow) == 0:
        assert pulled == exact
    else:
        assert exact <= pulled <= exact + read_ahead(engine, flow)


class Abort(BaseException):
    """Not an ``Exception``: what ``SystemExit`` or a user's own BaseException looks like."""


async def slow_identity(x: int) -> int:
    await asyncio.sleep(0.002)
    return x


async def after_turns(x: int) -> int:
    """Finishes after ``x % 4`` loop turns: calls end out of order."""
    for _ in range(x % 4):
        await asyncio.sleep(0)
    return x * 2


async def turns(x: int, n: int) -> int:
    for _ in range(n):
        await asyncio.sleep(0)
    return x
