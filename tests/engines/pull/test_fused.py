"""The pull engine's fast paths name the failing stage and count exactly like the generic one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rxpipe import Flow, PullEngine
from rxpipe.engines import Engine


def triple(x: int) -> int:
    return 3 * x


def odd(x: int) -> bool:
    return x % 2 == 1


def explode_at_7(x: int) -> int:
    if x == 7:
        raise ArithmeticError("seven")
    return x


class Scale:
    def __call__(self, x: int) -> int:
        if x == 12:
            raise LookupError("twelve")
        return x * 2


def gen(n: int) -> Iterator[int]:
    yield from range(n)


FAILING: dict[str, tuple[Any, str]] = {
    # builtin lowering (sized source, map* filter map* take)
    "map then failing map": (lambda: Flow.range(20).map(abs).map(explode_at_7), "map#2"),
    "filter then failing map": (
        lambda: Flow.range(20).filter(odd).map(explode_at_7, name="risky").take(15),
        "risky",
    ),
    "failing builtin": (lambda: Flow.of("1", "x", "3").map(triple).map(int), "map#2"),
    "failing callable object": (lambda: Flow.range(20).map(Scale()).filter(odd), "map"),
    # generated loop (not eligible for the builtins)
    "same function twice": (lambda: Flow.range(20).map(explode_at_7).map(explode_at_7), "map"),
    "generator source": (lambda: Flow.from_iterable(gen(20)).map(explode_at_7), "map"),
    "two filters": (
        lambda: Flow.range(20).filter(odd).filter(bool).map(explode_at_7, name="late"),
        "late",
    ),
}


def stats(report: Any) -> list[tuple[int, int, int, int]]:
    return [(s.received, s.emitted, s.filtered, s.errored) for s in report.stages.values()]


@pytest.mark.parametrize("case", sorted(FAILING))
@pytest.mark.parametrize("terminal", ["to_list", "iterate"])
def test_fast_paths_agree_with_the_generic_interpreter(case: str, terminal: str) -> None:
    build, stage_name = FAILING[case]
    outcomes = []
    for engine in (PullEngine(), PullEngine(fuse=False)):
        run = engine.open(build().plan)
        got: list[Any] = []

        def consume(run: Any = run, got: list[Any] = got) -> None:
            if terminal == "to_list":
                run.collect()
            else:
                got.extend(run)

        with pytest.raises((ArithmeticError, LookupError, ValueError)) as info:
            consume()
        run.close()
        assert f"rxpipe: raised in stage {stage_name!r}" in info.value.__notes__
        outcomes.append((type(info.value), got, stats(run.report())))
    assert outcomes[0] == outcomes[1]


def test_early_exit_from_iteration_counts_exactly() -> None:
    flow = Flow.range(1000).map(triple).filter(odd)
    for engine in (PullEngine(), PullEngine(fuse=False)):
        run = engine.open(flow.plan)
        it = iter(run)
        assert [next(it) for _ in range(3)] == [3, 9, 15]
        run.close()
        assert stats(run.report()) == [(0, 6, 0, 0), (6, 6, 0, 0), (6, 3, 3, 0)]


def test_stop_iteration_from_a_user_function_is_not_a_silent_end(engine: Engine) -> None:
    def f(x: int) -> int:
        if x == 5:
            raise StopIteration
        return x

    with pytest.raises((RuntimeError, StopIteration)):
        Flow.range(10).map(f).to_list(engine=engine)
    with pytest.raises((RuntimeError, StopIteration)):
        list(Flow.range(10).map(f))


def test_stop_iteration_inside_async_flows_too() -> None:
    def f(x: int) -> int:
        if x == 2:
            raise StopIteration
        return x

    with pytest.raises((RuntimeError, StopIteration)):
        asyncio.run(Flow.range(5).map(f).to_list_async())
