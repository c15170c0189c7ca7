"""The production failure modes of the Go pipelines guide, each reproduced on every engine,
with rxpipe's answer (docs/failure-modes.md shows the same cases)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

import rxpipe
from rxpipe import Flow, Overflow, Stage, StageLogic
from rxpipe.engines.base import Engine
from rxpipe.engines.push.engine import PushEngine
from tests.accounting import assert_accounted

pytestmark = pytest.mark.timeout(60)


class Big:
    """A large item whose instances can be counted while they are alive."""

    alive: ClassVar[weakref.WeakSet[Big]] = weakref.WeakSet()

    def __init__(self, n: int) -> None:
        self.n = n
        self.payload = bytearray(10_000)
        Big.alive.add(self)


def test_a_slow_stage_behind_a_large_buffer_holds_bounded_memory(engine: Engine) -> None:
    """A fast producer, a slow consumer and a buffer: memory stays within the buffer, never
    grows with the stream (the producer is held back), and the depth is visible in the
    counters: what the source emitted minus what was delivered."""
    Big.alive = weakref.WeakSet()
    peak = 0

    def slow(item: Big) -> int:
        nonlocal peak
        peak = max(peak, len(Big.alive))
        time.sleep(0.0005)
        return item.n

    flow = Flow.range(400).map(Big).buffer(32).map(slow)
    report = flow.run(engine=engine)
    assert report.delivered == 400
    bound = engine.in_flight_bound(flow.plan) if isinstance(engine, PushEngine) else 32 + 4
    assert peak <= bound, (peak, bound)
    assert peak < 400 / 4  # nothing like the whole stream


@pytest.mark.parametrize("where", ["map", "map_async", "parallel"])
def test_a_stage_that_raises_ends_everything_and_joins_everything(
    engine: Engine, where: str
) -> None:
    """The first error cancels every stage; the terminal raises the original exception with
    the stage's name; every task and thread is joined (the autouse leak check), including an
    executor's work."""

    class Boom(Exception):
        pass

    def fail_at_57(x: int) -> int:
        if x == 57:
            raise Boom(x)
        return x

    async def afail_at_57(x: int) -> int:
        await asyncio.sleep(0)
        return fail_at_57(x)

    flow = Flow.from_iterable(itertools.count()).map(lambda x: x)
    with ThreadPoolExecutor(4) as executor:
        if where == "map":
            flow = flow.map(fail_at_57, name="parse")
        elif where == "map_async":
            flow = flow.map_async(afail_at_57, concurrency=8, name="parse")
        else:
            flow = flow.parallel(3, rxpipe.stage().map(fail_at_57, name="parse"), executor=executor)
        with pytest.raises(Boom) as caught:
            flow.run(engine=engine)
    assert "parse" in " ".join(getattr(caught.value, "__notes__", []))


def test_cancel_mid_stream_counts_what_was_lost(engine: Engine) -> None:
    """Never silent: every item the source produced is delivered or counted."""

    started: list[int] = []

    async def slow(x: int) -> int:
        started.append(x)
        await asyncio.sleep(0.002)
        return x

    pipeline = (
        Flow.from_iterable(itertools.count()).map_async(slow, concurrency=8).start(engine=engine)
    )
    # mid-stream: calls keep running (a fixed sleep may end before the run read anything,
    # and a run stopped before its first read has lost nothing)
    deadline = time.monotonic() + 10
    while len(started) < 20:
        assert time.monotonic() < deadline, "the calls did not start"
        time.sleep(0.001)
    report = pipeline.cancel()
    assert report.lost >= 1
    assert_accounted(report)


@dataclasses.dataclass(frozen=True)
class _Forgetful(Stage[Any, Any]):
    """A user stage whose logic swallows its upstream's failure (overrides the default that
    forwards it) and never completes: the mistake the Go guide warns about."""

    def create_logic(self, ports: Any) -> StageLogic[Any, Any]:
        return _ForgetfulLogic(ports)


class _ForgetfulLogic(StageLogic[Any, Any]):
    def on_push(self) -> None:
        self.ports.push(self.ports.grab())

    def on_pull(self) -> None:
        self.ports.pull()

    def on_upstream_failure(self, error: BaseException) -> None:
        pass  # forgets to forward it


class _StageError(Exception):
    pass


def _raise_at_3(x: int) -> int:
    if x == 3:
        raise _StageError(x)
    return x


def test_an_error_cannot_be_forgotten(engine: Engine) -> None:
    """A user function's exception is caught by the kernel, not by the stage, so no stage can
    forget to forward it; a logic that swallows a failure signal and does nothing else breaks
    the port protocol, which is detected: an error, never a hang."""
    with pytest.raises(_StageError):  # a plain stage: the kernel forwards it, always
        Flow.range(10).map(_raise_at_3).map(str).to_list(engine=engine)
    with pytest.raises(RuntimeError, match="port protocol"):
        Flow.range(10).map(_raise_at_3).via(_Forgetful()).to_list(engine=engine)


def test_cycles_cannot_be_built() -> None:
    """A Flow is immutable and each method returns a new one, so a stage can only be attached
    after what already exists: there is no handle on a later stage to feed back into. A flow
    (with its source) is not a Stage, so it cannot be spliced into itself either."""
    flow = Flow.range(3).map(lambda x: x)
    longer = flow.map(lambda x: x + 1)
    assert flow.stage_names == ("range", "map")  # unchanged by what was built on it
    assert longer.stage_names == ("range", "map", "map#2")
    with pytest.raises(TypeError, match="Stage"):
        flow.via(longer)  # type: ignore[arg-type]


@pytest.mark.parametrize("overflow", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST, Overflow.FAIL])
def test_an_unkillable_producer_is_answered_by_the_queue_policy(
    engine: Engine, overflow: Overflow
) -> None:
    """A producer that cannot wait (a callback) offers faster than the flow consumes: the
    queue's policy answers at once, and every rejected or dropped item is counted."""
    flow, handle = Flow.queue(8, overflow)
    got: list[int] = []

    def slow(x: int) -> int:
        time.sleep(0.001)
        return x

    pipeline = flow.map(slow).start(engine=engine, on_item=got.append)
    accepted = rejected = 0

    def producer() -> None:
        nonlocal accepted, rejected
        for i in range(300):
            if handle.offer(i):
                accepted += 1
            else:
                rejected += 1
        handle.close()

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    try:
        report = pipeline.join(timeout=30)
    except rxpipe.MissingBackpressureError:
        assert overflow is Overflow.FAIL
        report = pipeline.cancel()
    queue = report.stages["queue"]
    assert accepted + rejected == 300
    assert queue.dropped == handle.dropped >= 1
    if overflow is Overflow.DROP_OLDEST:
        assert rejected == 0  # offer says True, and the oldest item is dropped instead
        assert report.delivered + queue.dropped + report.lost == 300
    else:
        assert queue.dropped == rejected
        assert report.delivered + report.lost == accepted
    assert got == sorted(got)  # what went through kept its order
