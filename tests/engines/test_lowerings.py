"""Every declared lowering does exactly what the generic path does, on random inputs.

For each lowering of :mod:`rxpipe.engines.lowerings`, random flows over the stage types it
lowers run twice on its engine: as the engine picks (the lowering) and under
``generic_only(lowering)`` (the kernel's interpreter). Outputs, the error (its type, message
and the stage it names) and, for runs that end normally, every counter of the Report agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxpipe import Flow, PullEngine, PushEngine
from rxpipe.engines import Engine
from rxpipe.engines.lowerings import (
    CHANNEL_BATCHES,
    FUSED_LOOP,
    ITERATOR_SOURCE,
    LOWERINGS,
    Lowering,
    generic_only,
)
from rxpipe.stages.simple import Filter, FlatMap, Map, Skip, Take, TakeWhile


class Boom(Exception):
    pass


def _fails_at(k: int) -> Callable[[int], int]:
    def f(x: int) -> int:
        if x == k:
            raise Boom(f"at {k}")
        return x + 1

    return f


def _double(x: int) -> int:
    return 2 * x


def _even(x: int) -> bool:
    return x % 2 == 0


def _positive(x: int) -> bool:
    return x > 0


def _pair(x: int) -> list[int]:
    return [x, -x]


MAPS = st.one_of(st.sampled_from([_double, abs]), st.integers(-5, 30).map(_fails_at))
PREDS = st.sampled_from([_even, _positive, bool])

#: (name, strategy of its argument, how it is applied), per stage type a lowering names.
OPERATORS: dict[type[Any], Any] = {
    Map: st.tuples(st.just("map"), MAPS),
    Filter: st.tuples(st.just("filter"), PREDS),
    FlatMap: st.tuples(st.just("flat_map"), st.just(_pair)),
    Take: st.tuples(st.just("take"), st.integers(0, 25)),
    Skip: st.tuples(st.just("skip"), st.integers(0, 8)),
    TakeWhile: st.tuples(st.just("take_while"), st.integers(-3, 30).map(lambda k: lambda x: x < k)),
}


def _gen(items: list[int], fail_after: int | None) -> Iterator[int]:
    for i, x in enumerate(items):
        if fail_after is not None and i == fail_after:
            raise Boom(f"source failed after {i}")
        yield x


SOURCES = st.tuples(
    st.sampled_from(["range", "list", "generator"]),
    st.lists(st.integers(-10, 30), max_size=40),
    st.one_of(st.none(), st.integers(0, 30)),
)


def _build(source: tuple[str, list[int], int | None], ops: list[tuple[str, Any]]) -> Flow[Any]:
    kind, items, fail_after = source
    if kind == "range":
        flow: Flow[Any] = Flow.range(len(items))
    elif kind == "list":
        flow = Flow.from_iterable(items)
    else:
        flow = Flow.from_iterable(_gen(items, fail_after))
    for name, arg in ops:
        flow = getattr(flow, name)(arg)
    return flow


def _outcome(flow: Flow[Any], engine: Engine) -> tuple[Any, ...]:
    """Items up to the end or the error, the error, and the counters (normal ends only)."""
    items: list[Any] = []
    error: tuple[Any, ...] | None = None

    run = engine.open(flow.plan)
    try:
        for item in run:
            items.append(item)
    except Boom as exc:
        error = (str(exc), tuple(getattr(exc, "__notes__", ())))
    finally:
        run.close()
    report = run.report()
    counters = (
        None
        if error is not None
        else [
            (s.received, s.emitted, s.filtered, s.errored, s.lost) for s in report.stages.values()
        ]
    )
    return items, error, counters, report.delivered if error is None else None


ENGINES: dict[str, tuple[Callable[[], Engine], ...]] = {
    "pull": (PullEngine,),
    "push": (lambda: PushEngine(buffer=2), lambda: PushEngine(buffer=2, runtime="threads")),
    "push/asyncio": (lambda: PushEngine(buffer=2),),
}


def test_every_lowering_is_declared_for_a_known_engine() -> None:
    assert {lowering.engine for lowering in LOWERINGS} <= set(ENGINES)
    assert len({lowering.name for lowering in LOWERINGS}) == len(LOWERINGS)


def test_the_fused_loop_knows_every_stage_type_it_is_declared_for() -> None:
    from rxpipe.engines.pull.fused import FUSIBLE

    assert set(FUSIBLE) == set(FUSED_LOOP.stages)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lowering", LOWERINGS, ids=lambda lowering: lowering.name)
@given(data=st.data())
def test_a_lowering_agrees_with_the_generic_path(lowering: Lowering, data: st.DataObject) -> None:
    types = lowering.stages or (Map, Filter)  # a source lowering: any stages after it
    ops = data.draw(st.lists(st.sampled_from(types).flatmap(lambda t: OPERATORS[t]), max_size=5))
    source = data.draw(SOURCES)
    for make_engine in ENGINES[lowering.engine]:
        engine = make_engine()
        lowered = _outcome(_build(source, ops), engine)
        with generic_only(lowering):
            generic = _outcome(_build(source, ops), engine)
        assert lowered == generic, engine


def test_generic_only_turns_a_lowering_off_and_back_on() -> None:
    from rxpipe.stages.errors import Node

    node = Node("map", Map(_double))
    assert CHANNEL_BATCHES.applies(node)
    with generic_only(CHANNEL_BATCHES):
        assert not CHANNEL_BATCHES.applies(node)
        assert FUSED_LOOP.applies(node)
        with generic_only():
            assert not FUSED_LOOP.applies(node)
        assert FUSED_LOOP.applies(node)
    assert CHANNEL_BATCHES.applies(node)
    assert not ITERATOR_SOURCE.applies(node)  # a source lowering lowers no stage


def test_a_supervised_stage_is_never_lowered() -> None:
    from rxpipe.stages.errors import Node

    node = Node("map", Map(_double), errors="skip")
    assert not any(lowering.applies(node) for lowering in LOWERINGS)


def test_what_a_flat_map_holds_after_its_upstream_ended_is_counted_on_both_paths() -> None:
    """Found by the property above: when upstream ended, the generic path's flat_map kept its
    rest in an ``itertools.chain``, whose length hint is 0, so the item it still held when a
    later take ended the run was not counted lost (the fused loop counted it)."""
    flow = Flow.range(3).take(1).flat_map(_pair).take(1)
    fused = _outcome(flow, PullEngine())
    with generic_only():
        generic = _outcome(flow, PullEngine())
    assert fused == generic
    assert fused[2] is not None
    assert fused[2][2] == (1, 1, 0, 0, 1)  # flat_map: 1 held, lost
