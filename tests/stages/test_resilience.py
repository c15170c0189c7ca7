"""map_async(timeout=, retry=Retry(...)) on every engine, and Retry's backoff schedule.

Runs whose work shares one event loop use virtual time (exact instants, no real waiting); the
threads runtime runs on real time with short timeouts, and asserts counts only.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

import pytest

from rxpipe import Flow, PushEngine, Result, Retry, stage
from rxpipe._core.clock import now
from rxpipe.engines import Engine
from rxpipe.stages import Map
from rxpipe.testing import virtual_time

from .test_timed import clock_for


def _scale(engine: Engine) -> float:
    """Seconds of a timeout: long on virtual time (it costs nothing), short on real time."""
    return 0.05 if isinstance(engine, PushEngine) and engine.runtime == "threads" else 1.0


def test_a_call_over_its_timeout_is_cancelled_and_counted(engine: Engine) -> None:
    limit = _scale(engine)
    cancelled: list[int] = []

    async def call(x: int) -> int:
        if x == 2:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(x)
                raise
        return x * 10

    flow = Flow.range(4).map_async(call, concurrency=2, timeout=limit, errors="result")
    with clock_for(engine):
        results = flow.to_list(engine=engine)
        report = flow.run(engine=engine)
    assert [r.value for r in results if r.ok] == [0, 10, 30]
    (failed,) = [r for r in results if not r.ok]
    assert isinstance(failed, Result)
    assert isinstance(failed.error, TimeoutError)
    assert failed.item == 2
    assert cancelled == [2, 2]  # the call itself was cancelled, in both runs
    stage = report.stages["map_async"]
    assert (stage.timeouts, stage.errored, stage.retries) == (1, 1, 0)


def test_retries_back_off_and_then_succeed(engine: Engine) -> None:
    attempts: dict[int, list[float]] = defaultdict(list)

    async def flaky(x: int) -> int:
        attempts[x].append(now())
        if len(attempts[x]) < 3:
            raise ConnectionError(f"try again ({x})")
        return x

    retry = Retry(attempts=3, backoff=_scale(engine) / 10, jitter=0)
    flow = Flow.range(5).map_async(flaky, concurrency=5, retry=retry)
    with clock_for(engine) as virtual:
        report = flow.run(engine=engine)
    assert report.delivered == 5
    stage = report.stages["map_async"]
    assert (stage.retries, stage.errored, stage.timeouts) == (10, 0, 0)
    first = attempts[0]
    waits = [b - a for a, b in itertools.pairwise(first)]
    if virtual:
        assert waits == pytest.approx([0.1, 0.2], abs=1e-6)  # exponential: backoff, then 2x
    else:
        assert waits[0] >= 0.005 * 0.99
        assert waits[1] >= 0.01 * 0.99


def test_retries_spent_or_not_asked_for_surface_the_error(engine: Engine) -> None:
    calls: dict[int, int] = defaultdict(int)

    async def broken(x: int) -> int:
        calls[x] += 1
        if x == 1:
            raise ValueError("bad item")
        if x == 3:
            raise KeyError("gone")
        return x

    retry = Retry(attempts=4, backoff=0.001, jitter=0, on=KeyError)
    with clock_for(engine):
        report = Flow.range(5).map_async(broken, retry=retry, errors="skip").run(engine=engine)
    assert report.delivered == 3
    assert calls[1] == 1  # a ValueError is not retried (on=KeyError)
    assert calls[3] == 4  # retried until the attempts ran out
    stage = report.stages["map_async"]
    assert (stage.errored, stage.retries) == (2, 3)
    with clock_for(engine), pytest.raises(KeyError, match="gone"):
        Flow.range(5).filter(lambda x: x == 3).map_async(broken, retry=retry).to_list(engine=engine)


def test_a_timed_out_attempt_is_retried(engine: Engine) -> None:
    limit = _scale(engine)
    calls = 0

    async def slow_once(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        return x

    flow = Flow.of(7).map_async(slow_once, timeout=limit, retry=Retry(2, backoff=0, jitter=0))
    with clock_for(engine):
        report = flow.run(engine=engine)
    assert report.delivered == 1
    stage = report.stages["map_async"]
    assert (stage.timeouts, stage.retries, stage.errored) == (1, 1, 0)


def test_a_timeout_the_call_raises_itself_is_not_counted_as_one() -> None:
    async def impatient(x: int) -> int:
        raise TimeoutError("the service said so")

    report = Flow.of(1).map_async(impatient, timeout=60, errors="skip").run()
    assert report.stages["map_async"].timeouts == 0
    assert report.stages["map_async"].errored == 1


def test_retry_backoff_schedule() -> None:
    retry = Retry(attempts=6, backoff=0.5, jitter=0, max_backoff=3.0)
    assert [retry.wait(k) for k in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = Retry(backoff=1.0, jitter=0.5)
    rng = random.Random(15)
    waits = [jittered.wait(1, rng) for _ in range(200)]
    assert all(0.5 <= w <= 1.5 for w in waits)
    assert max(waits) - min(waits) > 0.5  # spread, not a constant


def test_bad_timeouts_and_retries_are_refused() -> None:
    async def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="timeout"):
        Flow.range(3).map_async(f, timeout=0)
    with pytest.raises(TypeError, match="retry"):
        Flow.range(3).map_async(f, retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        Retry(jitter=2)
    with pytest.raises(TypeError, match="on="):
        Retry(on=(ValueError, "oops"))  # type: ignore[arg-type]


def test_virtual_time_makes_the_retry_schedule_exact() -> None:
    """The doc's claim: a retry schedule of minutes runs in no real time on virtual time."""
    seen: list[float] = []

    async def down(x: int) -> int:
        seen.append(now())
        raise ConnectionError("down")

    with virtual_time():
        report = (
            Flow.of(1)
            .map_async(down, retry=Retry(attempts=4, backoff=60, jitter=0), errors="skip")
            .run()
        )
    assert seen == pytest.approx([0, 60, 180, 420])
    assert report.stages["map_async"].retries == 3


