"""Timers in the kernel and the operators on them: chunk(within=), throttle, idle_timeout, tap,
Flow.timer and Flow.interval, on every engine.

Timing is never left to the machine's speed. Runs whose work shares one event loop (pull,
push on asyncio) run on virtual time (:func:`rxpipe.testing.clock.virtual_time`): the clock
jumps to the next timer when nothing else can run, so the exact groups and instants are
asserted, and a 1 s gap costs no real time. The threads runtime gives async stages loops of
their own, which wait for other threads: there the tests run on real time, with short gaps,
and assert only what does not depend on the timing (the timer had to fire for the flow to
end as it did, no item is lost or duplicated, a rate is never exceeded).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pytest

from rxpipe import Flow, IdleTimeoutError, PushEngine, Stage, StageLogic, stage
from rxpipe._core.clock import Timer, now, use_clock
from rxpipe._core.work import Work
from rxpipe.engines import Engine
from rxpipe.stages import Ports
from rxpipe.stages.sources import TickSource
from rxpipe.testing.clock import VirtualTimeLoop, virtual_time


def _virtual(engine: Engine) -> bool:
    """Whether the run's work shares one event loop, so virtual time applies."""
    return not (isinstance(engine, PushEngine) and engine.runtime == "threads")


@contextlib.contextmanager
def clock_for(engine: Engine) -> Iterator[bool]:
    """Virtual time where it applies; yields whether it does."""
    if _virtual(engine):
        with virtual_time():
            yield True
    else:
        yield False


async def _bursts(*groups: list[int], gap: float) -> AsyncIterator[int]:
    """The groups' items back to back, ``gap`` seconds of silence between two groups."""
    for i, group in enumerate(groups):
        if i:
            await asyncio.sleep(gap)
        for item in group:
            yield item


def _flatten(groups: list[list[int]]) -> list[int]:
    return [x for g in groups for x in g]


# --- the kernel ------------------------------------------------------------------------------


def test_timers_are_call_later_handles_not_tasks() -> None:
    """A hundred armed timers start no task; stopping the Work cancels their handles."""

    async def main() -> None:
        work = Work()
        fired: list[int] = []
        scheduled: deque[Any] = deque()
        timers = [Timer(1.0 + i / 100) for i in range(100)]
        for i, t in enumerate(timers):
            scheduled.append((0, t, lambda r, e, i=i: fired.append(i)))
        work.start(scheduled)
        assert len(asyncio.all_tasks()) == 1  # this coroutine's own task only
        assert work.running == 100
        timers[0].cancel()
        assert work.running == 99
        await asyncio.sleep(1.005)  # virtual: the first live timer (1.01 s) has not fired
        assert not work.finished
        await asyncio.sleep(0.01)
        assert [e[0] for e in work.finished] == [0]  # timer 1 fired, timer 0 never
        await work.stop()
        assert not work.running
        assert all(t.handle is None for t in timers)

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_virtual_time_loop_jumps_to_the_next_timer() -> None:
    loop = VirtualTimeLoop()
    started = time.perf_counter()
    try:
        loop.run_until_complete(asyncio.sleep(3600))
        assert loop.time() == pytest.approx(3600)
    finally:
        loop.close()
    assert time.perf_counter() - started < 5


class _DebounceLogic(StageLogic[int, int]):
    """Emit an item once no other item followed it for ``quiet`` seconds (RxPY's debounce)."""

    __slots__ = ("latest", "quiet", "upstream_done")

    def __init__(self, ports: Ports[int, int], quiet: float) -> None:
        super().__init__(ports)
        self.quiet = quiet
        self.latest: int | None = None
        self.upstream_done = False

    def pre_start(self) -> None:
        self.ports.pull()

    def on_push(self) -> None:
        self.latest = self.ports.grab()
        self.ports.start_timer("quiet", self.quiet)  # restarts it: the earlier expiry is off
        self.ports.pull()

    def on_timer(self, key: Hashable) -> None:
        assert key == "quiet"
        self._emit()

    def on_pull(self) -> None:
        self._emit()

    def on_upstream_finish(self) -> None:
        self.upstream_done = True
        if self.ports.timer_active("quiet"):
            self.ports.cancel_timer("quiet")  # the last item goes out now
        self._emit()

    def _emit(self) -> None:
        if self.latest is not None and not self.ports.timer_active("quiet"):
            if not self.ports.can_push():
                return
            item, self.latest = self.latest, None
            self.ports.push(item)
        if self.upstream_done and self.latest is None:
            self.ports.complete()

    def held_items(self) -> int:
        return 0 if self.latest is None else 1


