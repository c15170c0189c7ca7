"""Run statistics: the Report and, later, metrics exporters."""

from rxpipe.telemetry.report import Report, StageReport

__all__ = ("Report", "StageReport")