# --- Flow.restart ------------------------------------------------------------------------------


class _Flaky:
    """An iterable that fails its first ``failures`` iterations after two items."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.opened: list[float] = []

    def __iter__(self) -> Iterator[int]:
        self.opened.append(now())
        yield 0
        yield 1
        if len(self.opened) <= self.failures:
            raise ConnectionResetError(f"lost the connection (run {len(self.opened)})")
        yield 2


def test_restart_reopens_a_failing_source_with_backoff(engine: Engine) -> None:
    source = _Flaky(failures=2)
    backoff = _scale(engine) / 10
    inner = Flow.from_iterable(source).map(lambda x: x * 10)
    flow = Flow.restart(inner, retry=Retry(attempts=3, backoff=backoff, jitter=0))
    with clock_for(engine) as virtual:
        report = flow.tap(lambda _: None).run(engine=engine)
        got = Flow.restart(
            Flow.from_iterable(_Flaky(failures=1)), retry=Retry(2, backoff=0, jitter=0)
        ).to_list(engine=engine)
    assert got == [0, 1, 0, 1, 2]  # what came before the failure stays emitted
    assert report.delivered == 7  # 2 + 2 + 3
    assert report.stages["restart"].retries == 2
    waits = [b - a for a, b in itertools.pairwise(source.opened)]
    if virtual:
        assert waits == pytest.approx([0.1, 0.2], abs=1e-6)
    else:
        assert waits[0] >= backoff * 0.99


def test_restart_gives_up_after_its_attempts_and_on_other_errors(engine: Engine) -> None:
    with clock_for(engine), pytest.raises(ConnectionResetError, match="run 2"):
        Flow.restart(
            Flow.from_iterable(_Flaky(failures=5)), retry=Retry(2, backoff=0.01, jitter=0)
        ).to_list(engine=engine)
    seen: list[int] = []
    not_retried = Retry(5, backoff=0.01, jitter=0, on=KeyError)
    with clock_for(engine), pytest.raises(ConnectionResetError, match="run 1"):
        Flow.restart(Flow.from_iterable(_Flaky(failures=5)), retry=not_retried).tap(
            seen.append
        ).run(engine=engine)
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="Retry"):
        Flow.restart(Flow.range(3), retry=3)  # type: ignore[arg-type]


def test_restart_starts_a_failing_fragment_afresh(engine: Engine) -> None:
    """A stateful fragment fails on item 3 the first two times: each failure loses that item,
    a fresh copy (its scan starting over) takes over after the backoff."""
    failures = 0

    def check(x: int) -> int:
        nonlocal failures
        if x == 3 and failures < 2:
            failures += 1
            raise ConnectionError("downstream service dropped us")
        return x

    async def call(x: int) -> int:
        await asyncio.sleep(0)
        return x

    fragment = stage().map(check).map_async(call).scan(lambda a, x: a + x, 0)
    source = Flow.from_async_iterable(_items([1, 2, 3, 4, 3, 5, 3, 6]))
    seen: list[int] = []
    restarting = Flow.restart(fragment, retry=Retry(3, backoff=_scale(engine) / 10, jitter=0))
    with clock_for(engine):
        report = source.via(restarting).tap(seen.append).run(engine=engine)
    assert failures == 2
    # each copy's scan starts over from its initial 0; the items that failed are lost
    assert seen == [0, 1, 3, 0, 4, 0, 5, 8, 14]
    stage_report = report.stages["restart"]
    assert (stage_report.retries, stage_report.errored) == (2, 2)


def test_restart_of_a_fragment_counts_restarts_and_gives_up(engine: Engine) -> None:
    calls = 0

    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if x % 2:
            raise ConnectionError(f"odd {x}")
        return x * 10

    fragment = stage().map(flaky)
    retry = Retry(attempts=3, backoff=_scale(engine) / 100, jitter=0)
    with clock_for(engine):
        report = Flow.range(4).via(fragment.restart(retry=retry)).run(engine=engine)
        with pytest.raises(ConnectionError, match="odd 5"):
            Flow.range(8).via(Flow.restart(fragment, retry=retry)).to_list(engine=engine)
    assert report.delivered == 2  # 0 and 20; items 1 and 3 failed and were lost
    restart = report.stages["restart"]
    assert (restart.retries, restart.errored, restart.received) == (2, 2, 4)
    with pytest.raises(TypeError, match="fragment"):
        Flow.restart(Map(str), retry=retry)  # type: ignore[call-overload]


async def _items(items: list[int]) -> AsyncIterator[int]:
    for item in items:
        yield item