@dataclass(frozen=True)
class Debounce(Stage[int, int]):
    quiet: float
    operator: ClassVar[str] = "debounce"
    is_async: ClassVar[bool] = True

    def create_logic(self, ports: Ports[int, int]) -> StageLogic[int, int]:
        return _DebounceLogic(ports, self.quiet)


def test_a_custom_stage_restarts_and_cancels_its_timer(engine: Engine) -> None:
    gap = 1.0 if _virtual(engine) else 0.3
    quiet = 0.5 if _virtual(engine) else 0.05
    source = Flow.from_async_iterable(_bursts([1, 2, 3], [4, 5], [6], gap=gap))
    with clock_for(engine) as virtual:
        got = source.via(Debounce(quiet)).to_list(engine=engine)
    if virtual:
        assert got == [3, 5, 6]
    else:  # each burst ends with its last item, and no item comes out twice
        assert {3, 5, 6} <= set(got)
        assert got == sorted(set(got))


class _FakeClock:
    """A clock a sync source moves by hand (the run has no loop: deadlines read this)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def read(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class _LooplessDebounce(Stage[int, int]):
    """The debounce above without ``is_async``: its timers need no event loop."""

    quiet: float
    operator: ClassVar[str] = "debounce"

    def create_logic(self, ports: Ports[int, int]) -> StageLogic[int, int]:
        return _DebounceLogic(ports, self.quiet)


def test_a_timer_needs_no_event_loop_on_a_sync_run() -> None:
    """A sync pull run keeps timers as deadlines: a timer due while a read blocked is
    delivered before the item that read brought, and no event loop is started."""
    fake = _FakeClock()

    def source() -> Iterator[int]:
        assert not _loop_running()
        yield 1
        yield 2
        fake.now += 1.0  # a blocking read: the 0.5 s quiet period of 2 passes meanwhile
        yield 3
        yield 4
        fake.now += 0.1  # not quiet long enough: 3 is dropped, 4 is the burst's last
        yield 5

    with use_clock(fake.read, fake.sleep):
        got = Flow.from_iterable(source()).via(_LooplessDebounce(0.5)).to_list()
    assert got == [2, 5]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_a_sync_run_sleeps_until_a_timer_when_it_waits_for_nothing_else() -> None:
    """throttle on a sync run waits with the clock's sleep, to the deadline and no longer."""
    fake = _FakeClock()
    with use_clock(fake.read, fake.sleep):
        got = Flow.range(4).throttle(2, per=1.0).to_list()
    assert got == [0, 1, 2, 3]
    assert fake.slept == [0.5, 0.5, 0.5]  # after the one-item burst, one token per 0.5 s


def test_scheduled_work_without_an_event_loop_is_refused() -> None:
    """A stage that schedules work but forgot ``is_async`` fails clearly on a sync run."""

    class _Scheduling(StageLogic[int, int]):
        def on_pull(self) -> None:
            self.ports.schedule(lambda: asyncio.sleep(0), lambda _r, _e: None)

        def on_push(self) -> None:  # pragma: no cover - never gets there
            pass

    @dataclass(frozen=True)
    class Forgetful(Stage[int, int]):
        operator: ClassVar[str] = "forgetful"

        def create_logic(self, ports: Ports[int, int]) -> StageLogic[int, int]:
            return _Scheduling(ports)

    with pytest.raises(RuntimeError, match="is_async = True"):
        Flow.range(3).via(Forgetful()).to_list()


def test_timers_of_a_stopped_stage_never_fire(engine: Engine) -> None:
    """take(1) downstream stops chunk with its 60 s timer armed: the run ends at once."""
    started = time.perf_counter()
    got = Flow.range(10).chunk(2, within=60).take(1).to_list(engine=engine)
    assert got == [[0, 1]]
    assert time.perf_counter() - started < 30


# --- chunk(n, within=) -----------------------------------------------------------------------


