"""The frozen record of one run: per-stage counts and totals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from rxpipe._core.stats import StageStats

if TYPE_CHECKING:
    from rxpipe.telemetry.collector import RunTelemetry

__all__ = ("Report", "StageReport")


@dataclass(frozen=True, slots=True)
class StageReport:
    """What one stage did in one run.

    ``filtered``: the stage chose not to emit (filter, skip, take_while). ``errored``: the
    user function raised, whatever the error surface. ``dropped``: overflow policies and
    rejected offers. ``lost``: items it held when the run was cancelled. ``timeouts``: calls
    that took longer than ``map_async(timeout=)``; ``retries``: calls made again by
    ``map_async(retry=)``.

    ``busy_seconds`` (time spent in the stage's callbacks and work) is measured for every
    stage of a run that observes some stage (``flow.observe(name)``), and
    ``duration_quantiles`` (``"p50"``, ``"p99"`` of the per-item processing time, in seconds)
    for the observed stages; both are ``None`` when not measured, never a ``0.0`` that would
    look like a measurement.
    """

    name: str
    received: int = 0
    emitted: int = 0
    filtered: int = 0
    errored: int = 0
    dropped: int = 0
    lost: int = 0
    timeouts: int = 0
    retries: int = 0
    busy_seconds: float | None = None
    duration_quantiles: Mapping[str, float] | None = None

    @classmethod
    def from_stats(
        cls,
        stats: StageStats,
        busy_seconds: float | None = None,
        duration_quantiles: Mapping[str, float] | None = None,
    ) -> StageReport:
        """Freeze an engine's live counters (and what telemetry measured)."""
        return cls(
            name=stats.name,
            received=stats.received,
            emitted=stats.emitted,
            filtered=stats.filtered,
            errored=stats.errored,
            dropped=stats.dropped,
            lost=stats.lost,
            busy_seconds=busy_seconds,
            duration_quantiles=(
                None if duration_quantiles is None else MappingProxyType(dict(duration_quantiles))
            ),
            timeouts=stats.timeouts,
            retries=stats.retries,
        )


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of one run: ``stages`` in pipeline order (the source first), and totals.

    ``delivered`` counts the items that reached the terminal, ``engine`` names the engine
    that ran, ``elapsed_seconds`` is the wall time from the start of the run to its end.

    ``bottleneck`` names the stage that limited throughput (pull: where demand waited
    longest; push: the stage whose input channel stayed full while downstream starved), and
    ``suggested_buffers`` gives a buffer size per observed stage by the ``2 * p99 / median``
    rule, keyed like ``PushEngine(buffer=...)``. Both are ``None`` in a run that observed no
    stage. ``str(report)`` is a per-stage table.
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
        telemetry: RunTelemetry | None = None,
    ) -> Report:
        """Freeze the live counters of a finished run, and what its telemetry measured."""
        if telemetry is None or not telemetry.on:
            stages = {s.name: StageReport.from_stats(s) for s in stats}
            return cls(
                stages=MappingProxyType(stages),
                delivered=delivered,
                engine=engine,
                elapsed_seconds=elapsed_seconds,
            )
        stages = {
            s.name: StageReport.from_stats(s, telemetry.busy_seconds(i), telemetry.quantiles(i))
            for i, s in enumerate(stats)
        }
        suggested = telemetry.suggested_buffers()
        return cls(
            stages=MappingProxyType(stages),
            delivered=delivered,
            engine=engine,
            elapsed_seconds=elapsed_seconds,
            bottleneck=telemetry.bottleneck(),
            suggested_buffers=None if suggested is None else MappingProxyType(suggested),
        )

    def __str__(self) -> str:
        """A per-stage table: counts, busy time and its share of the run, p50/p99, the
        suggested buffer; the bottleneck marked with ``*``."""
        headers = (
            "stage", "received", "emitted", "filtered", "errored", "dropped", "lost",
            "busy s", "busy %", "p50", "p99", "buffer",
        )  # fmt: skip
        rows: list[tuple[str, ...]] = []
        suggested = self.suggested_buffers or {}
        for name, st in self.stages.items():
            q = st.duration_quantiles
            busy = st.busy_seconds
            share = (
                f"{100.0 * busy / self.elapsed_seconds:.0f}"
                if busy is not None and self.elapsed_seconds > 0
                else "-"
            )
            rows.append(
                (
                    f"{name} *" if name == self.bottleneck else name,
                    str(st.received),
                    str(st.emitted),
                    str(st.filtered),
                    str(st.errored),
                    str(st.dropped),
                    str(st.lost),
                    "-" if busy is None else f"{busy:.3f}",
                    share,
                    "-" if q is None else _duration(q["p50"]),
                    "-" if q is None else _duration(q["p99"]),
                    str(suggested[name]) if name in suggested else "-",
                )
            )
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

        def line(cells: tuple[str, ...]) -> str:
            first = cells[0].ljust(widths[0])
            rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            return "  ".join((first, *rest)).rstrip()

        out = [
            f"rxpipe run on {self.engine}: {self.delivered} delivered in "
            f"{self.elapsed_seconds:.3f} s"
            + (f", lost {self.lost}" if self.lost else "")
            + (f"; bottleneck: {self.bottleneck} (*)" if self.bottleneck else ""),
            line(headers),
            *(line(r) for r in rows),
        ]
        return "\n".join(out)


def _duration(seconds: float) -> str:
    """A duration in the unit that keeps it readable."""
    if seconds >= 1.0:
        return f"{seconds:.2f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds * 1e6:.1f}us"
