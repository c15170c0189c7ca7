"""The Prometheus and OpenTelemetry exporters: real registries and readers, same schema."""

from __future__ import annotations

import pytest

from rxpipe import Flow, Metrics
from rxpipe.engines import Engine

prom = pytest.importorskip("prometheus_client")
parser = pytest.importorskip("prometheus_client.parser")

LABELS = {"rxpipe_pipeline_name", "rxpipe_stage_name", "rxpipe_stage_kind", "rxpipe_engine"}


def _parse(x: int) -> int:
    if x % 10 == 0:
        raise ValueError(x)
    return x


def _flow(metrics: Metrics) -> Flow[int]:
    return (
        Flow.range(50)
        .observe("numbers", metrics)
        .map(_parse, errors="skip")
        .observe("parse", metrics)
        .filter(lambda x: x % 2 == 1)
        .observe("odd", metrics)
    )


def test_prometheus_text_exposition(engine: Engine) -> None:
    from rxpipe.telemetry.prometheus import PrometheusMetrics

    registry = prom.CollectorRegistry()
    metrics = PrometheusMetrics(registry, pipeline="demo")
    assert isinstance(metrics, Metrics)
    report = _flow(metrics).run(engine=engine)
    text = prom.generate_latest(registry).decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            if s.name.startswith("rxpipe_") and not s.name.endswith("_created"):
                assert set(s.labels) >= LABELS, s

    def value(name: str, stage: str, **extra: str) -> float:
        for (n, labels), v in samples.items():
            d = dict(labels)
            if n == name and d["rxpipe_stage_name"] == stage and extra.items() <= d.items():
                assert d["rxpipe_pipeline_name"] == "demo"
                assert d["rxpipe_engine"] == engine.name
                return v
        raise AssertionError(f"no {name} for {stage} {extra} in\n{text}")

    assert value("rxpipe_stage_received_items_total", "parse") == 50
    assert value("rxpipe_stage_emitted_items_total", "parse") == 45
    assert value("rxpipe_stage_emitted_items_total", "numbers") == 50
    assert value("rxpipe_stage_errors_total", "parse", error_type="ValueError") == 5
    filtered = value("rxpipe_stage_dropped_items_total", "odd", rxpipe_drop_reason="filtered")
    assert filtered == report.stages["odd"].filtered
    assert value("rxpipe_stage_duration_seconds_count", "parse") == 50
    assert value("rxpipe_stage_duration_seconds_bucket", "parse", le="+Inf") == 50
    assert value("rxpipe_stage_duration_seconds_bucket", "parse", le="5e-05") >= 0
    assert value("rxpipe_stage_received_items_total", "odd", rxpipe_stage_kind="filter") == 45


def test_otel_in_memory_reader(engine: Engine) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from rxpipe.telemetry.otel import OpenTelemetryMetrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        metrics = OpenTelemetryMetrics(provider, pipeline="demo")
        _flow(metrics).run(engine=engine)
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    points: dict[str, list[tuple[dict[str, object], object]]] = {}
    units = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "rxpipe"
            for m in sm.metrics:
                units[m.name] = m.unit
                for p in m.data.data_points:
                    points.setdefault(m.name, []).append((dict(p.attributes), p))

    def find(name: str, stage: str, **extra: str) -> object:
        for attrs, p in points[name]:
            if attrs["rxpipe.stage.name"] == stage and extra.items() <= attrs.items():
                assert attrs["rxpipe.pipeline.name"] == "demo"
                assert attrs["rxpipe.engine"] == engine.name
                return p
        raise AssertionError(f"no {name} for {stage} {extra}: {points.get(name)}")

    assert find("rxpipe.stage.received.items", "parse").value == 50  # type: ignore[attr-defined]
    assert find("rxpipe.stage.emitted.items", "numbers").value == 50  # type: ignore[attr-defined]
    errors = find("rxpipe.stage.errors", "parse", **{"error.type": "ValueError"})
    assert errors.value == 5  # type: ignore[attr-defined]
    histogram = find("rxpipe.stage.duration", "parse")
    assert histogram.count == 50  # type: ignore[attr-defined]
    assert list(histogram.explicit_bounds)[:2] == [5e-5, 1e-4]  # type: ignore[attr-defined]
    assert units["rxpipe.stage.duration"] == "s"
    assert units["rxpipe.stage.received.items"] == "{item}"
