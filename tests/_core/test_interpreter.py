"""The interpreter (the kernel): port state, and events delivered in order, on every engine."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

import pytest

from rxpipe import Flow, stage
from rxpipe._core.clock import Timer
from rxpipe._core.interpreter import Interpreter
from rxpipe._core.stats import StageStats
from rxpipe.engines import Engine
from rxpipe.stages import LinearLogic, LinearStage, Ports, StageLogic
from tests.helpers import Abort
from tests.helpers import after_turns as _after_turns
from tests.helpers import turns as _turns


def test_a_stage_is_not_told_upstream_closed_while_its_last_item_is_on_the_way(
    engine: Engine,
) -> None:
    """The interpreter closed the port before delivering the item queued ahead of the end:
    a map_async asked, saw nothing running and upstream closed, and finished without it."""
    flow = (
        Flow.from_iterable([1, 0])
        .map_async(_after_turns)
        .map_async(_after_turns)
        .map_async(_after_turns, concurrency=2)
    )
    assert flow.to_list(engine=engine) == [8, 0]


def test_a_stage_does_not_pull_again_while_an_item_is_queued_for_it(engine: Engine) -> None:
    """The pull was cleared when the push was queued: the stage pulled again and the second
    item overwrote the first, with nothing counted."""
    d1 = {2: 4, 14: 4, -20: 2}
    d2 = {-2: 2, -14: 2, 20: 4}
    frag = (
        stage()
        .flat_map(lambda x: [x, x])
        .partition(lambda x: x % 3, 2, stage().map_async(lambda x: _turns(-x, d1[x])))
        .map_async(lambda x: _turns(x, d2[x]), concurrency=2, window=3)
    )
    out = Flow.from_iterable([2, 14, -20]).parallel(1, frag).to_list(engine=engine)
    assert sorted(out) == [-14, -14, -2, -2, 20, 20]


class _FailsAfterEnd(LinearLogic[int, int]):
    def __init__(self, ports: Ports[int, int], error: type[BaseException]) -> None:
        super().__init__(ports)
        self.error = error

    def on_item(self, item: int) -> tuple[int, ...]:
        return (item,)

    def post_stop(self) -> None:
        raise self.error("post_stop failed")


@dataclass(frozen=True)
class _PostStopRaises(LinearStage[int, int]):
    error: type[BaseException]
    operator: ClassVar[str] = "post_stop_raises"

    def create_logic(self, ports: Ports[int, int]) -> LinearLogic[int, int]:
        return _FailsAfterEnd(ports, self.error)


@pytest.mark.parametrize("error", [ValueError, Abort])
def test_an_error_after_a_stage_ended_is_raised_not_swallowed(
    engine: Engine, error: type[BaseException]
) -> None:
    with pytest.raises(error, match="post_stop failed"):
        Flow.range(5).via(_PostStopRaises(error)).map(str).to_list(engine=engine)


def test_a_stage_s_timers_are_cancelled_when_it_stops() -> None:
    """Timers queue like work; restarting one cancels the earlier, and completing the stage
    cancels the rest, armed or not: no expiry reaches a stopped stage."""

    class Timed(StageLogic[int, int]):
        def pre_start(self) -> None:
            self.ports.start_timer("a", 1.0)
            self.ports.start_timer("a", 2.0)  # restarts "a"
            self.ports.start_timer("b", 3.0)

        def on_pull(self) -> None:
            assert self.ports.timer_active("a")
            self.ports.cancel_timer("b")
            assert not self.ports.timer_active("b")
            self.ports.complete()

        def on_timer(self, key: Hashable) -> None:
            raise AssertionError(f"timer {key!r} fired after the stage stopped")

    interp = Interpreter([Timed], [StageStats("timed")])
    interp.start()
    timers = [work for _, work, _ in interp.scheduled]
    assert [type(t) for t in timers] == [Timer, Timer, Timer]
    assert [t.cancelled for t in timers] == [True, False, False]
    interp.demand()
    assert interp.finished
    assert all(t.cancelled for t in timers)
    for index, _, done in interp.scheduled:  # a late expiry (already queued) is ignored
        interp.work_done(index, done, None, None)
    interp.stop()
