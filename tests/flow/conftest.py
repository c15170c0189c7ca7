"""Engines every flow test runs on (until the testing plugin's fixture covers them all)."""

from __future__ import annotations

import pytest

from rxpipe import PullEngine
from rxpipe.engines.base import Engine

ENGINES = {
    "pull": lambda: PullEngine(),
    "pull-generic": lambda: PullEngine(fuse=False),
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Engine:
    """A fresh engine of each kind: every flow test runs on each."""
    return ENGINES[request.param]()
