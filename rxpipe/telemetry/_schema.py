"""The metric schema both exporters share (``research/ecosystem.md`` section 3.3).

OpenTelemetry names are dotted, units in the instrument; the Prometheus exporter emits the
names and labels the OpenTelemetry-to-Prometheus translation would, so one dashboard reads
either backend.
"""

from __future__ import annotations

from typing import Final

__all__ = ("BUCKETS", "LABELS", "PROMETHEUS_LABELS")

#: Histogram buckets in seconds, from 50 us (a cheap per-item stage) to 10 s.
BUCKETS: Final = (
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip

#: The OpenTelemetry attributes of every series.
LABELS: Final = ("rxpipe.pipeline.name", "rxpipe.stage.name", "rxpipe.stage.kind", "rxpipe.engine")
#: The same, as Prometheus labels.
PROMETHEUS_LABELS: Final = tuple(label.replace(".", "_") for label in LABELS)
