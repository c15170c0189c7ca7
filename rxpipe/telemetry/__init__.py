"""Run statistics: the Report, the in-memory collector behind it, and the metrics protocol.

``flow.observe(name, metrics=None)`` marks a stage: its run is timed, and ``metrics`` (a
:class:`Metrics`, such as the exporters in :mod:`rxpipe.telemetry.prometheus` and
:mod:`rxpipe.telemetry.otel`) receives its counters, durations and queue depth.
``progress=True`` on ``run``/``start`` (or a :class:`LiveView`) shows a run live, with ``rich``.
"""

from rxpipe._core.telemetry import Metrics, StageLabels
from rxpipe.telemetry.live import LiveView
from rxpipe.telemetry.report import Report, StageReport

__all__ = ("LiveView", "Metrics", "Report", "StageLabels", "StageReport")
