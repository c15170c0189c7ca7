"""merge and concat on every engine: interleaving, order, fail-fast, cancellation, memory."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxpipe import Flow, Overflow
from rxpipe.engines import Engine
from rxpipe.engines.pull.engine import PullEngine
from rxpipe.stages.fan_in import MERGE_AHEAD
from tests.helpers import read_ahead


class Tracked:
    """An async input that counts what it produced and notes when it was closed."""

    def __init__(self, name: str, n: int | None = None, delay: float = 0.001) -> None:
        self.name = name
        self.n = n
        self.delay = delay
        self.produced = 0
        self.started = False
        self.closed = False

    async def items(self) -> AsyncIterator[tuple[str, int]]:
        self.started = True
        try:
            for i in itertools.count() if self.n is None else range(self.n):
                await asyncio.sleep(self.delay)
                self.produced += 1
                yield (self.name, i)
        finally:
            self.closed = True

    def flow(self) -> Flow[tuple[str, int]]:
        return Flow.from_async_iterable(self.items())


# -- merge ---------------------------------------------------------------------------------------


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=10, deadline=None
)
@given(st.lists(st.lists(st.floats(0, 0.002), max_size=8), max_size=4))
def test_merge_keeps_every_item_and_each_inputs_order(
    engine: Engine, delays: list[list[float]]
) -> None:
    def make(k: int) -> Flow[tuple[int, int]]:
        async def items() -> AsyncIterator[tuple[int, int]]:
            for i, d in enumerate(delays[k]):
                await asyncio.sleep(d)
                yield (k, i)

        return Flow.from_async_iterable(items())

    out = Flow.merge(*(make(k) for k in range(len(delays)))).to_list(engine=engine)
    expected = [(k, i) for k, ds in enumerate(delays) for i in range(len(ds))]
    assert Counter(out) == Counter(expected)
    for k in range(len(delays)):
        assert [i for j, i in out if j == k] == list(range(len(delays[k])))


@pytest.mark.timeout(30)
def test_merge_interleaves_items_as_they_come(engine: Engine) -> None:
    """a and b take turns: each waits until the merge took the other's last item."""
    a_taken = asyncio.Event()
    b_taken = asyncio.Event()

    async def a() -> AsyncIterator[str]:
        for i in range(3):
            b_taken.clear()
            yield f"a{i}"
            a_taken.set()  # resumed: the merge took a{i} and asks for the next one
            if i < 2:
                await b_taken.wait()

    async def b() -> AsyncIterator[str]:
        for i in range(2):
            await a_taken.wait()
            a_taken.clear()
            yield f"b{i}"
            b_taken.set()

    flow = Flow.merge(Flow.from_async_iterable(a()), Flow.from_async_iterable(b()))
    assert flow.to_list(engine=engine) == ["a0", "b0", "a1", "b1", "a2"]


def test_merge_of_sync_and_async_flows_with_stages(engine: Engine) -> None:
    flow = Flow.merge(
        Flow.range(50).map(lambda x: x * 2).filter(lambda x: x % 4 == 0),
        Tracked("t", 5).flow(),
        Flow.of("x", None, "z"),
    )
    out = flow.to_list(engine=engine)
    assert [x for x in out if isinstance(x, int)] == list(range(0, 100, 4))
    assert [x for x in out if isinstance(x, tuple)] == [("t", i) for i in range(5)]
    assert [x for x in out if x is None or isinstance(x, str)] == ["x", None, "z"]
    assert flow.plan.is_async


def test_merge_of_nothing_is_empty(engine: Engine) -> None:
    assert Flow.merge().to_list(engine=engine) == []
    assert Flow.merge(Flow.of(), Flow.of()).to_list(engine=engine) == []