def test_chunk_within_closes_a_group_on_time(engine: Engine) -> None:
    gap = 1.0 if _virtual(engine) else 0.3
    within = 0.5 if _virtual(engine) else 0.02
    source = Flow.from_async_iterable(_bursts([0, 1, 2], [3, 4, 5, 6, 7], [8], gap=gap))
    with clock_for(engine) as virtual:
        got = source.chunk(4, within=within).to_list(engine=engine)
    assert _flatten(got) == list(range(9))
    assert all(0 < len(g) <= 4 for g in got)
    if virtual:
        assert got == [[0, 1, 2], [3, 4, 5, 6], [7], [8]]
    else:  # a group of the first burst closed on time: 3 never joins 0
        assert not any(0 in g and 3 in g for g in got)


def _slow_reads(n: int, seconds: float, fake: _FakeClock) -> Iterator[int]:
    """A sync source whose every read takes ``seconds``: of the running virtual loop's time,
    of ``fake``'s (a run without a loop), or real time (the threads runtime)."""
    for i in range(n):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if isinstance(loop, VirtualTimeLoop):
            loop.advance(seconds)
        elif loop is None and threading.current_thread() is threading.main_thread():
            fake.now += seconds
        else:
            time.sleep(seconds)
        yield i


@pytest.mark.parametrize("async_run", [False, True], ids=["sync-run", "async-run"])
def test_chunk_within_closes_on_time_behind_a_slow_sync_source(
    engine: Engine, async_run: bool
) -> None:
    """Regression: a sync source read inline gave the loop a turn only every 256 reads, so a
    pull run closed its group 256 items late (one group of 12 here); a timer due while a read
    blocked is now delivered before that read's item, on every engine, with or without a loop.
    """
    if isinstance(engine, PushEngine) and engine.runtime == "asyncio":
        pytest.skip(
            "a sync source on the asyncio runtime shares the loop and sends a channelful per "
            "turn: those items arrive together (docs/time.md says so)"
        )
    fake = _FakeClock()
    virtual = _virtual(engine)
    step, within = (0.3, 1.0) if virtual else (0.03, 0.1)
    flow = Flow.from_iterable(_slow_reads(12, step, fake)).chunk(100, within=within)
    if async_run:  # a later async stage puts the pull run on a loop (the chunk reads inline)
        flow = flow.map_async(_same)
    loopless = use_clock(fake.read, fake.sleep) if virtual else contextlib.nullcontext()
    with clock_for(engine), loopless:
        got = flow.to_list(engine=engine)
    assert _flatten(got) == list(range(12))
    if virtual:  # items at 0.3, 0.6, 0.9 | 1.2 ... : the item after the deadline opens a group
        assert [len(g) for g in got] == [4, 4, 4]
    else:
        assert len(got) >= 3
        assert max(len(g) for g in got) <= 4


async def _same(group: list[int]) -> list[int]:
    return group


def test_chunk_within_counts_from_the_first_item_of_the_group(engine: Engine) -> None:
    """Items trickling in every 0.3 s with within=1.0: a group closes 1.0 s after its first."""
    if not _virtual(engine):
        pytest.skip("asserts instants: virtual time only")

    async def trickle() -> AsyncIterator[int]:
        for i in range(8):
            yield i
            await asyncio.sleep(0.3)

    seen: list[tuple[list[int], float]] = []
    with virtual_time():
        Flow.from_async_iterable(trickle()).chunk(10, within=1.0).tap(
            lambda g: seen.append((g, round(now(), 6)))
        ).run(engine=engine)
    # items at 0, .3, .6, .9 | 1.2 ... 2.1 | 2.4 (source ends at 2.4 + .3)
    assert [g for g, _ in seen] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert seen[0][1] == pytest.approx(1.0)


def test_chunk_within_flushes_the_last_partial_group_and_never_an_empty_one(
    engine: Engine,
) -> None:
    assert Flow.range(10).chunk(4, within=60).to_list(engine=engine) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    gap = 2.0 if _virtual(engine) else 0.1
    silent = Flow.from_async_iterable(_bursts([], [], gap=gap))
    with clock_for(engine):
        assert silent.chunk(3, within=0.05).to_list(engine=engine) == []


def test_chunk_within_counts_a_partial_group_lost_on_cancel(engine: Engine) -> None:
    report = Flow.range(5).chunk(4, within=60).take(1).run(engine=engine)
    assert report.delivered == 1
    chunk = report.stages["chunk"]
    # it read ahead into its next group: that item is counted lost, unless that group was
    # already on its way (push: the last group went into the channel before take cancelled)
    kept = chunk.received - chunk.lost
    assert (kept, chunk.emitted) in {(4, 1), (5, 2)}


