"""errors="raise" | "result" | "skip" | callback, and restart=True, on every engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from rxpipe import Flow, Overflow, Result, stage
from rxpipe.engines import Engine
from rxpipe.stages import LinearLogic, LinearStage, Ports
from tests.helpers import Abort, assert_pulled
from tests.helpers import slow_identity as _slow_identity
from tests.helpers import turns as _turns


def flaky(x: int) -> int:
    if x % 4 == 3:
        raise ValueError(f"bad {x}")
    return x * 10


def test_raise_is_the_default_and_names_the_stage(engine: Engine) -> None:
    with pytest.raises(ValueError, match="bad 3") as info:
        Flow.range(10).map(flaky, name="enrich").to_list(engine=engine)
    assert info.value.__notes__ == ["rxpipe: raised in stage 'enrich'"]


def test_skip_drops_and_counts(engine: Engine) -> None:
    report = Flow.range(10).map(flaky, errors="skip").run(engine=engine)
    assert report.delivered == 8
    assert report.stages["map"].errored == 2
    assert report.stages["map"].received == 10
    out = Flow.range(10).map(flaky, errors="skip").to_list(engine=engine)
    assert out == [0, 10, 20, 40, 50, 60, 80, 90]


def test_result_wraps_values_and_errors(engine: Engine) -> None:
    out = Flow.range(5).map(flaky, errors="result").to_list(engine=engine)
    assert [r.ok for r in out] == [True, True, True, False, True]
    assert out[0] == Result.success(0, 0)
    bad = out[3]
    assert isinstance(bad.error, ValueError)
    assert bad.item == 3
    assert bad.value is None


def test_callback_sees_error_and_item(engine: Engine) -> None:
    seen: list[tuple[str, Any]] = []
    out = (
        Flow.range(8)
        .map(flaky, errors=lambda exc, item: seen.append((str(exc), item)))
        .to_list(engine=engine)
    )
    assert out == [0, 10, 20, 40, 50, 60]
    assert seen == [("bad 3", 3), ("bad 7", 7)]


def test_filter_skip_surface(engine: Engine) -> None:
    def pred(x: int) -> bool:
        if x == 2:
            raise KeyError(x)
        return x % 2 == 0

    report = Flow.range(6).filter(pred, errors="skip").run(engine=engine)
    st = report.stages["filter"]
    assert (st.received, st.emitted, st.filtered, st.errored) == (6, 2, 3, 1)


def test_scan_restart_starts_again_from_initial(engine: Engine) -> None:
    def add(acc: int, x: int) -> int:
        if x == 3:
            raise ArithmeticError("reset me")
        return acc + x

    flow = Flow.of(1, 2, 3, 4, 5).scan(add, 0, restart=True)
    # the restarted scan re-emits its initial value, then continues from it
    assert flow.to_list(engine=engine) == [0, 1, 3, 0, 4, 9]
    assert flow.run(engine=engine).stages["scan"].errored == 1


def test_restart_is_refused_on_stateless_stages() -> None:
    from rxpipe.stages import Map

    with pytest.raises(ValueError, match="stateful"):
        Flow.range(3).via(Map(str), restart=True)


def test_raise_stops_every_stage_and_upstream(engine: Engine) -> None:
    pulled = []

    def src():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield i

    flow = Flow.from_iterable(src()).map(flaky).chunk(3)
    with pytest.raises(ValueError, match="bad 3"):
        flow.to_list(engine=engine)
    assert_pulled(engine, flow, len(pulled), 4)


def _abort_at_10(x: int) -> int:
    if x == 10:
        raise Abort
    return x


async def _abort_at_10_async(x: int) -> int:
    return _abort_at_10(x)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Flow.range(100).map(_abort_at_10),
        lambda: Flow.range(100).map(_abort_at_10).map(str),
        lambda: Flow.range(100).map_async(_abort_at_10_async).map(str),
        lambda: Flow.range(100).map(_abort_at_10).map_async(_slow_identity, concurrency=4),
        lambda: (
            Flow.range(100).map_async(_abort_at_10_async).map_async(_slow_identity, concurrency=4)
        ),
        lambda: Flow.range(100).map(_abort_at_10).buffer(4, overflow=Overflow.DROP_OLDEST),
        lambda: Flow.range(100).map(_abort_at_10, errors="skip"),
        lambda: Flow.range(100).map_async(_abort_at_10_async, concurrency=3, errors="skip"),
        lambda: Flow.range(100).parallel(2, stage().map(_abort_at_10), ordered=True),
    ],
    ids=[
        "map",
        "map-map",
        "map_async-map",
        "map-map_async",
        "map_async-map_async",
        "buffer",
        "skip",
        "map_async-skip",
        "parallel",
    ],
)
def test_a_base_exception_ends_the_run_on_every_engine(engine: Engine, build: Any) -> None:
    """The push runners let it escape and the run hung; now it travels down like any error.
    It reaches the caller as it is: no stage note (the fused loop added one; new-user trial)."""
    with pytest.raises(Abort) as caught:
        build().to_list(engine=engine)
    assert not getattr(caught.value, "__notes__", None)


def test_a_base_exception_before_a_buffer_reaches_the_caller(engine: Engine) -> None:
    flow = Flow.range(100).map_async(_abort_at_10_async).buffer(4).map(str)
    with pytest.raises(Abort):
        flow.to_list(engine=engine)


class _FlushAtEnd(LinearLogic[int, list[int]]):
    """Keeps items and emits them as one list at the end; item 4 raises."""

    def __init__(self, ports: Ports[int, list[int]]) -> None:
        super().__init__(ports)
        self.kept: list[int] = []

    def on_item(self, item: int) -> tuple[list[int], ...]:
        if item == 4:
            raise ValueError("bad item")
        self.kept.append(item)
        return ()

    def on_finish(self) -> tuple[list[int], ...]:
        return (self.kept,)


@dataclass(frozen=True)
class _Flush(LinearStage[int, list[int]]):
    operator: ClassVar[str] = "flush"

    def create_logic(self, ports: Ports[int, list[int]]) -> LinearLogic[int, list[int]]:
        return _FlushAtEnd(ports)


def test_a_skipped_error_on_the_last_item_still_lets_the_stage_flush(engine: Engine) -> None:
    """The supervisor saw upstream closed before on_upstream_finish and completed the stage."""

    async def last_is_slow(x: int) -> int:
        return await _turns(x, 3 if x == 4 else 0)

    flow = Flow.range(5).map_async(last_is_slow, concurrency=2).via(_Flush(), errors="skip")
    assert flow.to_list(engine=engine) == [[0, 1, 2, 3]]
