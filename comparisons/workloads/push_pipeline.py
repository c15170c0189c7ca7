"""Push versus pull on one three-stage pipeline: ``source -> map(f) -> filter(p) -> sink``.

The same stages (``f`` and ``p`` are cheap one-line Python functions, so the table shows what
each way of connecting stages costs per item) run on:

- rxpipe's push engine, asyncio runtime, with channel buffers 0 (rendezvous), 1, 16 and 256;
  run with ``asyncio.run(flow.to_list_async(engine=...))``, the same way the hand-written
  asyncio pipelines run; one extra, informational row runs the sync ``flow.to_list(engine=...)``,
  which drives a private event loop;
- the push engine's threads runtime (buffer 16), with ``flow.to_list(engine=...)``;
- the hand-written equivalents: one asyncio task per stage with ``asyncio.Queue(maxsize)``
  between them (``maxsize=16`` is the BASELINE; ``asyncio.Queue(0)`` would be *unbounded*, so
  ``maxsize=1`` stands in for the rendezvous), and one thread per stage with ``queue.Queue(16)``;
- rxpipe's pull engine, fused (no boundary at all), and with an async boundary between every
  stage (``.buffer(16)``), when :meth:`rxpipe.Flow.buffer` exists.

A second, sweep measurement gives the plot of throughput against buffer size
(``<out>/push_vs_pull_buffers.png``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from comparisons.harness import Contender, Measurement, Target, measure, progress
from comparisons.report import (
    Section,
    contender_table,
    fmt_count,
    fmt_rate,
    headline,
    markdown_table,
    target_table,
)
from comparisons.workloads import Workload
from rxpipe import Flow, PushEngine

__all__ = (
    "BASELINE",
    "PLOT_NAME",
    "PUSH_B16",
    "SWEEP_BUFFERS",
    "TARGETS",
    "WORKLOAD",
    "Unavailable",
    "asyncio_queue_pipeline",
    "contenders",
    "f",
    "has_buffer",
    "measure_pipeline",
    "measure_sweep",
    "p",
    "plot_sweep",
    "render",
    "run",
    "sweep_contenders",
    "thread_queue_pipeline",
    "unavailable",
)

# 100,000 items take about 10 s per round of this table on the 2-core CI box (the
# rendezvous-like rows cost 15-25 us per item): a few minutes for the full run's table and
# sweep. Quick mode's 12,000 keep the whole quick run within its budget.
N_FULL: Final = 100_000
N_QUICK: Final = 12_000
ROUNDS_FULL: Final = 5
ROUNDS_QUICK: Final = 3
SWEEP_ROUNDS_FULL: Final = 3
SWEEP_ROUNDS_QUICK: Final = 1

#: Channel and queue sizes of the main table and of the sweep (the plot).
TABLE_BUFFERS: Final = (0, 1, 16, 256)
SWEEP_BUFFERS: Final = (0, 1, 4, 16, 64, 256)

BASELINE: Final = "asyncio.Queue(16)"
PUSH_B16: Final = "push asyncio, buffer 16"
PUSH_SYNC: Final = "push asyncio, buffer 16, to_list()"
PUSH_THREADS: Final = "push threads, buffer 16"
THREAD_QUEUE: Final = "threads + queue.Queue(16)"
PULL_FUSED: Final = "pull, fused"
PULL_BOUNDARIES: Final = "pull, buffer(16) boundaries"
PLOT_NAME: Final = "push_vs_pull_buffers.png"

TARGETS: Final = (
    Target(f"`{PUSH_B16}` within 1.0x of `{BASELINE}`", PUSH_B16, BASELINE, "within", 1.0),
    Target(f"stretch: `{PUSH_B16}` within 0.5x of `{BASELINE}`", PUSH_B16, BASELINE, "within", 0.5),
)

CHAIN: Final = "Flow.range(N).map(f).filter(p)"

_END: Final = object()  # end of stream in the hand-written pipelines (None is a valid item)


def f(x: int) -> int:
    """The map function."""
    return x * 3 + 1


def p(x: int) -> bool:
    """The filter predicate (keeps 6 items of 7)."""
    return x % 7 != 0


def push_name(buffer: int) -> str:
    return f"push asyncio, buffer {buffer}"


def queue_name(maxsize: int) -> str:
    return f"asyncio.Queue({maxsize})"


def pull_buffer_name(buffer: int) -> str:
    return f"pull, buffer({buffer}) boundaries"


def has_buffer() -> bool:
    """Whether this rxpipe has the ``Flow.buffer`` operator (added separately)."""
    return callable(getattr(Flow, "buffer", None))


# -- the hand-written pipelines --------------------------------------------------------------
async def asyncio_queue_pipeline(n: int, maxsize: int) -> list[int]:
    """One task per stage, ``asyncio.Queue(maxsize)`` between them; the sink is the caller."""
    if maxsize < 1:
        raise ValueError("asyncio.Queue(0) is unbounded; use maxsize >= 1")
    q1: asyncio.Queue[object] = asyncio.Queue(maxsize)
    q2: asyncio.Queue[object] = asyncio.Queue(maxsize)
    q3: asyncio.Queue[object] = asyncio.Queue(maxsize)

    async def source() -> None:
        for i in range(n):
            await q1.put(i)
        await q1.put(_END)

    async def mapper() -> None:
        while (x := await q1.get()) is not _END:
            await q2.put(f(x))  # type: ignore[arg-type]
        await q2.put(_END)

    async def filterer() -> None:
        while (x := await q2.get()) is not _END:
            if p(x):  # type: ignore[arg-type]
                await q3.put(x)
        await q3.put(_END)

    tasks = [asyncio.create_task(c) for c in (source(), mapper(), filterer())]
    try:
        out: list[int] = []
        while (x := await q3.get()) is not _END:
            out.append(x)  # type: ignore[arg-type]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


def thread_queue_pipeline(n: int, maxsize: int) -> list[int]:
    """One thread per stage, ``queue.Queue(maxsize)`` between them; the sink is the caller."""
    q1: queue.Queue[object] = queue.Queue(maxsize)
    q2: queue.Queue[object] = queue.Queue(maxsize)
    q3: queue.Queue[object] = queue.Queue(maxsize)

    def source() -> None:
        for i in range(n):
            q1.put(i)
        q1.put(_END)

    def mapper() -> None:
        while (x := q1.get()) is not _END:
            q2.put(f(x))  # type: ignore[arg-type]
        q2.put(_END)

    def filterer() -> None:
        while (x := q2.get()) is not _END:
            if p(x):  # type: ignore[arg-type]
                q3.put(x)
        q3.put(_END)

    threads = [threading.Thread(target=t, daemon=True) for t in (source, mapper, filterer)]
    for t in threads:
        t.start()
    out: list[int] = []
    while (x := q3.get()) is not _END:
        out.append(x)  # type: ignore[arg-type]
    for t in threads:
        t.join()
    return out


# -- contenders --------------------------------------------------------------------------------
def _push_async(n: int, engine: PushEngine) -> Callable[[], list[int]]:
    def go() -> list[int]:
        return asyncio.run(Flow.range(n).map(f).filter(p).to_list_async(engine=engine))

    return go


def _queue_async(n: int, maxsize: int) -> Callable[[], list[int]]:
    def go() -> list[int]:
        return asyncio.run(asyncio_queue_pipeline(n, maxsize))

    return go


def _pull_boundaries(n: int, buffer: int) -> Callable[[], list[int]]:
    def go() -> list[int]:
        flow: Any = Flow.range(n)  # Any: Flow.buffer may not exist in this rxpipe yet
        return asyncio.run(flow.buffer(buffer).map(f).buffer(buffer).filter(p).to_list_async())

    return go


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A contender this rxpipe cannot run (yet): listed in the table, not measured."""

    name: str
    code: str
    reason: str


