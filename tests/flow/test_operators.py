"""Each operator's edge cases, on every engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rxpipe import Flow
from rxpipe.engines import Engine
from tests.helpers import assert_pulled, read_ahead


class Tracked:
    """A source that records how far it was pulled and whether it was closed (cancelled)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0
        self.closed = False

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.pulled += 1
                yield i
        finally:
            self.closed = True


def test_take_cancels_upstream_after_n(engine: Engine) -> None:
    src = Tracked(1000)
    flow = Flow.from_iterable(src).take(3)
    assert flow.to_list(engine=engine) == [0, 1, 2]
    assert_pulled(engine, flow, src.pulled, 3)  # the pull engine never pulls the fourth
    assert src.closed


def test_take_zero_pulls_nothing(engine: Engine) -> None:
    src = Tracked(10)
    flow = Flow.from_iterable(src).map(lambda x: 1 / 0).take(0)
    assert flow.to_list(engine=engine) == []
    assert_pulled(engine, flow, src.pulled, 0)


def test_take_more_than_available_completes(engine: Engine) -> None:
    assert Flow.range(3).take(10).to_list(engine=engine) == [0, 1, 2]


def test_take_then_flat_map_expands_the_last_item(engine: Engine) -> None:
    flow = Flow.range(5).take(2).flat_map(lambda x: [x] * 3)
    assert flow.to_list(engine=engine) == [0, 0, 0, 1, 1, 1]


def test_flat_map_then_take_stops_inside_an_iterable(engine: Engine) -> None:
    src = Tracked(100)
    flow = Flow.from_iterable(src).flat_map(lambda x: [x] * 3).take(4)
    assert flow.to_list(engine=engine) == [0, 0, 0, 1]
    assert_pulled(engine, flow, src.pulled, 2)


def test_flat_map_is_lazy_per_request(engine: Engine) -> None:
    produced: list[int] = []

    def gen(x: int) -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    flow = Flow.of(1).flat_map(gen).take(2)
    assert flow.to_list(engine=engine) == [0, 1]
    assert_pulled(engine, flow, len(produced), 2)


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        (Flow.of().map(lambda x: x), []),
        (Flow.of().filter(bool), []),
        (Flow.of().take(3), []),
        (Flow.of().skip(3), []),
        (Flow.of().take_while(bool), []),
        (Flow.of().chunk(2), []),
        (Flow.of().scan(lambda a, x: a + x, 0), [0]),
        (Flow.of().flat_map(lambda x: [x]), []),
    ],
)
def test_operators_on_empty_flow(engine: Engine, flow: Flow[object], expected: list[int]) -> None:
    assert flow.to_list(engine=engine) == expected


def test_none_is_a_valid_element(engine: Engine) -> None:
    flow = Flow.of(None, 1, None).map(lambda x: x).filter(lambda x: True).chunk(2)
    assert flow.to_list(engine=engine) == [[None, 1], [None]]


def test_skip_drops_the_first_n_and_counts_them_filtered(engine: Engine) -> None:
    report = Flow.range(5).skip(2).run(engine=engine)
    assert report.stages["skip"].filtered == 2
    assert report.delivered == 3


def test_take_while_stops_at_first_false_and_cancels(engine: Engine) -> None:
    src = Tracked(100)
    flow = Flow.from_iterable(src).take_while(lambda x: x < 3)
    assert flow.to_list(engine=engine) == [0, 1, 2]
    assert_pulled(engine, flow, src.pulled, 4)
    assert src.closed


def test_scan_emits_initial_first(engine: Engine) -> None:
    flow = Flow.of(1, 2, 3).scan(lambda acc, x: [*acc, x], [])
    assert flow.to_list(engine=engine) == [[], [1], [1, 2], [1, 2, 3]]


def test_chunk_emits_last_partial_list(engine: Engine) -> None:
    assert Flow.range(5).chunk(2).to_list(engine=engine) == [[0, 1], [2, 3], [4]]


def test_error_mid_stream_reaches_caller_with_stage_name(engine: Engine) -> None:
    src = Tracked(100)

    def boom(x: int) -> int:
        if x == 5:
            raise ZeroDivisionError("boom")
        return x

    flow = Flow.from_iterable(src).map(lambda x: x).map(boom, name="risky").take(50)
    with pytest.raises(ZeroDivisionError, match="boom") as info:
        flow.to_list(engine=engine)
    assert "rxpipe: raised in stage 'risky'" in info.value.__notes__
    assert src.closed  # the source was cancelled
    assert_pulled(engine, flow, src.pulled, 6)


def test_source_error_is_named_after_the_source(engine: Engine) -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone") as info:
        Flow.from_iterable(broken()).map(lambda x: x).to_list(engine=engine)
    assert "rxpipe: raised in stage 'from_iterable'" in info.value.__notes__


def test_cancel_mid_stream_by_leaving_the_loop(engine: Engine) -> None:
    src = Tracked(1000)
    flow = Flow.from_iterable(src).map(lambda x: x * 2)
    run = engine.open(flow.plan)
    got = []
    for x in run:
        got.append(x)
        if len(got) == 3:
            break
    run.close()
    assert got == [0, 2, 4]
    assert src.closed
    assert_pulled(engine, flow, src.pulled, 3)
    report = run.report()
    assert report.delivered == 3
    assert report.stages["from_iterable"].emitted == 3 + report.lost


def test_cancel_mid_stream_accounts_for_every_item(engine: Engine) -> None:
    flow = Flow.range(10).chunk(4).map(len)
    run = engine.open(flow.plan)
    it = iter(run)
    assert next(it) == 4
    run.close()
    report = run.report()
    assert report.delivered == 1
    chunk = report.stages["chunk"]
    if read_ahead(engine, flow) == 0:
        # the next chunk was not started: demand is one at a time
        assert chunk.received == 4
        assert report.lost == 0
    else:
        # push engines ran ahead: what they held when stopped is counted, per stage, in its
        # own unit (a lost chunk is one lost item at the stages after chunk)
        ahead = report.stages["range"].emitted - 4
        assert ahead == 0 or report.lost > 0


def test_one_at_a_time_demand_pulls_one_item_per_request(engine: Engine) -> None:
    if read_ahead(engine, Flow.of()):
        pytest.skip("demand of one is the pull engine's contract; push engines run ahead")
    src = Tracked(100)
    it = iter(engine.open(Flow.from_iterable(src).map(lambda x: x).filter(lambda x: True).plan))
    assert next(it) == 0
    assert src.pulled == 1
    assert next(it) == 1
    assert src.pulled == 2


def test_flow_runs_twice(engine: Engine) -> None:
    flow = Flow.range(4).map(lambda x: x + 1)
    assert flow.to_list(engine=engine) == flow.to_list(engine=engine) == [1, 2, 3, 4]


def test_million_items_through_the_chain(engine: Engine) -> None:
    n = 10**6 if "fuse=True" in repr(engine) else 20_000
    assert Flow.range(n).map(lambda x: x + 1).count(engine=engine) == n
