"""The loss-accounting identity (API.md section 5), checked after every kind of ending.

For flows of one-to-one-or-fewer stages: every item the source emitted is in exactly one of
delivered / filtered / errored / dropped / lost, in total and per stage:

- in total: ``source.emitted == delivered + sum(filtered + errored + dropped + lost)``, the
  source's own ``lost`` included (an item it emitted that never reached the next stage);
- per stage: what a stage received it emitted, filtered, errored, dropped or lost.

A ``Flow.queue`` source also counts items it never emitted (rejected offers as ``dropped``,
accepted items still buffered when the run stopped as ``lost``): those are left out of both
sides.
"""

from __future__ import annotations

from rxpipe import Report, StageReport


def source_of(report: Report) -> StageReport:
    return next(iter(report.stages.values()))


def assert_accounted(report: Report, *, queue_unemitted_lost: int | None = None) -> None:
    stages = list(report.stages.values())
    source, rest = stages[0], stages[1:]
    if queue_unemitted_lost is None:
        queue_unemitted_lost = 0
    source_losses = source.lost - queue_unemitted_lost
    source_drops = 0 if source.name == "queue" else source.dropped
    accounted = report.delivered + source_losses + source_drops
    accounted += sum(s.filtered + s.errored + s.dropped + s.lost for s in rest)
    assert source.emitted == accounted, (source.emitted, accounted, report)
    # per stage: a stage received no more than was sent to it, and each item it received
    # it emitted, filtered, errored, dropped or lost (an item lost on its way out is counted
    # in both ``emitted`` and ``lost`` of the stage that sent it, hence the bounds)
    sent = source.emitted
    for s in rest:
        fated = s.emitted + s.filtered + s.errored + s.dropped
        assert s.received <= sent, (s, report)
        assert fated <= s.received <= fated + s.lost, (s, report)
        sent = s.emitted
