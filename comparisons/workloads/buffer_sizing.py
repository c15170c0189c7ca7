"""The guide's buffer-sizing rule, tested: ``buffer = 2 * p99 / median`` for a bursty stage.

``source -> bursty -> steady -> sink``: ``bursty`` waits a seeded log-normal delay per item
(median 2 ms, p99 about 10x the median: a few slow items among many fast ones), ``steady``
waits the bursty stage's mean delay for every item, so both stages have the same mean and the
only thing that separates them is the bursty stage's variance. A buffer between them lets
``bursty`` run ahead while ``steady`` works and lets ``steady`` drain it while ``bursty`` is
stuck on a slow item; without one, each waits for the other (Go's stop-and-go jitter).

Run at buffer 0 (rendezvous), 1, 8, 16, 64 and 256 on:

- the push engine's threads runtime: sync ``map`` stages that ``time.sleep``;
- the push engine's asyncio runtime: ``map_async(..., concurrency=1, ordered=False)`` stages
  that ``asyncio.sleep`` (unordered with one call: the stage holds one item, no window);
- the pull engine: the same async stages with a ``buffer(n)`` boundary between them (n >= 1),
  and fused, with no boundary (the baseline);
- peers: one thread per stage with ``queue.Queue(max(n, 1))``, one task per stage with
  ``asyncio.Queue(max(n, 1))`` (``maxsize=0`` is unbounded in both: their buffer-0 point is 1).

A reference row computes the same tandem with zero overhead (:func:`tandem_makespan`). The
guide's suggestion (``2 * p99 / median`` of the delays drawn) is marked on the plot.
"""

from __future__ import annotations

import asyncio
import math
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from comparisons.harness import Contender, Measurement, measure, progress
from comparisons.plots import Marker, line_plot, plot_markdown
from comparisons.report import Section, contender_table, fmt_count, fmt_rate, markdown_table
from comparisons.workloads import Workload
from rxpipe import Flow, PushEngine

__all__ = (
    "BASELINE",
    "BUFFERS",
    "PLOT_NAME",
    "WORKLOAD",
    "Latencies",
    "contenders",
    "latencies",
    "measure_buffers",
    "render",
    "run",
    "suggested_buffer",
    "tandem_makespan",
)

N_QUICK: Final = 80
N_FULL: Final = 400
ROUNDS_QUICK: Final = 1
ROUNDS_FULL: Final = 3
BUFFERS: Final = (0, 1, 8, 16, 64, 256)
MEDIAN_S: Final = 2e-3
SIGMA: Final = math.log(10) / 2.326_347_874_040_841  # p99 = 10 x median
SEED: Final = 14_003
PLOT_NAME: Final = "buffer_sizing.png"

BASELINE: Final = "pull, fused (no boundary)"
_END: Final = object()


@dataclass(frozen=True, slots=True)
class Latencies:
    """Per-item delays of the bursty stage and the steady stage's constant delay (seconds)."""

    bursty: tuple[float, ...]
    steady: float

    @property
    def median(self) -> float:
        return float(statistics.median(self.bursty))

    @property
    def p99(self) -> float:
        if len(self.bursty) < 2:
            return max(self.bursty)
        return statistics.quantiles(self.bursty, n=100)[98]


def latencies(n: int, *, seed: int = SEED, median: float = MEDIAN_S) -> Latencies:
    """``n`` seeded log-normal delays scaled to ``median``; ``steady`` is their mean."""
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0.0, SIGMA) for _ in range(n)]
    scale = median / statistics.median(raw)
    bursty = tuple(x * scale for x in raw)
    return Latencies(bursty, statistics.fmean(bursty))


def suggested_buffer(lat: Latencies) -> int:
    """The guide's starting point: ``2 * p99 / median``, rounded."""
    return round(2 * lat.p99 / lat.median)


def tandem_makespan(lat: Latencies, buffer: int) -> float:
    """Two stages in tandem, zero overhead, a channel of ``buffer`` between them.

    The first stage holds a finished item until the channel has room (for a rendezvous: until
    the second stage takes it); the second takes the next item as soon as it is free.
    """
    n = len(lat.bursty)
    left = [0.0] * n  # when item i left stage 1
    start2 = [0.0] * n  # when stage 2 started item i
    free1 = 0.0  # stage 1 free to start the next item
    done2 = 0.0  # stage 2 finished its previous item
    for i in range(n):
        finished1 = free1 + lat.bursty[i]
        if buffer == 0:
            left[i] = max(finished1, done2)
        else:
            slot = start2[i - buffer] if i >= buffer else 0.0
            left[i] = max(finished1, slot)
        start2[i] = max(left[i], done2)
        done2 = start2[i] + lat.steady
        free1 = left[i]
    return done2