def test_chunk_within_refuses_a_bad_duration() -> None:
    with pytest.raises(ValueError, match="within"):
        Flow.range(3).chunk(2, within=0)
    with pytest.raises(TypeError, match="within"):
        Flow.range(3).chunk(2, within="1s")  # type: ignore[arg-type]


# --- throttle --------------------------------------------------------------------------------


def test_throttle_spaces_items_by_the_rate_after_a_burst(engine: Engine) -> None:
    stamps: list[float] = []
    if _virtual(engine):
        with virtual_time():
            report = (
                Flow.range(6)
                .throttle(10, burst=2)
                .tap(lambda _: stamps.append(now()))
                .run(engine=engine)
            )
        assert stamps == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-6)
    else:
        started = time.monotonic()
        report = Flow.range(6).throttle(100, burst=2).run(engine=engine)
        # two at once, then one per token: the fourth token refills 40 ms after the start
        assert time.monotonic() - started >= 0.04 * 0.99
    assert report.delivered == 6  # backpressure: nothing dropped
    assert report.stages["throttle"].dropped == 0


def test_throttle_per_and_the_bucket_refills_while_idle(engine: Engine) -> None:
    if not _virtual(engine):
        pytest.skip("asserts instants: virtual time only")
    stamps: list[float] = []
    source = Flow.from_async_iterable(_bursts([0, 1, 2], [3, 4, 5], gap=10.0))
    with virtual_time():
        source.throttle(1, per=2.0, burst=2).tap(lambda _: stamps.append(now())).run(engine=engine)
    # a full bucket of 2, then one per 2 s; 10 s of silence refill it (to 2, not 5). The
    # silence starts when the source sent item 2: at once on push (its channel takes it),
    # at 2 s on pull (item 2 is pulled through the throttle's wait)
    assert stamps[:3] == pytest.approx([0.0, 0.0, 2.0], abs=1e-6)
    assert stamps[3] == pytest.approx(stamps[4], abs=1e-6)
    assert stamps[3] >= 10.0 - 1e-6
    assert stamps[5] - stamps[4] == pytest.approx(2.0, abs=1e-6)


def test_cancel_ends_a_stage_waiting_for_its_next_timer_at_once(engine: Engine) -> None:
    """Regression: on the threads runtime a throttle's thread slept until its next token (the
    timers of a blocking stage are deadlines now), so cancel() waited up to ``per`` seconds."""
    first = threading.Event()
    flow = Flow.range(100).throttle(1, per=30.0)
    pipeline = flow.start(engine=engine, on_item=lambda _: first.set())
    assert first.wait(10)  # the first item went out (a fixed sleep could end before it did) ...
    time.sleep(0.2)  # ... and the stage gets time to start waiting 30 s for the next token
    started = time.perf_counter()
    report = pipeline.cancel()
    assert time.perf_counter() - started < 5.0
    assert report.delivered >= 1
    assert not [t for t in threading.enumerate() if t.name.startswith("rxpipe-")]


def test_throttle_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        Flow.range(3).throttle(0)
    with pytest.raises(ValueError, match="per"):
        Flow.range(3).throttle(1, per=-1)
    with pytest.raises(ValueError, match="burst"):
        Flow.range(3).throttle(1, burst=0)


# --- idle_timeout ----------------------------------------------------------------------------


def test_idle_timeout_fails_a_stalled_flow(engine: Engine) -> None:
    gap = 1.0 if _virtual(engine) else 0.3
    idle = 0.5 if _virtual(engine) else 0.05
    source = Flow.from_async_iterable(_bursts([0, 1], [2], gap=gap))
    seen: list[int] = []
    with clock_for(engine), pytest.raises(IdleTimeoutError, match="idle_timeout") as info:
        source.idle_timeout(idle).tap(seen.append).run(engine=engine)
    assert isinstance(info.value, TimeoutError)
    assert seen == [0, 1]


def test_idle_timeout_lets_a_lively_flow_through(engine: Engine) -> None:
    gap = 1.0 if _virtual(engine) else 0.01
    idle = 1.5 if _virtual(engine) else 5.0
    source = Flow.from_async_iterable(_bursts([0, 1], [2], [3], gap=gap))
    with clock_for(engine):
        assert source.idle_timeout(idle).to_list(engine=engine) == [0, 1, 2, 3]


# --- tap ---------------------------------------------------------------------------------------


