"""The frozen record of one run: per-stage counts and totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from rxpipe._core.stats import StageStats

__all__ = ("Report", "StageReport")


@dataclass(frozen=True, slots=True)
class StageReport:
    """What one stage did in one run.

    ``filtered``: the stage chose not to emit (filter, skip, take_while). ``errored``: the
    user function raised, whatever the error surface. ``dropped``: overflow policies and
    rejected offers. ``lost``: items it held when the run was cancelled.

    ``busy_seconds`` (time spent processing items) and ``duration_quantiles`` (``"p50"``,
    ``"p99"`` of the per-item processing time, in seconds) are ``None`` until measured: the
    telemetry that measures them is not built yet, so every run reports ``None``, never a
    ``0.0`` that would look like a measurement.
    """

    name: str
    received: int = 0
    emitted: int = 0
    filtered: int = 0
    errored: int = 0
    dropped: int = 0
    lost: int = 0
    busy_seconds: float | None = None
    duration_quantiles: Mapping[str, float] | None = None

    @classmethod
    def from_stats(cls, stats: StageStats) -> StageReport:
        """Freeze an engine's live counters."""
        return cls(
            name=stats.name,
            received=stats.received,
            emitted=stats.emitted,
            filtered=stats.filtered,
            errored=stats.errored,
            dropped=stats.dropped,
            lost=stats.lost,
        )


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of one run: ``stages`` in pipeline order (the source first), and totals.

    ``delivered`` counts the items that reached the terminal, ``engine`` names the engine
    that ran, ``elapsed_seconds`` is the wall time from the start of the run to its end.

    ``bottleneck`` (the stage that limited throughput) and ``suggested_buffers`` (a buffer
    size per stage, from the spread of its item durations) are ``None`` until measured: the
    telemetry they are computed from is not built yet, so every run reports ``None``.
    """

    stages: Mapping[str, StageReport]
    delivered: int
    engine: str
    elapsed_seconds: float
    bottleneck: str | None = None
    suggested_buffers: Mapping[str, int] | None = None

    @property
    def lost(self) -> int:
        """Items in flight when the run was cancelled, over all stages."""
        return sum(s.lost for s in self.stages.values())

    @property
    def dropped(self) -> int:
        """Items dropped by overflow policies, over all stages."""
        return sum(s.dropped for s in self.stages.values())

    @classmethod
    def build(
        cls,
        stats: Iterable[StageStats],
        *,
        delivered: int,
        engine: str,
        elapsed_seconds: float,
    ) -> Report:
        """Freeze the live counters of a finished run."""
        stages = {s.name: StageReport.from_stats(s) for s in stats}
        return cls(
            stages=MappingProxyType(stages),
            delivered=delivered,
            engine=engine,
            elapsed_seconds=elapsed_seconds,
        )
