"""Engines every flow test runs on: pull (fused and generic) and push (asyncio and threads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rxpipe import Flow, PullEngine
from rxpipe.engines.base import Engine

ENGINES: dict[str, Callable[[], Engine]] = {
    "pull": lambda: PullEngine(),
    "pull-generic": lambda: PullEngine(fuse=False),
}
try:
    from rxpipe.engines.push.engine import PushEngine
except ImportError:  # pragma: no cover - the push engine is being built
    pass
else:
    ENGINES["push-asyncio"] = lambda: PushEngine(runtime="asyncio")
    ENGINES["push-threads"] = lambda: PushEngine(runtime="threads")
    ENGINES["push-rendezvous"] = lambda: PushEngine(buffer=0, runtime="asyncio")


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Engine:
    """A fresh engine of each kind: every flow test runs on each."""
    return ENGINES[request.param]()


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
