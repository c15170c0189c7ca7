"""rxpipe.stage() fragments: reusable chains, spliced by via(), run as processors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rxpipe import Flow, Fragment, PullEngine, stage
from rxpipe.engines import Engine, Plan
from rxpipe.stages.errors import Node
from rxpipe.stages.sources import IterableSource
from rxpipe.testing import verify_processor

double_odds = stage().filter(lambda x: x % 2 == 1).map(lambda x: x * 2, name="double")


def test_fragment_is_reusable_and_immutable(engine: Engine) -> None:
    assert isinstance(double_odds, Fragment)
    a = Flow.range(6).via(double_odds)
    b = Flow.of(7, 8).via(double_odds).map(str)
    assert a.to_list(engine=engine) == [2, 6, 10]
    assert b.to_list(engine=engine) == ["14"]
    assert double_odds.nodes[0].name == "filter"  # unchanged by use


def test_via_fragment_splices_named_stages_into_the_report(engine: Engine) -> None:
    flow = Flow.range(6).filter(bool).via(double_odds)
    assert flow.stage_names == ("range", "filter", "filter#2", "double")
    report = flow.run(engine=engine)
    assert report.stages["double"].emitted == 3


def test_via_fragment_with_a_name_prefixes_its_stages() -> None:
    flow = Flow.range(3).via(double_odds, name="odd")
    assert flow.stage_names == ("range", "odd/filter", "odd/double")


def test_fragment_operators_validate_when_built() -> None:
    with pytest.raises(ValueError, match="take"):
        stage().take(-1)
    with pytest.raises(TypeError, match="callable"):
        stage().map(42)


def test_fragment_cannot_run_on_its_own() -> None:
    with pytest.raises(ValueError, match="empty fragment"):
        stage().to_processor()


@pytest.mark.parametrize("fuse", [True, False])
def test_fragment_as_one_stage_runs_its_own_interpreter(fuse: bool) -> None:
    frag = stage().flat_map(lambda x: [x, x]).chunk(3).map(sum)
    plan = Plan(IterableSource(range(5)), "range", (Node("frag", frag),))
    run = PullEngine(fuse=fuse).open(plan)
    assert list(run) == [0 + 0 + 1, 1 + 2 + 2, 3 + 3 + 4, 4]


PROCESSORS: dict[str, Callable[[], Any]] = {
    "map": lambda: stage().map(lambda x: x).to_processor(),
    "map-buffer": lambda: stage().map(lambda x: x).buffer(3).to_processor(prefetch=4),
    "flat_map-take_while": lambda: (
        stage().flat_map(lambda x: [x]).take_while(lambda x: True).to_processor(prefetch=1)
    ),
    "filter-skip0": lambda: stage().filter(lambda x: True).skip(0).to_processor(prefetch=64),
}


@pytest.mark.parametrize("shape", sorted(PROCESSORS))
@pytest.mark.timeout(120)
def test_processor_passes_the_kit(shape: str) -> None:
    verify_processor(PROCESSORS[shape], rxpipe_extensions=True)


def test_processor_between_two_flows() -> None:
    proc = stage().map(lambda x: x + 1).filter(lambda x: x % 3 != 0).to_processor(prefetch=5)
    Flow.range(20).to_publisher().subscribe(proc)
    assert Flow.from_publisher(proc, prefetch=3).to_list() == [
        x + 1 for x in range(20) if (x + 1) % 3 != 0
    ]


def test_processor_passes_stage_errors_downstream() -> None:
    proc = stage().map(lambda x: 10 // (x - 3), name="divide").to_processor()
    Flow.range(10).to_publisher().subscribe(proc)
    with pytest.raises(ZeroDivisionError) as info:
        Flow.from_publisher(proc).to_list()
    assert "rxpipe: raised in stage 'divide'" in info.value.__notes__


def _flaky(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(x)
    return x


async def _aflaky(x: int) -> int:
    return _flaky(x)


def test_via_fragment_errors_skip_reaches_its_user_functions(engine: Engine) -> None:
    """Regression: via(fragment, errors=...) was accepted and ignored; the error ended the run."""
    frag = stage().map(_flaky).map(lambda x: x * 10, name="times10")
    flow = Flow.range(7).via(frag, errors="skip")
    run = engine.open(flow.plan)
    assert list(run) == [10, 20, 40, 50]
    rep = run.report()
    assert rep.stages["map"].errored == 3
    assert rep.stages["times10"].errored == 0


def test_via_fragment_errors_applies_to_map_async_and_keeps_explicit_surfaces(
    engine: Engine,
) -> None:
    seen: list[tuple[str, object]] = []
    frag = (
        stage()
        .map_async(_aflaky, name="fetch")
        .map(lambda x: 100 // (x - 4), name="divide", errors="result")
    )
    flow = Flow.range(6).via(frag, errors=lambda exc, item: seen.append(("cb", item)))
    out = flow.to_list(engine=engine)
    assert [r.ok for r in out] == [True, True, False, True]  # 1, 2, 4 (fails), 5
    assert seen == [("cb", 0), ("cb", 3)]  # the callback got fetch's errors only


def test_via_fragment_errors_result_on_one_user_function(engine: Engine) -> None:
    frag = stage().map(_flaky).take(4)
    out = Flow.range(10).via(frag, errors="result").to_list(engine=engine)
    assert [r.ok for r in out] == [False, True, True, False]


def test_via_fragment_restart_applies_to_its_stateful_stages(engine: Engine) -> None:
    def add(acc: int, x: int) -> int:
        if x == 3:
            raise ValueError(x)
        return acc + x

    frag = stage().map(lambda x: x).scan(add, 0)
    out = Flow.range(6).via(frag, restart=True).to_list(engine=engine)
    assert out == [0, 0, 1, 3, 0, 4, 9]  # fresh state after the error at 3


def test_via_fragment_refuses_errors_and_restart_that_cannot_apply() -> None:
    with pytest.raises(ValueError, match="no stage of the fragment runs a user function"):
        Flow.range(3).via(stage().take(2), errors="skip")
    with pytest.raises(ValueError, match="would feed Result values"):
        Flow.range(3).via(stage().map(_flaky).filter(bool), errors="result")
    with pytest.raises(ValueError, match="no stage of the fragment is stateful"):
        Flow.range(3).via(stage().map(_flaky), restart=True)
    with pytest.raises(TypeError):
        Flow.range(3).via(stage().map(_flaky), restart="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Flow.range(3).via(stage().map(_flaky), errors=42)  # type: ignore[arg-type]
