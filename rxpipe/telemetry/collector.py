"""The in-memory collector of one run: what the kernel measured, turned into Report fields and
handed to the flow's :class:`~rxpipe.Metrics` in batches.

Every run has one (:class:`RunTelemetry`); in a run with no ``observe()`` it measures nothing
and every timed Report field is ``None``. Engines create it with the run's ``StageStats``,
route the source through :meth:`RunTelemetry.source`/:meth:`RunTelemetry.source_async`, and
hand it to :meth:`rxpipe.Report.build` when the run ends.
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from rxpipe._core.telemetry import (
    Metrics,
    StageLabels,
    StageTiming,
    TimedAsyncIterator,
    TimedIterator,
)
from rxpipe.telemetry.sampler import Sampler

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.stages.plan import Plan

__all__ = ("QueueProbe", "RunTelemetry", "check_stall_after", "quantile", "suggested_buffer")

#: The quantiles a Report gives for each observed stage.
QUANTILES: Final = (("p50", 0.5), ("p99", 0.99))

#: ``(size, capacity)`` of a stage's input queue now, read by the sampler.
QueueProbe = Callable[[], tuple[int, int]]


def check_stall_after(seconds: float | None) -> float | None:
    """Validate an engine's ``stall_after``.

    Raises:
        TypeError/ValueError: not None and not a number > 0.
    """
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"stall_after must be a number of seconds or None, got {seconds!r}")
    if not seconds > 0:
        raise ValueError(f"stall_after must be > 0, got {seconds!r}")
    return float(seconds)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted durations (one of the measured values)."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def suggested_buffer(p50: float, p99: float) -> int | None:
    """The guide's rule: a buffer of ``2 * p99 / median`` items absorbs a stage's jitter
    (at least 1); None when the median is zero (nothing to scale by)."""
    if p50 <= 0.0:
        return None
    return max(1, round(2.0 * p99 / p50))


@final
class RunTelemetry:
    """One run's measurements: timing per stage (observed runs only), queue samples, and the
    exporters to flush to.

    The engine's threads write the timings; a sampler (see :mod:`rxpipe.telemetry.sampler`)
    and the end of the run read them. Counters are flushed to :class:`~rxpipe.Metrics` as
    increments, so a flush from the sampler and the last one at the end add up exactly.
    """

    __slots__ = (
        "_flush_lock",
        "_flushed",
        "_queue_probes",
        "_sampler",
        "_stall_after",
        "engine",
        "labels",
        "metrics",
        "observed",
        "on",
        "stats",
    )

    def __init__(
        self,
        plan: Plan,
        stats: Sequence[StageStats],
        engine: str,
        stall_after: float | None = None,
    ) -> None:
        self.stats = stats
        self._stall_after = stall_after
        self._sampler: Sampler | None = None
        self.engine = engine
        self.on = plan.observed
        marks = plan.marks()
        self.observed = tuple(mark is not None for mark in marks)
        self.metrics: tuple[Metrics | None, ...] = tuple(
            None if mark is None else mark.metrics for mark in marks
        )
        # a source's kind is what made it (range, from_iterable, merge...), not its new name
        source_kind = getattr(plan.source, "name", plan.source.operator)
        if not isinstance(source_kind, str):
            source_kind = plan.source.operator
        kinds = (source_kind, *(n.stage.operator for n in plan.nodes))
        self.labels = tuple(
            StageLabels(st.name, kind, engine) for st, kind in zip(stats, kinds, strict=True)
        )
        if self.on:
            for st, seen, metrics in zip(stats, self.observed, self.metrics, strict=True):
                st.timing = StageTiming(keep=seen, export=metrics is not None)
        self._flushed: list[dict[str, int]] = [{} for _ in stats]
        self._flush_lock = threading.Lock()
        #: Input-queue probes per stage index, registered by the engine (None: no queue).
        self._queue_probes: dict[int, QueueProbe] = {}

    # -- what the engines call -------------------------------------------------------------
    def source(self, items: Iterator[Any]) -> Iterator[Any]:
        """The source's iterator, timed when the run is observed."""
        timing = self.stats[0].timing
        return items if timing is None else TimedIterator(items, timing)

    def source_async(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The source's async iterator, timed when the run is observed."""
        timing = self.stats[0].timing
        return items if timing is None else TimedAsyncIterator(items, timing)

    def start(self) -> None:
        """Start sampling (an observed run only; once)."""
        if self.on and self._sampler is None:
            self._sampler = Sampler(self, stall_after=self._stall_after)
            self._sampler.start()

    def stop(self) -> None:
        """Stop sampling and wait for the sampler; the last samples stay in the Report."""
        if self._sampler is not None:
            self._sampler.stop()

    def probe_queue(self, index: int, probe: QueueProbe) -> None:
        """Register how to read stage ``index``'s input queue (push channels, pull buffers)."""
        self._queue_probes[index] = probe

    @property
    def exports(self) -> bool:
        """Whether any stage feeds a :class:`~rxpipe.Metrics`."""
        return any(m is not None for m in self.metrics)

    # -- sampling --------------------------------------------------------------------------
    def read_queues(self) -> dict[int, tuple[int, int]]:
        """Every registered queue's (size, capacity), read now (a queue being torn down is
        left out)."""
        now: dict[int, tuple[int, int]] = {}
        for index, probe in list(self._queue_probes.items()):
            try:
                now[index] = probe()
            except Exception:  # a queue being torn down: skip it this time
                continue
        return now

    # -- the Report's fields ---------------------------------------------------------------
    def busy_seconds(self, index: int) -> float | None:
        timing = self.stats[index].timing
        return None if timing is None else timing.busy_seconds

    def quantiles(self, index: int) -> dict[str, float] | None:
        timing = self.stats[index].timing
        if timing is None or not self.observed[index]:
            return None
        durations = sorted(timing.durations())
        if not durations:
            return None
        return {key: quantile(durations, q) for key, q in QUANTILES}

    def suggested_buffers(self) -> dict[str, int] | None:
        """``2 * p99 / median`` for each observed stage with durations (None if none has)."""
        if not self.on:
            return None
        out: dict[str, int] = {}
        for index, st in enumerate(self.stats):
            q = self.quantiles(index)
            if q is None:
                continue
            size = suggested_buffer(q["p50"], q["p99"])
            if size is not None:
                out[st.name] = size
        return out or None

    def bottleneck(self) -> str | None:
        """The stage that limited throughput (None when nothing was measured): the stage
        with the most busy time.

        Pull: a chain runs one stage at a time, so the time demand waits at a stage is that
        stage's own callbacks and work. Push: stages run side by side, and the busiest one is
        the stage whose input channel stays full (upstream waits on it) while downstream
        starves. Channel fill is not used to decide: the asyncio runtime's batching moves
        items out of a channel before they are processed, and a stage that blocks the event
        loop freezes every channel as it is, so fill can point one stage off.
        """
        if not self.on:
            return None
        # a stage that moved no item limited nothing (an empty run has no bottleneck)
        seconds, index = max(
            ((self.busy_seconds(i) or 0.0) if st.received or st.emitted else 0.0, i)
            for i, st in enumerate(self.stats)
        )
        return self.stats[index].name if seconds > 0.0 else None

    # -- exporting -------------------------------------------------------------------------
    def flush(self, queues: Mapping[int, tuple[int, int]] | None = None) -> None:
        """Hand every exporter what changed since the last flush (and the queue gauges)."""
        if not self.exports:
            return
        with self._flush_lock:
            for index, (st, metrics) in enumerate(zip(self.stats, self.metrics, strict=True)):
                if metrics is None:
                    continue
                labels = self.labels[index]
                last = self._flushed[index]
                now = {
                    "received": st.received,
                    "emitted": st.emitted,
                    "filtered": st.filtered,
                    "queue_full": st.dropped,
                    "cancelled": st.lost,
                    "errored": st.errored,
                }
                timing = st.timing
                errors = dict(timing.errors) if timing is not None else {}
                for key, count in errors.items():
                    now[f"error:{key}"] = count
                delta = {k: v - last.get(k, 0) for k, v in now.items()}
                self._flushed[index] = now
                if delta["received"] or delta["emitted"]:
                    metrics.add_items(labels, received=delta["received"], emitted=delta["emitted"])
                for reason in ("filtered", "queue_full", "cancelled"):
                    if delta[reason] > 0:
                        metrics.add_dropped(labels, reason, delta[reason])
                typed = 0
                for key in errors:
                    d = delta[f"error:{key}"]
                    typed += d
                    if d > 0:
                        metrics.add_errors(labels, key, d)
                if delta["errored"] - typed > 0:  # counted where the class was not seen
                    metrics.add_errors(labels, "_OTHER", delta["errored"] - typed)
                if timing is not None:
                    durations = timing.take_pending()
                    if durations:
                        metrics.observe_durations(labels, durations)
                if queues and index in queues:
                    size, capacity = queues[index]
                    metrics.set_queue(labels, size, capacity)
                    if self.engine == "pull":  # a buffer(n) grants its producer n - held
                        metrics.set_demand(labels, capacity - size)