def unavailable() -> list[Unavailable]:
    """The main table's contenders that cannot run here, with the reason."""
    if has_buffer():
        return []
    code = "Flow.range(N).buffer(16).map(f).buffer(16).filter(p).to_list_async()"
    return [Unavailable(PULL_BOUNDARIES, code, "not available: no `Flow.buffer` in this rxpipe")]


def contenders(n: int) -> list[Contender]:
    """Every runnable contender of the main table, on a source of ``n`` items.

    Each builds and runs its whole pipeline inside the timed call and returns the list of the
    items that reach the sink.
    """
    out: list[Contender] = []
    for b in TABLE_BUFFERS:
        engine = PushEngine(buffer=b, runtime="asyncio")
        note = "rendezvous" if b == 0 else ""
        code = f"asyncio.run({CHAIN}.to_list_async(engine=PushEngine(buffer={b})))"
        out.append(Contender(push_name(b), _push_async(n, engine), code, note))
    sync_engine = PushEngine(buffer=16, runtime="asyncio")
    out.append(
        Contender(
            PUSH_SYNC,
            lambda: Flow.range(n).map(f).filter(p).to_list(engine=sync_engine),
            f"{CHAIN}.to_list(engine=PushEngine(buffer=16))",
            "private event loop; informational",
        )
    )
    threads_engine = PushEngine(buffer=16, runtime="threads")
    out.append(
        Contender(
            PUSH_THREADS,
            lambda: Flow.range(n).map(f).filter(p).to_list(engine=threads_engine),
            f'{CHAIN}.to_list(engine=PushEngine(buffer=16, runtime="threads"))',
        )
    )
    for maxsize in (1, 16, 256):
        code = f"one task per stage, asyncio.Queue({maxsize}) between them"
        note = "stands in for buffer 0: asyncio.Queue(0) is unbounded" if maxsize == 1 else ""
        out.append(Contender(queue_name(maxsize), _queue_async(n, maxsize), code, note))
    out.append(
        Contender(
            THREAD_QUEUE,
            lambda: thread_queue_pipeline(n, 16),
            "one thread per stage, queue.Queue(16) between them",
        )
    )
    out.append(Contender(PULL_FUSED, lambda: Flow.range(n).map(f).filter(p).to_list(), CHAIN))
    if has_buffer():
        out.append(
            Contender(
                PULL_BOUNDARIES,
                _pull_boundaries(n, 16),
                "asyncio.run(Flow.range(N).buffer(16).map(f).buffer(16).filter(p).to_list_async())",
            )
        )
    return out


