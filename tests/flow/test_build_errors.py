"""Bad arguments fail when the flow is built, with a clear TypeError/ValueError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rxpipe import Flow, PullEngine
from rxpipe.stages.simple import Map

base = Flow.range(3)


async def _async_id(x: int) -> int:
    return x


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: base.take(-1), ValueError, r"take\(n\): n must be >= 0"),
        (lambda: base.take(1.5), TypeError, r"take\(n\): n must be an int"),
        (lambda: base.take(True), TypeError, "must be an int"),
        (lambda: base.skip(-2), ValueError, "skip"),
        (lambda: base.chunk(0), ValueError, r"chunk\(n\): n must be >= 1"),
        (lambda: base.map(3), TypeError, r"map\(f\): f must be callable"),
        (lambda: base.filter("x"), TypeError, "must be callable"),
        (lambda: base.flat_map(None), TypeError, "must be callable"),
        (lambda: base.take_while(1), TypeError, "must be callable"),
        (lambda: base.scan(2, 0), TypeError, "must be callable"),
        (lambda: base.map(str, errors="ignore"), ValueError, "errors= must be"),
        # a wrong type is a TypeError, an unknown name a ValueError (issue 9, item 13)
        (lambda: base.map(str, errors=42), TypeError, "errors= must be .* got int 42"),
        (lambda: base.filter(bool, errors=None), TypeError, "errors= must be"),
        (lambda: base.flat_map(list, errors=b"skip"), TypeError, "got bytes"),
        (lambda: base.take_while(bool, errors=["skip"]), TypeError, "got list"),
        (lambda: base.scan(max, 0, errors=1.5), TypeError, "got float"),
        (lambda: base.map_async(_async_id, errors=42), TypeError, "errors= must be"),
        (lambda: base.map_async(_async_id, errors="ignore"), ValueError, "errors= must be"),
        (lambda: base.via(Map(str), errors=42), TypeError, "errors= must be"),
        (lambda: base.via(Map(str), errors="Skip"), ValueError, "got 'Skip'"),
        (lambda: base.map(str, name=""), TypeError, "name must be"),
        (lambda: base.map(str, name="range"), ValueError, "already in this flow"),
        (lambda: base.take(1).take(2, name="take"), ValueError, "already in this flow"),
        (lambda: base.map(str).via("nope"), TypeError, "needs a Stage"),
        (lambda: base.scan(max, 0, restart=1), TypeError, "restart must be a bool"),
        (lambda: Flow.from_iterable(5), TypeError, "needs an iterable"),
        (lambda: Flow.from_async_iterable([1]), TypeError, "async iterable"),
        (lambda: Flow.from_publisher(object()), TypeError, "needs a Publisher"),
        (lambda: Flow.range("3"), TypeError, "must be ints"),
        (lambda: Flow.range(0, 5, 0), ValueError, "must not be zero"),
        (lambda: PullEngine(prefetch=0), ValueError, "prefetch"),
        (lambda: base.to_list(engine="warp"), ValueError, "engine must be"),
    ],
)
def test_bad_argument_raises_when_built(
    build: Callable[[], Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build()


def test_default_names_count_per_operator() -> None:
    flow = base.map(str).filter(bool).map(len).map(str, name="show").take(1)
    assert flow.stage_names == ("range", "map", "filter", "map#2", "show", "take")


def test_building_runs_nothing() -> None:
    calls = []
    Flow.range(3).map(calls.append)
    assert calls == []


@pytest.mark.parametrize("errors", ["raise", "result", "skip", lambda exc, item: None, print])
def test_every_documented_errors_argument_is_accepted(errors: Any) -> None:
    base.map(str, errors=errors)
    base.map_async(_async_id, errors=errors)
