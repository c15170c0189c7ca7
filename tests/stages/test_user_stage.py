"""A user-written stage runs like a built-in one, on every engine, with every error surface."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from rxpipe import Flow, LinearLogic, LinearStage, PullEngine
from rxpipe.engines import Engine
from rxpipe.stages import Ports


class _RunLengthLogic(LinearLogic[Any, tuple[Any, int]]):
    """Collapse runs of equal items into (item, count); flush the last run at the end."""

    __slots__ = ("count", "current")

    def __init__(self, ports: Ports[Any, tuple[Any, int]]) -> None:
        super().__init__(ports)
        self.current: Any = None
        self.count = 0

    def on_item(self, item: Any) -> Iterable[tuple[Any, int]]:
        if self.count and item == self.current:
            self.count += 1
            return ()
        out = [(self.current, self.count)] if self.count else []
        self.current, self.count = item, 1
        return out

    def on_finish(self) -> Iterable[tuple[Any, int]]:
        return [(self.current, self.count)] if self.count else []

    def held_items(self) -> int:
        return self.count


@dataclass(frozen=True)
class RunLength(LinearStage[Any, tuple[Any, int]]):
    operator = "run_length"
    stateful = True

    def create_logic(self, ports: Ports[Any, tuple[Any, int]]) -> _RunLengthLogic:
        return _RunLengthLogic(ports)


@pytest.fixture(params=["fused", "generic"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return PullEngine(fuse=request.param == "fused")


def test_user_stage_flushes_at_end(engine: Engine) -> None:
    flow = Flow.of("a", "a", "b", None, None, "a").via(RunLength())
    assert flow.to_list(engine=engine) == [("a", 2), ("b", 1), (None, 2), ("a", 1)]


def test_user_stage_is_named_and_counted(engine: Engine) -> None:
    report = Flow.of(1, 1, 2).via(RunLength()).map(str).run(engine=engine)
    assert list(report.stages) == ["of", "run_length", "map"]
    assert report.stages["run_length"].received == 3
    assert report.stages["run_length"].emitted == 2


def test_user_stage_cancelled_mid_run_counts_held_items_as_lost(engine: Engine) -> None:
    run = engine.open(Flow.of(1, 1, 2, 2, 2, 3).via(RunLength()).plan)
    it = iter(run)
    assert next(it) == (1, 2)
    run.close()
    assert run.report().stages["run_length"].lost == 1  # holds the first 2 of the run of 2s


def test_user_stage_with_restart_supervision(engine: Engine) -> None:
    class Fragile(_RunLengthLogic):
        def on_item(self, item: Any) -> Iterable[tuple[Any, int]]:
            if item == "boom":
                raise ValueError(item)
            return super().on_item(item)

    @dataclass(frozen=True)
    class FragileRunLength(RunLength):
        def create_logic(self, ports: Ports[Any, tuple[Any, int]]) -> _RunLengthLogic:
            return Fragile(ports)

    flow = Flow.of("a", "a", "boom", "a", "b").via(FragileRunLength(), restart=True)
    # the restart drops the state (the pending run of two "a"s) and continues fresh
    assert flow.to_list(engine=engine) == [("a", 1), ("b", 1)]