def test_merge_and_concat_reject_non_flows_when_built() -> None:
    with pytest.raises(TypeError, match=r"merge\(\) takes Flows; argument 1 is list"):
        Flow.merge(Flow.of(1), [2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"concat\(\) takes Flows; argument 0 is range"):
        Flow.concat(range(3))  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_merge_fails_fast_with_the_original_error_and_cancels_the_others(engine: Engine) -> None:
    raised: list[Exception] = []
    others = [Tracked("slow"), Tracked("slower", delay=0.005)]  # endless

    async def failing() -> AsyncIterator[tuple[str, int]]:
        yield ("bad", 0)
        await asyncio.sleep(0.01)
        error = ValueError("boom")
        raised.append(error)
        raise error

    flow = Flow.merge(
        others[0].flow(), Flow.from_async_iterable(failing()), others[1].flow().map(lambda x: x)
    )
    with pytest.raises(ValueError, match="boom") as info:
        flow.to_list(engine=engine)
    assert info.value is raised[0]
    assert all(t.closed for t in others)  # cancelled, and finished before the terminal raised


@pytest.mark.timeout(30)
def test_merge_fails_fast_when_a_stage_of_an_input_raises(engine: Engine) -> None:
    def boom(x: int) -> int:
        if x == 3:
            raise KeyError(x)
        return x

    endless = Tracked("endless")
    flow = Flow.merge(endless.flow(), Flow.range(10).map(boom, name="boom"))
    with pytest.raises(KeyError) as info:
        flow.run(engine=engine)
    assert "rxpipe: raised in stage 'boom'" in info.value.__notes__
    assert endless.closed


@pytest.mark.timeout(30)
def test_cancelling_the_merged_flow_cancels_every_input(engine: Engine) -> None:
    inputs = [Tracked(f"t{k}", delay=0.001 * (k + 1)) for k in range(3)]
    out = Flow.merge(*(t.flow() for t in inputs)).take(10).to_list(engine=engine)
    assert len(out) == 10
    assert all(t.closed for t in inputs)
    first = [Tracked("a"), Tracked("b")]
    assert Flow.merge(*(t.flow() for t in first)).first(engine=engine)[1] == 0
    assert all(t.closed for t in first)


def _task_name(x: int) -> str | None:
    """The name of the asyncio task a stage runs in (``None`` outside an event loop)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return None if task is None else task.get_name()


@pytest.mark.timeout(30)
def test_merge_and_concat_run_their_inputs_on_the_runs_engine(engine: Engine) -> None:
    """The pull engine fuses an input's sync stages into the merge's reading task (and a sync
    concat into the caller's loop-less thread); the push engine gives each its own task."""
    merged = Flow.merge(Flow.range(3).map(_task_name), Flow.range(3).map(_task_name))
    concatenated = Flow.concat(Flow.range(3).map(_task_name), Flow.range(3).map(_task_name))
    merge_tasks = set(merged.to_list(engine=engine))
    concat_tasks = set(concatenated.to_list(engine=engine))
    if isinstance(engine, PullEngine):
        assert merge_tasks == {"rxpipe-merge-0", "rxpipe-merge-1"}
        assert concat_tasks == {None}
    else:
        assert not merge_tasks & {"rxpipe-merge-0", "rxpipe-merge-1", None}
        assert None not in concat_tasks


@pytest.mark.timeout(30)
def test_merge_memory_is_bounded_per_input(engine: Engine) -> None:
    """No input runs more than MERGE_AHEAD items (+ the engine's read-ahead, of the merged
    run and of the input's own run) ahead."""
    produced = [0, 0, 0]

    def counting(k: int) -> Iterator[tuple[int, int]]:
        for i in range(300):
            produced[k] += 1
            yield (k, i)

    inputs = [Flow.from_iterable(counting(k)) for k in range(3)]
    flow = Flow.merge(*inputs)
    # + the item being handed over; each input runs on the engine too, with its own read-ahead
    slack = MERGE_AHEAD + 1 + read_ahead(engine, flow) + read_ahead(engine, inputs[0])
    delivered = [0, 0, 0]
    worst = 0

    def consume(item: tuple[int, int]) -> None:
        nonlocal worst
        delivered[item[0]] += 1
        worst = max(worst, *(p - d for p, d in zip(produced, delivered, strict=True)))

    flow.foreach(consume, engine=engine)
    assert delivered == [300, 300, 300]
    assert worst <= slack


@pytest.mark.timeout(30)
def test_merge_of_queues_fed_from_threads(engine: Engine) -> None:
    import threading

    (fa, ha), (fb, hb) = Flow.queue(4, Overflow.DROP_NEWEST), Flow.queue(4, Overflow.DROP_NEWEST)

    def produce(handle: Any, tag: str) -> None:
        for i in range(30):
            while not handle.offer((tag, i)):  # False: full, try again shortly
                threading.Event().wait(0.0005)
        handle.close()

    threads = [threading.Thread(target=produce, args=(h, t)) for h, t in ((ha, "a"), (hb, "b"))]
    for t in threads:
        t.start()
    try:
        out = Flow.merge(fa, fb).to_list(engine=engine)
    finally:
        for t in threads:
            t.join()
    assert [i for tag, i in out if tag == "a"] == list(range(30))
    assert [i for tag, i in out if tag == "b"] == list(range(30))


@pytest.mark.timeout(30)
def test_stopping_a_merge_of_quiet_queues_does_not_wait_for_them(engine: Engine) -> None:
    (fa, ha), (fb, hb) = Flow.queue(4, Overflow.DROP_NEWEST), Flow.queue(4, Overflow.DROP_NEWEST)
    assert ha.offer(1)
    assert hb.offer(2)
    # neither queue is closed: the run must still end once take(2) is satisfied
    assert sorted(Flow.merge(fa, fb).take(2).to_list(engine=engine)) == [1, 2]
    assert ha.closed
    assert hb.closed
    assert not ha.offer(3)


# -- concat --------------------------------------------------------------------------------------


def test_concat_emits_each_flow_in_turn(engine: Engine) -> None:
    flow = Flow.concat(Flow.range(3), Flow.of("a", None), Flow.of(), Flow.range(3).map(str))
    assert flow.to_list(engine=engine) == [0, 1, 2, "a", None, "0", "1", "2"]
    assert Flow.concat().to_list(engine=engine) == []


def test_concat_is_sync_unless_an_input_is_async() -> None:
    assert not Flow.concat(Flow.range(3), Flow.of(1)).plan.is_async
    assert Flow.concat(Flow.range(3), Tracked("t", 2).flow()).plan.is_async
    assert Flow.concat(Flow.range(2), Flow.range(2).buffer(2)).to_list() == [0, 1, 0, 1]


def test_concat_runs_an_input_only_after_the_previous_completed(engine: Engine) -> None:
    log: list[str] = []

    def items(name: str) -> Iterator[str]:
        log.append(f"start {name}")
        try:
            for i in range(2):
                yield f"{name}{i}"
        finally:
            log.append(f"end {name}")

    a = Tracked("c", 2)
    flow = Flow.concat(
        Flow.from_iterable(items("a")),
        a.flow().map(lambda x: f"c{x[1]}"),
        Flow.from_iterable(items("b")),
    )
    assert flow.to_list(engine=engine) == ["a0", "a1", "c0", "c1", "b0", "b1"]
    assert log == ["start a", "end a", "start b", "end b"]
    assert a.closed


@pytest.mark.timeout(30)
def test_concat_cancel_and_error_stop_the_later_inputs(engine: Engine) -> None:
    later = Tracked("later", 3)
    flow = Flow.concat(Flow.range(5), later.flow()).take(3)
    assert flow.to_list(engine=engine) == [0, 1, 2]
    if read_ahead(engine, flow) == 0:  # a push engine's source may run ahead into `later`
        assert not later.started
    assert later.closed or not later.started

    running = Tracked("running")  # endless: only the cancel can end it
    out2 = Flow.concat(Flow.of("x"), running.flow()).take(3).to_list(engine=engine)
    assert out2 == ["x", ("running", 0), ("running", 1)]
    assert running.closed

    never = Tracked("never", 3)
    failing = Flow.of(1, 0).map(lambda x: 1 // x, name="div")
    with pytest.raises(ZeroDivisionError) as info:
        Flow.concat(Flow.of(7), failing, never.flow()).to_list(engine=engine)
    assert "rxpipe: raised in stage 'div'" in info.value.__notes__
    assert not never.started