def _pull_buffer_ok(buffer: int) -> bool:
    """Whether ``Flow.buffer(buffer)`` can be built (a size of 0 may be rejected)."""
    if not has_buffer():
        return False
    try:
        flow: Any = Flow.range(1)
        flow.buffer(buffer)
    except (TypeError, ValueError):
        return False
    return True


def sweep_contenders(n: int) -> list[Contender]:
    """The plot's contenders: every buffer size of :data:`SWEEP_BUFFERS`, for each model.

    The hand-written pipeline runs ``asyncio.Queue(max(b, 1))`` (``maxsize=0`` is unbounded),
    so its buffer-0 point is its buffer-1 measurement.
    """
    out = [Contender(push_name(b), _push_async(n, PushEngine(buffer=b))) for b in SWEEP_BUFFERS]
    for maxsize in sorted({max(b, 1) for b in SWEEP_BUFFERS}):
        out.append(Contender(queue_name(maxsize), _queue_async(n, maxsize)))
    out.extend(
        Contender(pull_buffer_name(b), _pull_boundaries(n, b))
        for b in SWEEP_BUFFERS
        if _pull_buffer_ok(b)
    )
    return out


def measure_pipeline(n: int, *, rounds: int, warmup: int = 1) -> Measurement:
    """Measure the main table on a source of ``n`` items (the tests use a tiny ``n``)."""
    return measure(contenders(n), baseline=BASELINE, items=n, rounds=rounds, warmup=warmup)


def measure_sweep(n: int, *, rounds: int, warmup: int = 0) -> Measurement:
    """Measure the plot's points on a source of ``n`` items."""
    return measure(sweep_contenders(n), baseline=BASELINE, items=n, rounds=rounds, warmup=warmup)


# -- rendering ---------------------------------------------------------------------------------
def _series(sweep: Measurement) -> dict[str, list[float | None]]:
    """Items per second at each size of :data:`SWEEP_BUFFERS`, per model (``None``: not run)."""

    def rate(name: str) -> float | None:
        return sweep[name].items_per_second if name in sweep else None

    return {
        "push engine (asyncio)": [rate(push_name(b)) for b in SWEEP_BUFFERS],
        "hand-written asyncio.Queue": [rate(queue_name(max(b, 1))) for b in SWEEP_BUFFERS],
        "pull engine, buffer(n) boundaries": [rate(pull_buffer_name(b)) for b in SWEEP_BUFFERS],
    }


