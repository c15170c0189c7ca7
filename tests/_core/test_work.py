"""Work, the one scheduler of asynchronous work: runners, ends, cancellation (alone or all)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from rxpipe import Flow
from rxpipe._core.work import Lane, LaneCall, Work
from rxpipe.engines import Engine

Scheduled = deque[tuple[int, Callable[[], Awaitable[Any]], Any]]


def _done(result: Any, error: BaseException | None) -> None:  # never called by Work itself
    raise AssertionError("Work queues ends; the driver calls done")


async def _turns(x: int, n: int) -> int:
    for _ in range(n):
        await asyncio.sleep(0)
    return x


async def _drain(work: Work, count: int) -> list[tuple[int, Any, Any, BaseException | None]]:
    """Wait, as a driver does, until ``count`` pieces ended; their ends in order."""
    ended: list[tuple[int, Any, Any, BaseException | None]] = []
    while len(ended) < count:
        await work.wait()
        while work.finished:
            ended.append(work.finished.popleft())
    return ended


def test_pieces_run_on_few_runners_and_their_ends_are_queued_for_the_driver() -> None:
    async def main() -> None:
        work = Work()
        driver = asyncio.current_task()
        seen: list[asyncio.Task[Any] | None] = []

        async def piece(x: int) -> int:
            seen.append(asyncio.current_task())
            return await _turns(x, x % 3)

        scheduled: Scheduled = deque()
        results = []
        for round_ in range(20):
            for i in range(4):
                x = 4 * round_ + i
                scheduled.append((0, lambda x=x: piece(x), _done))  # type: ignore[misc]
            work.start(scheduled)
            assert work.running == 4
            results += [r for _, _, r, _ in await _drain(work, 4)]
            assert work.running == 0
        assert sorted(results) == list(range(80))
        runners = set(seen)
        assert driver not in runners
        assert len(runners) <= 4  # at most as many runners as pieces in flight at once
        assert not await work.stop()
        assert all(t is not None and t.done() for t in runners)

    asyncio.run(main())


def test_a_piece_that_raises_reports_its_error_and_its_runner_goes_on() -> None:
    async def main() -> None:
        work = Work()

        async def bad(x: int) -> int:
            await asyncio.sleep(0)
            raise ValueError(x)

        def bad_at_once() -> Awaitable[int]:
            raise LookupError("before it could start")

        scheduled: Scheduled = deque([(0, lambda: bad(1), _done), (1, bad_at_once, _done)])
        work.start(scheduled)
        # the synchronous failure is queued at once, without a runner
        assert len(work.finished) == 1
        assert isinstance(work.finished[0][3], LookupError)
        ended = await _drain(work, 2)
        assert [type(e) for *_, e in ended] == [LookupError, ValueError]
        scheduled.append((0, lambda: _turns(5, 2), _done))
        work.start(scheduled)
        assert [(r, e) for _, _, r, e in await _drain(work, 1)] == [(5, None)]
        await work.stop()

    asyncio.run(main())


def test_stop_cancels_busy_and_parked_runners_and_closes_pieces_never_started() -> None:
    async def main() -> None:
        work = Work()
        cancelled = []
        started = []

        async def slow(x: int) -> int:
            started.append(x)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(x)
                raise
            return x

        scheduled: Scheduled = deque((0, lambda x=x: _turns(x, 1), _done) for x in range(3))
        work.start(scheduled)
        await _drain(work, 3)
        for _ in range(3):
            await asyncio.sleep(0)  # the runners park
        before = asyncio.all_tasks()
        scheduled.extend((0, lambda x=x: slow(x), _done) for x in range(5))
        work.start(scheduled)  # 3 go to parked runners, 2 to new ones; none started yet
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await work.stop()
            gc.collect()
        assert not work.finished  # done is never called for cancelled work
        assert sorted(cancelled) == sorted(started)
        assert asyncio.all_tasks() <= before | {asyncio.current_task()}
        leftover = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        assert not leftover

    asyncio.run(main())


def test_one_piece_can_be_cancelled_alone() -> None:
    """The hook for timeouts: the piece ends with CancelledError, the others run on."""

    async def main() -> None:
        work = Work()

        async def slow(x: int) -> int:
            await asyncio.sleep(10)
            return x

        def done_a(result: Any, error: BaseException | None) -> None: ...

        def done_b(result: Any, error: BaseException | None) -> None: ...

        scheduled: Scheduled = deque(
            [(0, lambda: slow(1), done_a), (0, lambda: _turns(2, 3), done_b)]
        )
        work.start(scheduled)
        await asyncio.sleep(0)
        assert work.cancel(done_a)
        ended = await _drain(work, 2)
        by_done = {d: (r, e) for _, d, r, e in ended}
        assert isinstance(by_done[done_a][1], asyncio.CancelledError)
        assert by_done[done_b] == (2, None)
        assert not work.cancel(done_a)  # no longer running
        # the runner took the cancellation back: it runs the next piece as usual
        for _ in range(3):
            scheduled.append((0, lambda: _turns(3, 1), done_a))
            work.start(scheduled)
            assert [(r, e) for _, _, r, e in await _drain(work, 1)] == [(3, None)]
        # cancelled after it was handed to a runner, before that runner started it
        scheduled.append((0, lambda: slow(4), done_a))
        work.start(scheduled)
        assert work.cancel(done_a)
        ended = await _drain(work, 1)
        assert isinstance(ended[0][3], asyncio.CancelledError)
        scheduled.append((0, lambda: _turns(5, 1), done_b))
        work.start(scheduled)
        assert [(r, e) for _, _, r, e in await _drain(work, 1)] == [(5, None)]
        await work.stop()

    asyncio.run(main())


def test_a_piece_that_raises_cancelled_error_itself_reports_it() -> None:
    async def main() -> None:
        work = Work()

        async def gives_up() -> int:
            await asyncio.sleep(0)
            raise asyncio.CancelledError

        work.start(deque([(0, gives_up, _done)]))
        (ended,) = await _drain(work, 1)
        assert isinstance(ended[3], asyncio.CancelledError)
        work.start(deque([(0, lambda: _turns(1, 1), _done)]))
        assert (await _drain(work, 1))[0][2] == 1
        await work.stop()

    asyncio.run(main())


def test_any_awaitable_is_work() -> None:
    async def main() -> None:
        work = Work()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        loop.call_soon(fut.set_result, 7)
        work.start(deque([(0, lambda: fut, _done), (0, lambda: 3, _done)]))  # type: ignore[arg-type, return-value]
        ended = await _drain(work, 2)
        outcomes = {type(e).__name__: r for _, _, r, e in ended}
        assert outcomes == {"NoneType": 7, "TypeError": None}
        await work.stop()

    asyncio.run(main())


def test_map_async_calls_done_on_the_driver_not_in_the_calls_task(engine: Engine) -> None:
    tasks: set[asyncio.Task[Any] | None] = set()

    async def f(x: int) -> int:
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0)
        return x

    out = Flow.range(200).map_async(f, concurrency=8).map(lambda x: x).to_list(engine=engine)
    assert out == list(range(200))
    assert 1 <= len(tasks) <= 8


def test_a_lane_runs_at_most_its_limit_and_starts_the_rest_in_order() -> None:
    async def main() -> None:
        work = Work()
        lane = Lane(2)
        live = peak = 0
        calls: list[int] = []

        async def piece(x: int) -> int:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)
            await _turns(x, 1 + x % 3)
            live -= 1
            return x

        def call(x: int) -> Awaitable[int]:
            calls.append(x)  # a waiting piece's work is called only when its turn comes
            return piece(x)

        scheduled: Scheduled = deque((0, LaneCall((lane, call, x)), _done) for x in range(8))
        work.start(scheduled)
        assert calls == [0, 1]
        assert work.running == 8  # the waiting ones count: they will end
        ended = await _drain(work, 8)
        assert sorted(r for _, _, r, _ in ended) == list(range(8))
        assert calls == list(range(8))
        assert peak == 2
        assert lane.running == 0
        assert not lane.queue
        await work.stop()

    asyncio.run(main())


def test_a_waiting_lane_piece_fails_or_is_cancelled_or_never_starts() -> None:
    async def main() -> None:
        work = Work()
        lane = Lane(1)
        calls: list[int] = []

        def call(x: int) -> Awaitable[int]:
            calls.append(x)
            if x == 1:
                raise LookupError("before it could start")
            return _turns(x, 2)

        def done_2(result: Any, error: BaseException | None) -> None: ...

        scheduled: Scheduled = deque(
            [
                (0, LaneCall((lane, call, 0)), _done),
                (0, LaneCall((lane, call, 1)), _done),
                (0, LaneCall((lane, call, 2)), done_2),
                (0, LaneCall((lane, call, 3)), _done),
                (0, LaneCall((lane, call, 4)), _done),
            ]
        )
        work.start(scheduled)
        assert work.cancel(done_2)  # waiting in the lane: reported at once
        assert isinstance(work.finished[-1][3], asyncio.CancelledError)
        ended = await _drain(work, 4)
        outcomes = [(r, type(e).__name__) for _, _, r, e in ended]
        assert outcomes[0] == (None, "CancelledError")
        assert outcomes[1:3] == [(0, "NoneType"), (None, "LookupError")]
        assert outcomes[3] == (3, "NoneType")
        assert calls == [0, 1, 3, 4]  # 2 was cancelled before its turn
        await work.stop()  # 4 was running: cancelled; nothing else waits
        assert lane.running == 0

    asyncio.run(main())


def test_stop_drops_the_pieces_waiting_in_a_lane_uncalled() -> None:
    async def main() -> None:
        work = Work()
        lane = Lane(1)
        calls: list[int] = []

        def call(x: int) -> Awaitable[int]:
            calls.append(x)
            return asyncio.sleep(10, x)

        work.start(deque((0, LaneCall((lane, call, x)), _done) for x in range(4)))
        await asyncio.sleep(0)
        await work.stop()
        assert calls == [0]
        assert not work.finished
        assert not lane.queue

    asyncio.run(main())


def test_ordered_map_async_asks_ahead_but_never_runs_more_than_its_concurrency(
    engine: Engine,
) -> None:
    live = peak = 0

    async def counted(x: int) -> int:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await _turns(x, (x * 5) % 3)
        live -= 1
        return x

    out = Flow.range(300).map_async(counted, concurrency=3).to_list(engine=engine)
    assert out == list(range(300))
    assert 1 <= peak <= 3


def test_a_timeout_around_one_piece_ends_that_piece_only() -> None:
    """Timers can wrap a piece: asyncio.timeout cancels the runner's task and takes it back."""

    async def main() -> None:
        work = Work()

        async def within(x: int, seconds: float) -> int:
            async with asyncio.timeout(seconds):
                await asyncio.sleep(x)
            return x

        scheduled: Scheduled = deque(
            [(0, lambda: within(10, 0.01), _done), (0, lambda: within(0, 1), _done)]
        )
        work.start(scheduled)
        ended = await _drain(work, 2)
        assert sorted(type(e).__name__ for *_, e in ended) == ["NoneType", "TimeoutError"]
        for _ in range(3):  # the runners were not cancelled: they run the next pieces
            scheduled.append((0, lambda: _turns(1, 1), _done))
            work.start(scheduled)
            assert [(r, e) for _, _, r, e in await _drain(work, 1)] == [(1, None)]
        await work.stop()

    asyncio.run(main())