# -- the stages ----------------------------------------------------------------------------------
def _stages_sync(lat: Latencies) -> tuple[Callable[[int], int], Callable[[int], int]]:
    def bursty(i: int) -> int:
        time.sleep(lat.bursty[i])
        return i

    def steady(i: int) -> int:
        time.sleep(lat.steady)
        return i

    return bursty, steady


def _stages_async(lat: Latencies) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
    async def bursty(i: int) -> int:
        await asyncio.sleep(lat.bursty[i])
        return i

    async def steady(i: int) -> int:
        await asyncio.sleep(lat.steady)
        return i

    return bursty, steady


def thread_tandem(n: int, lat: Latencies, maxsize: int) -> list[int]:
    """One thread per stage, ``queue.Queue(maxsize)`` between them; the caller is the sink."""
    bursty, steady = _stages_sync(lat)
    q1: queue.Queue[object] = queue.Queue(maxsize)
    q2: queue.Queue[object] = queue.Queue(maxsize)

    def first() -> None:
        for i in range(n):
            q1.put(bursty(i))
        q1.put(_END)

    def second() -> None:
        while (x := q1.get()) is not _END:
            q2.put(steady(x))  # type: ignore[arg-type]
        q2.put(_END)

    threads = [threading.Thread(target=t, daemon=True) for t in (first, second)]
    for t in threads:
        t.start()
    out: list[int] = []
    while (x := q2.get()) is not _END:
        out.append(x)  # type: ignore[arg-type]
    for t in threads:
        t.join()
    return out


async def asyncio_tandem(n: int, lat: Latencies, maxsize: int) -> list[int]:
    """One task per stage, ``asyncio.Queue(maxsize)`` between them; the caller is the sink."""
    bursty, steady = _stages_async(lat)
    q1: asyncio.Queue[object] = asyncio.Queue(maxsize)
    q2: asyncio.Queue[object] = asyncio.Queue(maxsize)

    async def first() -> None:
        for i in range(n):
            await q1.put(await bursty(i))
        await q1.put(_END)

    async def second() -> None:
        while (x := await q1.get()) is not _END:
            await q2.put(await steady(x))  # type: ignore[arg-type]
        await q2.put(_END)

    tasks = [asyncio.create_task(c) for c in (first(), second())]
    out: list[int] = []
    while (x := await q2.get()) is not _END:
        out.append(x)  # type: ignore[arg-type]
    await asyncio.gather(*tasks)
    return out


def push_threads_name(b: int) -> str:
    return f"push threads, buffer {b}"


def push_asyncio_name(b: int) -> str:
    return f"push asyncio, buffer {b}"


def pull_name(b: int) -> str:
    return f"pull, buffer({b}) boundary"


def thread_queue_name(b: int) -> str:
    return f"threads + queue.Queue({max(b, 1)})"


def asyncio_queue_name(b: int) -> str:
    return f"tasks + asyncio.Queue({max(b, 1)})"


