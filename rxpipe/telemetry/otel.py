"""A :class:`~rxpipe.Metrics` exporter to the OpenTelemetry metrics API
(``pip install 'rxpipe[otel]'``; the application installs the SDK and its exporters).

Instruments (attributes ``rxpipe.pipeline.name``, ``rxpipe.stage.name``,
``rxpipe.stage.kind``, ``rxpipe.engine``): counters ``rxpipe.stage.received.items`` and
``rxpipe.stage.emitted.items`` (``{item}``), ``rxpipe.stage.dropped.items`` (with
``rxpipe.drop.reason``), ``rxpipe.stage.errors`` (``{error}``, with ``error.type``); the
histogram ``rxpipe.stage.duration`` (``s``, buckets from 50 us to 10 s); gauges
``rxpipe.stage.queue.size``, ``rxpipe.stage.queue.capacity`` and ``rxpipe.stage.demand``.
Through the OpenTelemetry Prometheus exporter they become the series
:mod:`rxpipe.telemetry.prometheus` emits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

from rxpipe._core.telemetry import StageLabels
from rxpipe.telemetry._schema import BUCKETS, LABELS

__all__ = ("OpenTelemetryMetrics",)


@final
class OpenTelemetryMetrics:
    """Creates rxpipe's instruments on a meter of ``meter_provider`` (the global one if
    None) and feeds them from every stage observed with ``observe(name, metrics=this)``.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
    """

    def __init__(self, meter_provider: Any = None, *, pipeline: str = "default") -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "OpenTelemetryMetrics needs opentelemetry-api: pip install 'rxpipe[otel]'"
            ) from exc
        from importlib.metadata import PackageNotFoundError, version

        try:
            release: str | None = version("rxpipe")
        except PackageNotFoundError:  # pragma: no cover - running from a checkout
            release = None
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("rxpipe", release)
        self.pipeline = pipeline
        self._received = meter.create_counter(
            "rxpipe.stage.received.items", unit="{item}", description="Items that entered a stage"
        )
        self._emitted = meter.create_counter(
            "rxpipe.stage.emitted.items", unit="{item}", description="Items a stage sent on"
        )
        self._dropped = meter.create_counter(
            "rxpipe.stage.dropped.items", unit="{item}", description="Items a stage did not pass on"
        )
        self._errors = meter.create_counter(
            "rxpipe.stage.errors", unit="{error}", description="Errors raised by a stage's function"
        )
        self._duration = meter.create_histogram(
            "rxpipe.stage.duration",
            unit="s",
            description="Per-item processing time of a stage",
            explicit_bucket_boundaries_advisory=list(BUCKETS),
        )
        self._queue = meter.create_gauge(
            "rxpipe.stage.queue.size", unit="{item}", description="Items in a stage's input queue"
        )
        self._capacity = meter.create_gauge(
            "rxpipe.stage.queue.capacity", unit="{item}", description="Input queue capacity"
        )
        self._demand = meter.create_gauge(
            "rxpipe.stage.demand", unit="{item}", description="Items requested, not delivered"
        )

    def _attrs(self, stage: StageLabels) -> dict[str, str]:
        return dict(zip(LABELS, (self.pipeline, stage.name, stage.kind, stage.engine), strict=True))

    def add_items(self, stage: StageLabels, *, received: int, emitted: int) -> None:
        attrs = self._attrs(stage)
        if received:
            self._received.add(received, attrs)
        if emitted:
            self._emitted.add(emitted, attrs)

    def add_dropped(self, stage: StageLabels, reason: str, count: int) -> None:
        self._dropped.add(count, {**self._attrs(stage), "rxpipe.drop.reason": reason})

    def add_errors(self, stage: StageLabels, error_type: str, count: int) -> None:
        self._errors.add(count, {**self._attrs(stage), "error.type": error_type})

    def observe_durations(self, stage: StageLabels, seconds: Sequence[float]) -> None:
        attrs = self._attrs(stage)
        for s in seconds:
            self._duration.record(s, attrs)

    def set_queue(self, stage: StageLabels, size: int, capacity: int) -> None:
        attrs = self._attrs(stage)
        self._queue.set(size, attrs)
        self._capacity.set(capacity, attrs)

    def set_demand(self, stage: StageLabels, outstanding: int) -> None:
        self._demand.set(outstanding, self._attrs(stage))