def plot_sweep(sweep: Measurement, path: Path, *, fused_rate: float | None = None) -> Path:
    """Draw throughput against buffer size (PNG, headless) and save it at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    ax = fig.subplots()
    xs = list(range(len(SWEEP_BUFFERS)))
    markers = iter(("o", "s", "^"))
    for label, rates in _series(sweep).items():
        marker = next(markers)
        points = [(x, r) for x, r in zip(xs, rates, strict=True) if r is not None]
        if not points:
            continue
        ax.plot([x for x, _ in points], [r for _, r in points], marker=marker, label=label)
    if fused_rate is not None:
        ax.axhline(fused_rate, linestyle="--", color="grey", label="pull engine, fused")
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [f"{b}\n(rendezvous;\nQueue(1))" if b == 0 else str(b) for b in SWEEP_BUFFERS]
    )
    ax.set_xlabel("buffer size between stages (items)")
    ax.set_ylabel("throughput (items / s, log scale)")
    ax.set_title(f"range -> map -> filter -> sink, {fmt_count(sweep.items)} items")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _unavailable_rows(items: Sequence[Unavailable]) -> str:
    return "".join(f"\n| {u.name} ({u.reason}) | `{u.code}` | - | - | - | - | - |" for u in items)


def _sweep_table(sweep: Measurement) -> str:
    series = _series(sweep)
    header = ["buffer", *series]

    def cell(rate: float | None) -> str:
        return "n/a" if rate is None else fmt_rate(rate)

    rows = [
        [str(b), *(cell(rates[i]) for rates in series.values())]
        for i, b in enumerate(SWEEP_BUFFERS)
    ]
    return markdown_table(header, rows, "r" * len(header))


def render(m: Measurement, sweep: Measurement | None, n: int) -> str:
    """The Markdown section: caption, contender table, targets, and the sweep with its plot."""
    skipped = unavailable()
    missing = "".join(f" `{u.name}`: {u.reason}." for u in skipped)
    caption = (
        f"`source -> map(f) -> filter(p) -> sink` with N = {fmt_count(n)} source items, "
        "`f(x) = x * 3 + 1`, `p(x) = x % 7 != 0` (plain Python functions): the same three "
        "stages, connected by each backpressure model. The rxpipe asyncio rows and the "
        "hand-written asyncio rows each run inside one `asyncio.run(...)` per call "
        "(`to_list_async`), so both pay for an event loop per run; the threads rows run "
        "`to_list()` in the calling thread. Every contender returns the list of the items that "
        "reach the sink, checked equal to the baseline's in every round.\n\n"
        f"**ns / item** is the median wall time of one run divided by N; **items / s** is its "
        f"inverse. Median of {m.rounds} timed rounds after {m.warmup} warm-up round"
        f"{'s' if m.warmup != 1 else ''}; contenders interleaved round-robin in one process; "
        "GC collected, then disabled, around each timed call. "
        f"**vs {BASELINE}** is the paired ratio of times (median over rounds of the "
        "contender's time over the baseline's in the same round; lower is faster). "
        "The baseline is the hand-written asyncio pipeline: one task per stage, "
        "`asyncio.Queue(16)` between stages, an `object()` sentinel at the end." + missing
    )
    results = [t.evaluate(m) for t in TARGETS]
    text = (
        "## Push versus pull: one pipeline, every way of connecting its stages\n\n"
        f"{caption}\n\n{contender_table(m)}{_unavailable_rows(skipped)}\n\n"
        "**Targets** (reported, never enforced: a missed target does not fail the run)\n\n"
        f"{target_table(results)}\n"
    )
    if sweep is not None:
        pulled = [b for b in SWEEP_BUFFERS if pull_buffer_name(b) in sweep]
        if not pulled:
            pull_note = " The pull engine's `buffer(n)` series is missing: no `Flow.buffer` here."
        elif len(pulled) < len(SWEEP_BUFFERS):
            absent = ", ".join(str(b) for b in SWEEP_BUFFERS if b not in pulled)
            pull_note = f" The pull engine has no `buffer(n)` point at n = {absent} (n >= 1)."
        else:
            pull_note = ""
        text += (
            "\n**Throughput against buffer size** (the same pipeline, "
            f"{fmt_count(sweep.items)} items, median of {sweep.rounds} round"
            f"{'s' if sweep.rounds != 1 else ''}; items / s). The hand-written pipeline has no "
            "rendezvous (`asyncio.Queue(0)` is unbounded): its buffer-0 point is "
            "`asyncio.Queue(1)`. The dashed line in the plot is the fused pull engine (no "
            f"boundary at all), from the table above.{pull_note}\n\n"
            f"{_sweep_table(sweep)}\n\n"
            f"![throughput vs buffer size]({PLOT_NAME})\n"
        )
    return text


def run(quick: bool, out: Path) -> Section:
    n = N_QUICK if quick else N_FULL
    rounds = ROUNDS_QUICK if quick else ROUNDS_FULL
    m = measure_pipeline(n, rounds=rounds)
    sweep = measure_sweep(n, rounds=SWEEP_ROUNDS_QUICK if quick else SWEEP_ROUNDS_FULL)
    fused = m[PULL_FUSED].items_per_second
    progress("drawing the plot")
    plot_sweep(sweep, out / PLOT_NAME, fused_rate=fused)
    peers = (*(queue_name(size) for size in (1, 16, 256)), THREAD_QUEUE)
    return Section(
        render(m, sweep, n),
        headline(m, pull=PULL_FUSED, push=PUSH_B16, peers=peers),
        tuple(t.evaluate(m) for t in TARGETS),
    )


WORKLOAD: Final = Workload(
    name="push_pipeline",
    title="push vs pull on source -> map -> filter: push engine, asyncio.Queue, threads, pull",
    run=run,
)