def contenders(n: int, lat: Latencies) -> list[Contender]:
    """Every contender on ``n`` items; each returns ``[0, ..., n - 1]`` in order."""
    items = range(n)
    sb, ss = _stages_sync(lat)
    ab, as_ = _stages_async(lat)
    sync_flow = Flow.from_iterable(items).map(sb, name="bursty").map(ss, name="steady")
    async_flow = (
        Flow.from_iterable(items)
        .map_async(ab, concurrency=1, ordered=False, name="bursty")
        .map_async(as_, concurrency=1, ordered=False, name="steady")
    )
    out = [
        Contender(
            BASELINE,
            lambda: async_flow.to_list(),
            "Flow.from_iterable(items).map_async(bursty).map_async(steady).to_list()",
            "no boundary: the two stages overlap only as far as map_async reads ahead",
        )
    ]
    for b in BUFFERS:
        threads = PushEngine(buffer=b, runtime="threads")
        out.append(
            Contender(
                push_threads_name(b),
                lambda e=threads: sync_flow.to_list(engine=e),  # type: ignore[misc]
                "....map(bursty).map(steady).to_list(engine="
                f'PushEngine(buffer={b}, runtime="threads"))',
            )
        )
    for b in BUFFERS:
        engine = PushEngine(buffer=b)
        out.append(
            Contender(
                push_asyncio_name(b),
                lambda e=engine: async_flow.to_list(engine=e),  # type: ignore[misc]
                f"....map_async(bursty).map_async(steady).to_list(engine=PushEngine(buffer={b}))",
            )
        )
    for b in BUFFERS[1:]:
        flow = (
            Flow.from_iterable(items)
            .map_async(ab, concurrency=1, ordered=False, name="bursty")
            .buffer(b)
            .map_async(as_, concurrency=1, ordered=False, name="steady")
        )
        out.append(
            Contender(
                pull_name(b),
                lambda fl=flow: fl.to_list(),  # type: ignore[misc]
                f"....map_async(bursty).buffer({b}).map_async(steady).to_list()",
            )
        )
    for size in sorted({max(b, 1) for b in BUFFERS}):
        out.append(
            Contender(
                thread_queue_name(size),
                lambda s=size: thread_tandem(n, lat, s),  # type: ignore[misc]
                f"one thread per stage, queue.Queue({size})",
            )
        )
        out.append(
            Contender(
                asyncio_queue_name(size),
                lambda s=size: asyncio.run(asyncio_tandem(n, lat, s)),  # type: ignore[misc]
                f"one task per stage, asyncio.Queue({size})",
            )
        )
    return out


def measure_buffers(n: int, *, rounds: int, warmup: int = 0) -> tuple[Measurement, Latencies]:
    """Measure every contender on ``n`` items (the tests use a tiny ``n``)."""
    lat = latencies(n)
    m = measure(contenders(n, lat), baseline=BASELINE, items=n, rounds=rounds, warmup=warmup)
    return m, lat


# -- rendering -----------------------------------------------------------------------------------
SERIES: Final[dict[str, Callable[[int], str]]] = {
    "push threads": push_threads_name,
    "push asyncio": push_asyncio_name,
    "pull, buffer(n) boundary": pull_name,
    "threads + queue.Queue": thread_queue_name,
    "tasks + asyncio.Queue": asyncio_queue_name,
}


def _rates(m: Measurement) -> dict[str, list[float | None]]:
    return {
        label: [m[name(b)].items_per_second if name(b) in m else None for b in BUFFERS]
        for label, name in SERIES.items()
    }


def _model(m: Measurement, lat: Latencies) -> list[float]:
    return [m.items / tandem_makespan(lat, b) for b in BUFFERS]


def _sweep_table(m: Measurement, lat: Latencies) -> str:
    rates = _rates(m)
    model = _model(m, lat)
    header = ["buffer", *rates, "zero-overhead model"]
    rows = [
        [
            str(b),
            *("n/a" if r[i] is None else fmt_rate(r[i] or 0.0) for r in rates.values()),
            fmt_rate(model[i]),
        ]
        for i, b in enumerate(BUFFERS)
    ]
    return markdown_table(header, rows, "r" * len(header))


def _suggested_from_report() -> int | None:
    """The Report's ``suggested_buffers`` for the bursty stage (observed, so it is timed)."""
    n = 400  # enough items for a p99
    lat = latencies(n)  # the workload's own delays: a sleep much shorter oversleeps
    sb, ss = _stages_sync(lat)
    report = Flow.range(n).map(sb).observe("bursty").map(ss, name="steady").run(engine=PushEngine())
    sizes = report.suggested_buffers
    return None if sizes is None else sizes.get("bursty")


def plot(m: Measurement, lat: Latencies, out: Path, report_size: int | None) -> str:
    progress("drawing the plot")
    rates = _rates(m)
    series: dict[str, list[tuple[float, float | None]]] = {
        label: list(zip(map(float, BUFFERS), r, strict=True)) for label, r in rates.items()
    }
    series["zero-overhead model"] = list(
        zip(map(float, BUFFERS), map(float, _model(m, lat)), strict=True)
    )
    marks = [Marker(suggested_buffer(lat), f"guide: 2 * p99 / median = {suggested_buffer(lat)}")]
    if report_size is not None:
        marks.append(Marker(report_size, f"Report.suggested_buffers = {report_size}"))
    result = line_plot(
        out / PLOT_NAME,
        [(f"source -> bursty -> steady -> sink, {fmt_count(m.items)} items", series)],
        xlabel="buffer between the stages (items; symlog scale)",
        ylabel="throughput (items / s)",
        symlog_x=True,
        markers=marks,
        xticks=BUFFERS,
    )
    return plot_markdown(result, "throughput against buffer size")


