"""Report fields that a run did not measure read ``None``, on every engine (issue 9, item 14):
without ``observe()`` nothing is timed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

import rxpipe
from rxpipe import Flow, Report
from rxpipe.engines import Engine
from rxpipe.errors import PipelineCancelledError
from rxpipe.telemetry.report import StageReport


async def _twice(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


FLOWS: dict[str, Callable[[], Flow[int]]] = {
    "sync": lambda: Flow.range(10).map(lambda x: x + 1).filter(lambda x: x % 2 == 0),
    "async": lambda: Flow.range(10).map_async(_twice, concurrency=2).buffer(2),
}


def _check_unmeasured(report: Report, engine: Engine, delivered: int) -> None:
    assert report.bottleneck is None
    assert report.suggested_buffers is None
    for stage in report.stages.values():
        assert stage.busy_seconds is None, stage
        assert stage.duration_quantiles is None, stage
    # what is measured is filled in
    assert report.engine == engine.name
    assert report.delivered == delivered
    assert isinstance(report.elapsed_seconds, float)
    assert report.elapsed_seconds > 0.0


@pytest.mark.parametrize("shape", sorted(FLOWS))
def test_unmeasured_fields_are_none_after_a_run(engine: Engine, shape: str) -> None:
    flow = FLOWS[shape]()
    expected = len(flow.to_list(engine=engine))
    _check_unmeasured(flow.run(engine=engine), engine, expected)
    _check_unmeasured(flow.foreach(lambda _: None, engine=engine), engine, expected)
    _check_unmeasured(asyncio.run(flow.run_async(engine=engine)), engine, expected)


def test_an_early_stop_also_reports_none(engine: Engine) -> None:
    run = engine.open(Flow.range(1_000).map(lambda x: x).plan)
    for _ in run:
        break
    run.close()
    report = run.report()
    assert report.lost + report.delivered <= 1_000
    assert report.bottleneck is None
    assert report.suggested_buffers is None
    assert all(s.busy_seconds is None for s in report.stages.values())


def test_defaults_and_types_say_none() -> None:
    stage = StageReport("s")
    assert stage.busy_seconds is None
    assert stage.duration_quantiles is None
    report = Report(stages={}, delivered=0, engine="e", elapsed_seconds=0.0)
    assert report.bottleneck is None
    assert report.suggested_buffers is None
    fields = {f.name: f.type for f in dataclasses.fields(StageReport)}
    assert "None" in str(fields["busy_seconds"])
    fields = {f.name: f.type for f in dataclasses.fields(Report)}
    assert "None" in str(fields["suggested_buffers"])
    for cls, name in ((StageReport, "busy_seconds"), (Report, "suggested_buffers")):
        doc = " ".join((cls.__doc__ or "").split())
        assert f"``{name}``" in doc, name
        assert "``None``" in doc, name
        assert "observe" in doc, name  # when they are measured


def test_pipeline_cancelled_error_says_who_raises_it() -> None:
    assert rxpipe.PipelineCancelledError is PipelineCancelledError
    doc = " ".join((PipelineCancelledError.__doc__ or "").split())
    assert "Pipeline.join()" in doc
    error = PipelineCancelledError("cancelled")
    assert error.report is None
    pipeline = rxpipe.Flow.from_iterable(iter(int, 1)).start()
    report = pipeline.cancel()
    with pytest.raises(PipelineCancelledError) as cancelled:
        pipeline.join()
    assert cancelled.value.report is report


def test_an_observed_run_of_no_item_names_no_bottleneck(engine: Engine) -> None:
    """Found by a new-user trial: an empty observed run named the source (its one read of
    the end took a few microseconds) on some engines and the map on others."""
    report = Flow.of().map(lambda x: x).observe("m").run(engine=engine)
    assert report.delivered == 0
    assert report.bottleneck is None
