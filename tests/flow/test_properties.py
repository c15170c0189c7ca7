"""Random chains of operators give exactly the plain-Python result, on every engine."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxpipe import Flow, stage
from rxpipe.engines import Engine

from .reference import apply

MAPS = [lambda x: x * 2, lambda x: x - 3, lambda x: x // 2, lambda x: -x]
PREDS = [lambda x: x % 2 == 0, lambda x: x > 0, lambda x: x % 3 != 0]
FLATS = [lambda x: [x, x], lambda x: range(x % 3), lambda x: ()]


async def _shuffled(f: Any, x: int) -> Any:
    """``f(x)``, finishing after a few loop turns that depend on ``x``: calls end out of order."""
    for _ in range(x % 4):
        await asyncio.sleep(0)
    return f(x)


def _map_async(flow: Flow[Any], f: Any, k: int) -> Flow[Any]:
    return flow.map_async(lambda x: _shuffled(f, x), concurrency=k)


def _parallel(flow: Flow[Any], f: Any, n: int) -> Flow[Any]:
    return flow.parallel(n, stage().map(f), ordered=True)


int_ops = st.one_of(
    st.tuples(st.just("map_async"), st.tuples(st.sampled_from(MAPS), st.integers(1, 5))),
    st.tuples(st.just("parallel"), st.tuples(st.sampled_from(MAPS), st.integers(1, 3))),
    st.tuples(st.just("map"), st.sampled_from(MAPS)),
    st.tuples(st.just("filter"), st.sampled_from(PREDS)),
    st.tuples(st.just("flat_map"), st.sampled_from(FLATS)),
    st.tuples(st.just("take"), st.integers(0, 12)),
    st.tuples(st.just("skip"), st.integers(0, 6)),
    st.tuples(st.just("take_while"), st.integers(-5, 20).map(lambda k: lambda x: x < k)),
    st.tuples(st.just("scan"), st.just((operator.add, 0))),
    st.tuples(st.just("buffer"), st.integers(1, 5)),
)
chains = st.tuples(
    st.lists(st.integers(-20, 20), max_size=30),
    st.lists(int_ops, max_size=6),
    st.one_of(st.none(), st.integers(1, 4)),
)


def build(items: list[int], ops: list[tuple[str, Any]], chunk: int | None) -> Flow[Any]:
    flow: Flow[Any] = Flow.from_iterable(items)
    for op, arg in ops:
        if op == "scan":
            flow = flow.scan(arg[0], arg[1])
        elif op == "map_async":
            flow = _map_async(flow, *arg)
        elif op == "parallel":
            flow = _parallel(flow, *arg)
        else:
            flow = getattr(flow, op)(arg)
    if chunk is not None:
        flow = flow.chunk(chunk)
    return flow


def expected(items: list[int], ops: list[tuple[str, Any]], chunk: int | None) -> list[Any]:
    return apply([*ops, *([("chunk", chunk)] if chunk else [])], items)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains)
def test_random_chain_matches_plain_python(engine: Engine, chain: Any) -> None:
    items, ops, chunk = chain
    flow = build(items, ops, chunk)
    want = expected(items, ops, chunk)
    assert flow.to_list(engine=engine) == want
    assert list(flow) == want


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25)
@given(chains)
def test_random_chain_async_matches_plain_python(engine: Engine, chain: Any) -> None:
    items, ops, chunk = chain
    flow = build(items, ops, chunk)
    assert asyncio.run(flow.to_list_async(engine=engine)) == expected(items, ops, chunk)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains)
def test_report_accounts_for_every_source_item(engine: Engine, chain: Any) -> None:
    """Source items == delivered + filtered + errored + dropped + lost, for 1-to-<=1 chains."""
    items, ops, _ = chain
    ops = [(op, arg) for op, arg in ops if op not in ("flat_map", "scan")]
    report = build(items, ops, None).run(engine=engine)
    stages = list(report.stages.values())
    source, rest = stages[0], stages[1:]
    assert report.delivered == len(expected(items, ops, None))
    consumed = source.emitted
    accounted = report.delivered + sum(s.filtered + s.errored + s.dropped + s.lost for s in stages)
    assert consumed == accounted
    if getattr(engine, "in_flight_bound", None) is None:
        # demand-pull moves items one by one: nothing is ever in flight between two stages
        for up, down in zip(stages, rest, strict=False):
            assert up.emitted == down.received


unordered_tails = st.one_of(
    st.tuples(st.just("map_async"), st.sampled_from(MAPS), st.integers(1, 5)),
    st.tuples(st.just("parallel"), st.sampled_from(MAPS), st.integers(1, 3)),
    st.tuples(st.just("partition"), st.sampled_from(MAPS), st.integers(1, 3)),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains, unordered_tails)
def test_unordered_fan_out_keeps_every_item_and_per_key_order(
    engine: Engine, chain: Any, tail: tuple[str, Any, int]
) -> None:
    """An unordered map_async, parallel or partition after a random chain: the same items as
    plain Python (as a multiset), and a partition keeps the order within each key."""
    items, ops, _ = chain
    kind, f, n = tail
    flow = build(items, ops, None)
    before = expected(items, ops, None)
    if kind == "map_async":
        flow = flow.map_async(lambda x: _shuffled(f, x), concurrency=n, ordered=False)
    elif kind == "parallel":
        flow = flow.parallel(n, stage().map(f))
    else:
        flow = flow.partition(lambda x: x % 3, n, stage().map(lambda x: (x % 3, f(x))))
    out = flow.to_list(engine=engine)
    if kind == "partition":
        assert sorted(out) == sorted((x % 3, f(x)) for x in before)
        for key in range(3):
            assert [y for k, y in out if k == key] == [f(x) for x in before if x % 3 == key]
    else:
        assert sorted(out) == sorted(f(x) for x in before)
