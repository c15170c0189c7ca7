"""Smoke test of the RxPY bridge workload on a tiny size: every contender runs and is
accounted for; RxPY alone holds the backlog, the bridge holds its buffer (no timing asserted)."""

from __future__ import annotations

import pytest

pytest.importorskip("reactivex")

from comparisons import workloads
from comparisons.workloads import rx_bridge

pytestmark = pytest.mark.timeout(60)


def test_rx_bridge_is_registered() -> None:
    assert workloads.load("rx_bridge").name == "rx_bridge"


def test_rx_bridge_rows_show_unbounded_against_bounded_memory() -> None:
    items, buffer = 120, 4
    m = rx_bridge.measure_bridge(items, size=64 * 1024, pause=0.0005, buffer=buffer)
    alone = m["RxPY alone"]
    assert (alone.delivered, alone.dropped) == (items, 0)
    # the backlog: nothing slowed the producer, so most of the stream waited in memory
    assert alone.peak_bytes > items // 2 * m.item_bytes
    lossless = m["rxpipe, BACKPRESSURE"]
    assert (lossless.delivered, lossless.dropped, lossless.lost) == (items, 0, 0)
    for r in (lossless, m["rxpipe, DROP_NEWEST"], m["rxpipe, DROP_OLDEST"]):
        # the buffer, one item waiting in the producer, the consumer's, and some slack
        assert r.peak_bytes < (buffer + 4) * m.item_bytes, r
        assert r.delivered + r.dropped + r.lost == items
    table = rx_bridge.render(m)
    assert table.startswith("## ")
    for r in m.results:
        assert any(line.startswith(f"| {r.name} |") for line in table.splitlines())