def test_tap_sees_every_item_and_passes_it_on(engine: Engine) -> None:
    seen: list[int] = []
    assert Flow.range(5).tap(seen.append).map(lambda x: x * 10).to_list(engine=engine) == [
        0,
        10,
        20,
        30,
        40,
    ]
    assert seen == [0, 1, 2, 3, 4]


def test_tap_errors_surface(engine: Engine) -> None:
    def check(x: int) -> None:
        if x == 2:
            raise ValueError("two")

    report = Flow.range(4).tap(check, errors="skip").run(engine=engine)
    assert report.delivered == 3
    assert report.stages["tap"].errored == 1
    with pytest.raises(ValueError, match="two"):
        Flow.range(4).tap(check).to_list(engine=engine)


# --- Flow.timer and Flow.interval -------------------------------------------------------------


def test_timer_and_interval_sources(engine: Engine) -> None:
    stamps: list[float] = []
    if _virtual(engine):
        with virtual_time():
            assert Flow.timer(2.5).to_list(engine=engine) == [0]
            got = (
                Flow.interval(0.5)
                .take(4)
                .tap(lambda _: stamps.append(now()))
                .to_list(engine=engine)
            )
        assert got == [0, 1, 2, 3]
        assert stamps == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=1e-6)
    else:
        started = time.monotonic()
        assert Flow.timer(0.03).to_list(engine=engine) == [0]
        assert Flow.interval(0.01).take(3).to_list(engine=engine) == [0, 1, 2]
        assert time.monotonic() - started >= (0.03 + 0.03) * 0.99


def test_interval_skips_ticks_a_slow_consumer_missed() -> None:
    async def main() -> list[tuple[int, float]]:
        ticks = TickSource(0.1, 0.1).open_async(None)  # type: ignore[arg-type]
        out = []
        for pause in (0.0, 0.25, 0.0, 0.0):
            await asyncio.sleep(pause)
            out.append((await anext(ticks), round(now(), 6)))
        await ticks.aclose()  # type: ignore[attr-defined]
        return out

    # 0 at 0.1; the reader comes back at 0.35: 1 at once, then the grid (0.4, 0.5)
    assert _on_virtual_loop(main()) == [(0, 0.1), (1, 0.35), (2, 0.4), (3, 0.5)]


T = TypeVar("T")


def _on_virtual_loop(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def test_interval_never_bunches_ticks_after_the_loop_was_busy() -> None:
    """Regression: a wake-up the loop delivered late (another task held it past two grid
    points) gave that tick and the next one at the same instant; now the late tick comes at
    once and the next one on the grid."""

    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        ticks = TickSource(0.1, 0.1).open_async(None)  # type: ignore[arg-type]
        out = [(await anext(ticks), round(now(), 6))]  # 0 at 0.1

        def busy() -> None:  # a task holding the loop from 0.15 to 0.47 (virtual)
            loop.advance(0.32)

        loop.call_at(0.15, busy)
        for _ in range(3):
            out.append((await anext(ticks), round(now(), 6)))
        await ticks.aclose()  # type: ignore[attr-defined]
        return out

    assert _on_virtual_loop(main()) == [(0, 0.1), (1, 0.47), (2, 0.5), (3, 0.6)]


def test_timer_sources_refuse_bad_durations() -> None:
    with pytest.raises(ValueError, match="interval"):
        Flow.interval(0)
    with pytest.raises(ValueError, match="timer"):
        Flow.timer(-1)
    assert Flow.timer(0).stage_names == ("timer",)


def test_parallel_copies_with_timers_do_not_stall(engine: Engine) -> None:
    """A copy's cancelled timer is never called back: counted as work, it left the copy busy
    forever and the stage stalled."""
    flow = Flow.range(10).parallel(2, stage().chunk(2, within=5))
    with clock_for(engine):
        got = flow.to_list(engine=engine)
    assert sorted(_flatten(got)) == list(range(10))
    assert all(1 <= len(g) <= 2 for g in got)


def test_an_observed_stage_gets_its_timers(engine: Engine) -> None:
    """An observed run wraps the logic in a stopwatch, which must pass on_timer through."""
    gap = 1.0 if _virtual(engine) else 0.3
    within = 0.5 if _virtual(engine) else 0.02
    source = Flow.from_async_iterable(_bursts([0, 1], [2], gap=gap))
    with clock_for(engine):
        report = source.chunk(5, within=within).observe("batch").run(engine=engine)
    assert report.stages["batch"].emitted == 2  # [0, 1] closed on time, then [2]
    assert report.stages["batch"].busy_seconds is not None
