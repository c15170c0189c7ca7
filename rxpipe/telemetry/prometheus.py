"""A :class:`~rxpipe.Metrics` exporter to ``prometheus_client``
(``pip install 'rxpipe[prometheus]'``).

Series (labels ``rxpipe_pipeline_name``, ``rxpipe_stage_name``, ``rxpipe_stage_kind``,
``rxpipe_engine``)::

    rxpipe_stage_received_items_total, rxpipe_stage_emitted_items_total
    rxpipe_stage_dropped_items_total{rxpipe_drop_reason=filtered|queue_full|cancelled}
    rxpipe_stage_errors_total{error_type=<exception class>}
    rxpipe_stage_duration_seconds (histogram, 50 us to 10 s)
    rxpipe_stage_queue_size, rxpipe_stage_queue_capacity, rxpipe_stage_demand (gauges)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

from rxpipe._core.telemetry import StageLabels
from rxpipe.telemetry._schema import BUCKETS, PROMETHEUS_LABELS

__all__ = ("PrometheusMetrics",)


@final
class PrometheusMetrics:
    """Registers rxpipe's series in ``registry`` (the default registry if None) and feeds
    them from every stage observed with ``observe(name, metrics=this)``.

    One instance per registry (Prometheus refuses a series registered twice); share it
    between flows, and tell pipelines apart with ``pipeline``.

    Raises:
        ImportError: ``prometheus_client`` is not installed.
    """

    def __init__(self, registry: Any = None, *, pipeline: str = "default") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "PrometheusMetrics needs prometheus_client: pip install 'rxpipe[prometheus]'"
            ) from exc
        if registry is None:
            registry = prom.REGISTRY
        self.pipeline = pipeline
        labels = PROMETHEUS_LABELS
        kw: dict[str, Any] = {"registry": registry}
        self._received = prom.Counter(
            "rxpipe_stage_received_items", "Items that entered a stage.", labels, **kw
        )
        self._emitted = prom.Counter(
            "rxpipe_stage_emitted_items", "Items a stage sent downstream.", labels, **kw
        )
        self._dropped = prom.Counter(
            "rxpipe_stage_dropped_items",
            "Items a stage did not pass on, by reason.",
            (*labels, "rxpipe_drop_reason"),
            **kw,
        )
        self._errors = prom.Counter(
            "rxpipe_stage_errors",
            "Errors raised by a stage's function.",
            (*labels, "error_type"),
            **kw,
        )
        self._duration = prom.Histogram(
            "rxpipe_stage_duration_seconds",
            "Per-item processing time of a stage.",
            labels,
            buckets=BUCKETS,
            **kw,
        )
        self._queue = prom.Gauge(
            "rxpipe_stage_queue_size", "Items waiting in a stage's input queue.", labels, **kw
        )
        self._capacity = prom.Gauge(
            "rxpipe_stage_queue_capacity", "The capacity of a stage's input queue.", labels, **kw
        )
        self._demand = prom.Gauge(
            "rxpipe_stage_demand", "Items requested from a stage, not yet delivered.", labels, **kw
        )

    def _labels(self, stage: StageLabels) -> tuple[str, str, str, str]:
        return (self.pipeline, stage.name, stage.kind, stage.engine)

    def add_items(self, stage: StageLabels, *, received: int, emitted: int) -> None:
        labels = self._labels(stage)
        if received:
            self._received.labels(*labels).inc(received)
        if emitted:
            self._emitted.labels(*labels).inc(emitted)

    def add_dropped(self, stage: StageLabels, reason: str, count: int) -> None:
        self._dropped.labels(*self._labels(stage), reason).inc(count)

    def add_errors(self, stage: StageLabels, error_type: str, count: int) -> None:
        self._errors.labels(*self._labels(stage), error_type).inc(count)

    def observe_durations(self, stage: StageLabels, seconds: Sequence[float]) -> None:
        histogram = self._duration.labels(*self._labels(stage))
        for s in seconds:
            histogram.observe(s)

    def set_queue(self, stage: StageLabels, size: int, capacity: int) -> None:
        labels = self._labels(stage)
        self._queue.labels(*labels).set(size)
        self._capacity.labels(*labels).set(capacity)

    def set_demand(self, stage: StageLabels, outstanding: int) -> None:
        self._demand.labels(*self._labels(stage)).set(outstanding)
