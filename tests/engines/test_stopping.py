"""Runs stop when asked, from anywhere (issue 12, item 2): leaving a loop, closing from another
thread or task, garbage collection; every task and thread is joined at once and what was in
flight is counted lost. Each of the first three tests reproduces a defect found by trying
rxpipe as a new user would."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time

import pytest

from rxpipe import Flow
from rxpipe.engines.base import Engine
from tests.accounting import assert_accounted

pytestmark = pytest.mark.timeout(60)


async def _slow(x: int) -> int:
    await asyncio.sleep(0.001)
    return x


def _flows() -> dict[str, Flow[int]]:
    endless = Flow.from_iterable(itertools.count())
    return {
        "sync": endless.map(lambda x: x).filter(lambda x: x % 5 != 0),
        "async": endless.map_async(_slow, concurrency=4).map(lambda x: x),
    }


def _rxpipe_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rxpipe-")]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_leaving_a_loop_over_a_run_stops_it_at_once(engine: Engine, kind: str) -> None:
    """Was: on push, threads stayed alive until a GC pass, asyncio tasks were left pending,
    and the Report said lost=0 (the run kept its own reference to the generator)."""
    run = engine.open(_flows()[kind].plan)
    gc.disable()  # no collection pass may do the work: leaving the loop must
    try:
        for n, _ in enumerate(run, 1):
            if n == 87:
                break
        assert _rxpipe_threads() == []  # joined when the loop was left
    finally:
        gc.enable()
    report = run.report()
    assert report.delivered == 87
    assert_accounted(report)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_close_from_another_thread_stops_a_sync_run(engine: Engine, kind: str) -> None:
    """Was: ``run.close()`` did nothing or raised ``ValueError: generator already
    executing``, and a script over an endless source never exited."""
    run = engine.open(_flows()[kind].plan)
    seen: list[int] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for x in run:
                seen.append(x)
        except BaseException as exc:
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    while len(seen) < 50:
        time.sleep(0.001)
    run.close()
    consumer.join(10)
    assert not consumer.is_alive()
    assert errors == []  # the consumer's loop simply ended
    assert _rxpipe_threads() == []
    report = run.report()
    assert report.delivered == len(seen)
    assert_accounted(report)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_aclose_from_another_task_ends_the_async_for_quietly(engine: Engine, kind: str) -> None:
    """Was: on pull, ``aclose(): asynchronous generator is already running`` (and the run
    went on); on push, the consumer's ``async for`` raised an internal ClosedChannelError."""

    async def main() -> None:
        run = engine.open(_flows()[kind].plan)
        seen: list[int] = []

        async def consume() -> str:
            async for x in run:
                seen.append(x)
            return "ended"

        consumer = asyncio.create_task(consume())
        while len(seen) < 50:  # noqa: ASYNC110 (a list filled by the consumer)
            await asyncio.sleep(0.001)
        await run.aclose()
        assert await asyncio.wait_for(consumer, 10) == "ended"
        report = run.report()
        assert report.delivered == len(seen)
        assert_accounted(report)

    asyncio.run(main())


def test_iter_closes_on_leaving_the_block_and_gives_the_report(engine: Engine) -> None:
    with Flow.from_iterable(itertools.count()).map(lambda x: x * 2).iter(engine=engine) as items:
        got = list(itertools.islice(items, 10))
    assert got == [2 * i for i in range(10)]
    assert _rxpipe_threads() == []
    report = items.report()
    assert report.delivered == 10
    assert_accounted(report)


def test_iter_closed_from_another_thread(engine: Engine) -> None:
    items = Flow.from_iterable(itertools.count()).map_async(_slow).iter(engine=engine)
    first = threading.Event()
    closer = threading.Thread(target=lambda: (first.wait(10), items.close()))
    closer.start()
    n = 0
    with items:
        for _ in items:
            n += 1
            first.set()
    closer.join()
    assert n >= 1
    assert items.report().delivered == n
    assert_accounted(items.report())


def test_aiter_closes_on_leaving_the_block_and_gives_the_report(engine: Engine) -> None:
    async def main() -> None:
        flow = Flow.from_iterable(itertools.count()).map_async(_slow, concurrency=3)
        async with flow.aiter(engine=engine) as items:
            got = []
            async for x in items:
                got.append(x)
                if len(got) == 10:
                    break
        assert got == list(range(10))
        report = items.report()
        assert report.delivered == 10
        assert_accounted(report)

    asyncio.run(main())


def test_iter_refuses_inside_a_running_loop_on_push() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="aiter"):
            Flow.range(3).iter(engine="push")

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_break_then_aclose_in_the_same_task_closes_quietly(engine: Engine, kind: str) -> None:
    """``async for x in run: ... break`` then ``await run.aclose()``: the iterator the loop
    left behind was finalised while the run's aclose() closed the engine's iterator, and its
    own cleanup closed that iterator again ("aclose(): asynchronous generator is already
    running", logged by asyncio as a task exception nobody retrieved)."""
    problems: list[dict[str, object]] = []

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: problems.append(ctx))
        run = engine.open(_flows()[kind].plan)
        got = 0
        async for _ in run:
            got += 1
            if got >= 50:
                break
        await run.aclose()
        return run.report().delivered

    assert asyncio.run(main()) == 50
    gc.collect()
    assert problems == []


def test_break_out_of_aiter_leaves_no_task_behind(engine: Engine) -> None:
    """Found by trying the docs as a new user: on push, the iterator a ``break`` left behind
    was finalised in a task that waited (polling every 1 ms) for the consumer's next step,
    which never came: the task lived, and spun, as long as the consumer's task did."""

    async def main() -> list[asyncio.Task[object]]:
        async with Flow.from_iterable(itertools.count()).aiter(engine=engine) as items:
            async for x in items:
                if x >= 5:
                    break
        for _ in range(20):  # the consumer goes on with other work
            await asyncio.sleep(0.005)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(main()) == []


def test_a_base_exception_between_two_loop_steps_leaves_no_task_pending(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by a new-user trial: Ctrl-C landing between two steps of a sync terminal's
    private loop (not inside a stage) left its tasks pending when the loop closed: "Task was
    destroyed but it is pending!" and "Event loop is closed" on stderr. A ``SystemExit``
    raised by a loop callback reaches the loop the same way."""
    if getattr(engine, "runtime", None) == "threads":
        pytest.skip("the async stage's loop runs in a thread of its own: no private loop here")
    import sys

    async def work(x: int) -> int:
        if x == 20:
            asyncio.get_running_loop().call_soon(sys.exit, 3)  # between two steps
        await asyncio.sleep(0)
        return x

    flow = Flow.from_iterable(itertools.count()).map_async(work, concurrency=4)
    with caplog.at_level("ERROR", logger="asyncio"), pytest.raises(SystemExit):
        flow.run(engine=engine)
    gc.collect()
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


def test_a_suspended_iterator_closed_from_another_thread_returns(engine: Engine) -> None:
    """Found by the flake hunt (a collection on a pipeline thread finalised a test's left
    iterator and hung the suite): the iterator's cleanup closed the run, which waited for
    the consumer, which was that same cleanup."""
    run = engine.open(Flow.range(100).map(lambda x: x).plan)
    it = iter(run)
    assert next(it) == 0
    closing = threading.Thread(target=it.close)
    closing.start()
    closing.join(10)
    assert not closing.is_alive()
    report = run.report()
    assert report.delivered == 1
    assert_accounted(report)
