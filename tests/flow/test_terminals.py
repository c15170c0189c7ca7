"""Terminals, their async twins, iteration, and running inside an event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from rxpipe import Flow, PushEngine, Report
from rxpipe.engines import Engine

flow = Flow.range(1, 6).map(lambda x: x * 2)  # 2 4 6 8 10


def test_sync_terminals(engine: Engine) -> None:
    assert flow.to_list(engine=engine) == [2, 4, 6, 8, 10]
    assert flow.first(engine=engine) == 2
    assert flow.count(engine=engine) == 5
    assert flow.fold(lambda a, x: a + x, 0, engine=engine) == 30
    seen: list[int] = []
    report = flow.foreach(seen.append, engine=engine)
    assert seen == [2, 4, 6, 8, 10]
    assert isinstance(report, Report)
    assert report.delivered == 5
    run_report = flow.run(engine=engine)
    assert run_report.delivered == 5
    assert list(run_report.stages) == ["range", "map"]
    assert run_report.engine == engine.name


def test_async_twins(engine: Engine) -> None:
    async def main() -> None:
        assert await flow.to_list_async(engine=engine) == [2, 4, 6, 8, 10]
        assert await flow.first_async(engine=engine) == 2
        assert await flow.count_async(engine=engine) == 5
        assert await flow.fold_async(lambda a, x: a + x, 0, engine=engine) == 30
        seen: list[int] = []
        report = await flow.foreach_async(seen.append, engine=engine)
        assert seen == [2, 4, 6, 8, 10]
        assert report.delivered == 5
        assert (await flow.run_async(engine=engine)).delivered == 5
        assert [x async for x in flow] == [2, 4, 6, 8, 10]

    asyncio.run(main())


def test_first_of_empty_flow() -> None:
    with pytest.raises(ValueError, match="empty flow"):
        Flow.of().first()
    assert Flow.of().first(default=None) is None
    assert asyncio.run(Flow.of().first_async(default=7)) == 7


def test_first_cancels_the_run() -> None:
    pulled: list[int] = []

    def src():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield i

    assert Flow.from_iterable(src()).map(lambda x: x + 1).first() == 1
    assert pulled == [0]


def test_iteration_and_early_break() -> None:
    out = []
    for x in Flow.range(100).map(lambda x: x * x):
        if x > 10:
            break
        out.append(x)
    assert out == [0, 1, 4, 9]


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_async_source_runs_from_sync_terminals_on_a_private_loop(engine: Engine) -> None:
    f = Flow.from_async_iterable(agen(5)).map(lambda x: x + 1)
    assert f.to_list(engine=engine) == [1, 2, 3, 4, 5]


def test_async_source_in_async_terminal(engine: Engine) -> None:
    f = Flow.from_async_iterable(agen(4)).filter(lambda x: x % 2 == 1)
    assert asyncio.run(f.to_list_async(engine=engine)) == [1, 3]


def test_sync_terminal_inside_running_loop_points_at_async_twin() -> None:
    f = Flow.from_async_iterable(agen(3))

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"await flow\.to_list_async\(\)"):
            f.to_list()
        with pytest.raises(RuntimeError, match=r"run_async"):
            f.run()

    asyncio.run(main())


def test_sync_only_flow_works_inside_a_running_loop() -> None:
    async def main() -> list[int]:
        return Flow.range(3).to_list()  # no loop needed: runs in the caller's thread

    assert asyncio.run(main()) == [0, 1, 2]


def test_async_run_yields_to_other_tasks() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        t = asyncio.create_task(ticker())
        await Flow.range(10_000).map(lambda x: x).count_async()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    assert ticks > 10


def test_run_leaves_no_thread_behind() -> None:
    import threading

    before = set(threading.enumerate())
    Flow.from_async_iterable(agen(3)).to_list()
    Flow.range(100).chunk(7).run()
    assert set(threading.enumerate()) == before


# -- inside a running loop: every refusal names the real twin (issue 9, item 10) -------------

SYNC_TERMINALS: dict[str, Callable[[Flow[int], Engine], object]] = {
    "to_list": lambda f, e: f.to_list(engine=e),
    "first": lambda f, e: f.first(engine=e),
    "count": lambda f, e: f.count(engine=e),
    "fold": lambda f, e: f.fold(lambda a, x: a + x, 0, engine=e),
    "foreach": lambda f, e: f.foreach(lambda x: None, engine=e),
    "run": lambda f, e: f.run(engine=e),
}


def _refusal(call: Callable[[], object]) -> str:
    """The message of the RuntimeError ``call`` raises inside a running loop."""

    async def main() -> str:
        with pytest.raises(RuntimeError) as caught:
            call()
        return str(caught.value)

    message = asyncio.run(main())
    assert "cannot run inside a running event loop" in message
    assert "the _async terminal" not in message
    assert "__iter__" not in message
    return message


@pytest.mark.parametrize("terminal", sorted(SYNC_TERMINALS))
def test_refusal_names_the_terminals_own_twin(engine: Engine, terminal: str) -> None:
    f = Flow.from_async_iterable(agen(3)).map(lambda x: x + 1)
    message = _refusal(lambda: SYNC_TERMINALS[terminal](f, engine))
    assert message == (
        f"`flow.{terminal}()` cannot run inside a running event loop (it would block the "
        f"loop); use `await flow.{terminal}_async()` instead"
    )


def test_for_loop_refusal_points_at_async_for() -> None:
    f = Flow.from_async_iterable(agen(3))

    def loop() -> None:
        for _ in f:
            pass

    assert _refusal(loop).endswith("use `async for x in flow` instead")


@pytest.mark.parametrize("terminal", sorted(SYNC_TERMINALS))
def test_push_engines_refuse_a_sync_flow_alike(engine: Engine, terminal: str) -> None:
    """The threads runtime used to block the loop where the asyncio runtime refused."""
    f = Flow.range(5).map(lambda x: x * 2)
    if not isinstance(engine, PushEngine):  # the pull engine runs it in the caller's thread
        assert asyncio.run(_in_loop(lambda: SYNC_TERMINALS[terminal](f, engine))) is not None
        return
    message = _refusal(lambda: SYNC_TERMINALS[terminal](f, engine))
    assert message.endswith(f"use `await flow.{terminal}_async()` instead")


async def _in_loop(call: Callable[[], object]) -> object:
    return call()


def test_push_threads_refusal_starts_no_thread() -> None:
    before = set(threading.enumerate())
    _refusal(lambda: Flow.range(5).to_list(engine=PushEngine(runtime="threads")))
    assert set(threading.enumerate()) == before


def test_engine_level_refusals_read_well(engine: Engine) -> None:
    """Below the terminals, code that cannot know the terminal still names a real twin."""
    if isinstance(engine, PushEngine) and engine.runtime == "threads":
        pytest.skip("a threads run needs no loop of its own: the terminals refuse (above)")
    plan = Flow.from_async_iterable(agen(3)).plan
    message = _refusal(lambda: engine.open(plan).collect())
    assert message.endswith(
        "use the terminal's async twin (`await flow.to_list_async()` for `flow.to_list()`, "
        "`async for x in flow` for `for x in flow`) instead"
    )


@pytest.mark.parametrize("terminal", ["foreach", "fold", "foreach_async", "fold_async"])
def test_a_terminal_whose_function_raises_leaves_nothing_running(
    engine: Engine, terminal: str
) -> None:
    """Regression: the abandoned async generator of a sync terminal was closed by a GC-time
    task that outlived the private loop ("Task was destroyed but it is pending")."""

    def bad(*args: int) -> int:
        if args[-1] == 1:
            raise KeyError(args[-1])
        return 0

    flow = Flow.range(50).map_async(_turns_zero)
    calls: dict[str, Callable[[], object]] = {
        "foreach": lambda: flow.foreach(bad, engine=engine),
        "fold": lambda: flow.fold(bad, 0, engine=engine),
        "foreach_async": lambda: asyncio.run(flow.foreach_async(bad, engine=engine)),
        "fold_async": lambda: asyncio.run(flow.fold_async(bad, 0, engine=engine)),
    }
    with pytest.raises(KeyError):
        calls[terminal]()


async def _turns_zero(x: int) -> int:
    await asyncio.sleep(0)
    return x