def _gain(m: Measurement, name: Callable[[int], str], b: int) -> str:
    first, other = name(BUFFERS[0]), name(b)
    if first not in m or other not in m:
        return "n/a"
    return f"{m[other].items_per_second / m[first].items_per_second:.2f}x"


def render(
    m: Measurement, lat: Latencies, plot_line: str = "", report_size: int | None = None
) -> str:
    rule = suggested_buffer(lat)
    best = max(BUFFERS, key=lambda b: m[push_threads_name(b)].items_per_second)
    at_16 = m[push_threads_name(16)].items_per_second
    at_256 = m[push_threads_name(256)].items_per_second
    caption = (
        f"`source -> bursty -> steady -> sink`, N = {fmt_count(m.items)} items. `bursty` waits "
        "a seeded log-normal delay per item: this run's delays have median "
        f"{lat.median * 1e3:.2f} ms, p99 {lat.p99 * 1e3:.2f} ms (p99 / median = "
        f"{lat.p99 / lat.median:.1f}), max {max(lat.bursty) * 1e3:.1f} ms; `steady` waits their "
        f"mean, {lat.steady * 1e3:.2f} ms, for every item. The threads rows sleep with "
        "`time.sleep` in sync `map` stages; the asyncio and pull rows await `asyncio.sleep` in "
        "`map_async(f, concurrency=1, ordered=False)` stages (the event loop wakes on whole "
        "milliseconds, so their shortest delays stretch to about 1 ms). Every output is "
        "checked equal to the baseline's.\n\n"
        f"**items / s**: N over the median of {m.rounds} timed round"
        f"{'s' if m.rounds != 1 else ''} (contenders interleaved); **vs {BASELINE}**: paired "
        "time ratio (lower is faster). The **zero-overhead model** is the same tandem computed "
        "with no overhead (`tandem_makespan`): a stage holds a finished item until the channel "
        f"has room. The guide's rule gives `2 * p99 / median` = **{rule}** for these delays "
        "(dotted line in the plot). The Report's `suggested_buffers` is "
        + (
            f"**{report_size}** for `bursty`."
            if report_size is not None
            else "not measured by this rxpipe (telemetry has not landed: the field is `None`), "
            "so it is not marked."
        )
    )
    summary = (
        f"**What the curve says.** On the threads runtime (the cleanest timing), going from "
        f"buffer 0 to 1 gives {_gain(m, push_threads_name, 1)} the throughput, to 8 "
        f"{_gain(m, push_threads_name, 8)}, to 16 {_gain(m, push_threads_name, 16)}, to 64 "
        f"{_gain(m, push_threads_name, 64)}, to 256 {_gain(m, push_threads_name, 256)}; the "
        f"best point was buffer {best}; buffer 256 reached {at_256 / at_16:.2f}x the rate of "
        f"buffer 16. The asyncio runtime: buffer 1 {_gain(m, push_asyncio_name, 1)}, 16 "
        f"{_gain(m, push_asyncio_name, 16)}, 256 {_gain(m, push_asyncio_name, 256)} of its "
        "buffer-0 rate."
    )
    return (
        "## Buffer sizing: a bursty stage, buffer 0 to 256\n\n"
        f"{caption}\n\n{_sweep_table(m, lat)}\n\n{plot_line}\n\n{summary}\n\n"
        "**Every row**\n\n"
        f"{contender_table(m)}\n"
    )


def headline(m: Measurement, lat: Latencies) -> str:
    rule = suggested_buffer(lat)
    return (
        f"push threads: buffer 1 {_gain(m, push_threads_name, 1)}, 16 "
        f"{_gain(m, push_threads_name, 16)}, 256 {_gain(m, push_threads_name, 256)} of the "
        f"buffer-0 rate; the guide's rule says {rule}"
    )


def run(quick: bool, out: Path) -> Section:
    m, lat = measure_buffers(
        N_QUICK if quick else N_FULL, rounds=ROUNDS_QUICK if quick else ROUNDS_FULL
    )
    size = _suggested_from_report()
    line = plot(m, lat, out, size)
    return Section(render(m, lat, line, size), headline(m, lat))


WORKLOAD: Final = Workload(
    name="buffer_sizing",
    title="a bursty stage (p99 / median = 10) at buffer 0 to 256: push, pull, queues; 2*p99/median",
    run=run,
)
