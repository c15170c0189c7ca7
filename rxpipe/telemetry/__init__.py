"""Run statistics: the Report, the in-memory collector behind it, and the metrics protocol.

``flow.observe(name, metrics=None)`` marks a stage: its run is timed, and ``metrics`` (a
:class:`Metrics`, such as the exporters in :mod:`rxpipe.telemetry.prometheus` and
:mod:`rxpipe.telemetry.otel`) receives its counters, durations and queue depth.
"""

from rxpipe._core.telemetry import Metrics, StageLabels
from rxpipe.telemetry.report import Report, StageReport

__all__ = ("Metrics", "Report", "StageLabels", "StageReport")
