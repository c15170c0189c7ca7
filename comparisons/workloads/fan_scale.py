"""The guide's claim "demand-pull is more efficient for fan-in/out at large scale", tested.

Two shapes, each at 10, 100 and 1,000 branches:

- **Fan-in**: ``k`` sources, each ``range(a, b).map(f)`` (the total number of items is fixed,
  split evenly), merged into one consumer (``Flow.merge``). rxpipe runs every input as a run
  of its own on the engine the user chose: on the pull engine one asyncio task per input reads
  a fused run; on the push engine every input is a pipeline of its own (a task or a thread per
  stage, channels between). Peers: ``k`` asyncio tasks into one ``asyncio.Queue(k)``, ``k``
  threads into one ``queue.Queue(k)``, aiostream's ``merge``, reactivex's ``merge``.
- **Fan-out**: ``N`` items to ``k`` slow consumers, each item awaiting ``asyncio.sleep(5 ms)``
  (IO). rxpipe: ``parallel(k, stage().map_async(work))`` on the pull engine (fused, and with an
  async ``buffer(16)`` boundary before it), the push engine's asyncio and threads runtimes,
  ``partition(key, k, ...)``, and ``map_async(work, concurrency=k)`` for reference. Peers: ``k``
  asyncio worker tasks fed by an ``asyncio.Queue(k)``, ``k`` threads (``time.sleep``) fed by a
  ``queue.Queue(k)``, aiostream's ``map(task_limit=k)``, reactivex ``merge(max_concurrent=k)``.

Throughput comes from :func:`comparisons.harness.measure` (paired, interleaved rounds, every
output checked equal to the baseline's, sorted since arrival order is free). Peak memory
(``tracemalloc``), peak asyncio tasks and peak threads come from one extra, untimed run of
each contender (:mod:`comparisons.probe`), whose output is checked too.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import reactivex
from aiostream import stream
from reactivex import operators as ops

from comparisons.harness import (
    Contender,
    Measurement,
    ResultMismatch,
    Target,
    TargetResult,
    measure,
    progress,
)
from comparisons.plots import line_plot, plot_markdown
from comparisons.probe import Usage, profile, sample
from comparisons.report import Section, fmt_count, fmt_rate, markdown_table, target_table
from comparisons.workloads import Workload
from comparisons.workloads.io_fanout import aiostream_map, queue_pool, rx_merge
from rxpipe import Flow, PushEngine, stage

__all__ = (
    "COUNTS",
    "FANIN_BASELINE",
    "FANOUT_BASELINE",
    "PLOT_NAME",
    "QUICK_SKIP",
    "WORKLOAD",
    "FanMeasurement",
    "fanin_contenders",
    "fanout_contenders",
    "measure_fanin",
    "measure_fanout",
    "render",
    "run",
)

COUNTS: Final = (10, 100, 1000)
#: Fan-in: items in total, split evenly over the sources.
FANIN_ITEMS_QUICK: Final = 3_000
FANIN_ITEMS_FULL: Final = 30_000
#: Fan-out: items per consumer count (enough that every consumer gets work).
FANOUT_ITEMS_QUICK: Final = {10: 100, 100: 300, 1000: 1_000}
FANOUT_ITEMS_FULL: Final = {10: 500, 100: 1_000, 1000: 3_000}
ROUNDS_QUICK: Final = {10: 2, 100: 2, 1000: 1}
ROUNDS_FULL: Final = {10: 5, 100: 5, 1000: 3}
#: Each fan-out item's wait: a slow IO consumer.
DELAY: Final = 0.005
#: The async boundary of the "pull, buffer" rows.
BOUNDARY: Final = 16
PLOT_NAME: Final = "fan_scale.png"
#: About this many resource samples per profiled run (``asyncio.all_tasks()`` costs O(tasks)).
SAMPLES: Final = 50
#: Quick mode traces memory only for runs of at most this many seconds (module docs).
TRACE_LIMIT_QUICK: Final = 0.5

FANIN_BASELINE: Final = "asyncio tasks -> asyncio.Queue(k)"
FANIN_PULL: Final = "pull merge"
FANIN_PULL_B: Final = f"pull merge, buffer({BOUNDARY}) per source"
FANIN_PUSH: Final = "push asyncio merge"
FANIN_THREADS: Final = "push threads merge"
FANIN_THREADQ: Final = "threads -> queue.Queue(k)"
FANIN_AIO: Final = "aiostream merge"
FANIN_RX: Final = "reactivex merge"

FANOUT_BASELINE: Final = "asyncio.Queue(k) -> k worker tasks"
FANOUT_PULL: Final = "pull parallel(k)"
FANOUT_PULL_B: Final = f"pull buffer({BOUNDARY}) + parallel(k)"
FANOUT_PUSH: Final = "push asyncio parallel(k)"
FANOUT_THREADS: Final = "push threads parallel(k)"
FANOUT_PARTITION: Final = "pull partition(k)"
FANOUT_MAP_PULL: Final = "pull map_async(concurrency=k)"
FANOUT_MAP_PUSH: Final = "push asyncio map_async(concurrency=k)"
FANOUT_THREADQ: Final = "queue.Queue(k) -> k threads"
FANOUT_AIO: Final = "aiostream map(task_limit=k)"
FANOUT_RX: Final = "reactivex merge(max_concurrent=k)"

#: Rows quick mode leaves out (no target, headline or verdict uses them; ``make bench-full``
#: runs them): the pull engine with a ``buffer`` boundary, and push's ``map_async`` reference.
QUICK_SKIP: Final = frozenset({FANIN_PULL_B, FANOUT_PULL_B, FANOUT_MAP_PUSH})

_END: Final = object()


def f(x: int) -> int:
    """Each fan-in source's stage."""
    return x * 3 + 1


class Sink:
    """A consumer that keeps every item and samples the resources in use."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[int] = []

    def __call__(self, x: int) -> None:
        sample()
        self.items.append(x)

    def result(self) -> list[int]:
        return sorted(self.items)


def _ranges(k: int, total: int) -> list[range]:
    per = max(1, total // k)
    return [range(i * per, (i + 1) * per) for i in range(k)]


# -- fan-in --------------------------------------------------------------------------------------
async def asyncio_fanin(ranges: Sequence[range]) -> list[int]:
    """One producer task per source into one ``asyncio.Queue(len(ranges))``."""
    q: asyncio.Queue[object] = asyncio.Queue(len(ranges))
    sink = Sink()

    async def produce(r: range) -> None:
        for x in r:
            await q.put(f(x))
        await q.put(_END)

    tasks = [asyncio.create_task(produce(r)) for r in ranges]
    live = len(tasks)
    while live:
        x = await q.get()
        if x is _END:
            live -= 1
        else:
            sink(x)  # type: ignore[arg-type]
    await asyncio.gather(*tasks)
    return sink.result()


def thread_fanin(ranges: Sequence[range]) -> list[int]:
    """One producer thread per source into one ``queue.Queue(len(ranges))``."""
    q: queue.Queue[object] = queue.Queue(len(ranges))
    sink = Sink()

    def produce(r: range) -> None:
        for x in r:
            q.put(f(x))
        q.put(_END)

    threads = [threading.Thread(target=produce, args=(r,), daemon=True) for r in ranges]
    for t in threads:
        t.start()
    live = len(threads)
    while live:
        x = q.get()
        if x is _END:
            live -= 1
        else:
            sink(x)  # type: ignore[arg-type]
    for t in threads:
        t.join()
    return sink.result()


async def aiostream_fanin(ranges: Sequence[range]) -> list[int]:
    aio: Any = stream
    xs = aio.merge(*(aio.map(aio.iterate(r), f) for r in ranges))
    sink = Sink()
    async with xs.stream() as items:
        async for x in items:
            sink(x)
    return sink.result()


def rx_fanin(ranges: Sequence[range]) -> list[int]:
    """reactivex's merge, subscribed on the calling thread (no backpressure, no concurrency)."""
    sink = Sink()
    merged = reactivex.merge(*(reactivex.from_iterable(r).pipe(ops.map(f)) for r in ranges))
    merged.subscribe(on_next=sink)
    return sink.result()


def _merged(ranges: Sequence[range], boundary: bool) -> Flow[int]:
    if boundary:
        return Flow.merge(*(Flow.range(r.start, r.stop).buffer(BOUNDARY).map(f) for r in ranges))
    return Flow.merge(*(Flow.range(r.start, r.stop).map(f) for r in ranges))


def _rxpipe_fanin(
    ranges: Sequence[range], engine: PushEngine | None, boundary: bool = False
) -> Callable[[], list[int]]:
    def go() -> list[int]:
        sink = Sink()
        flow = _merged(ranges, boundary)
        if engine is None:
            flow.foreach(sink)
        else:
            flow.foreach(sink, engine=engine)
        return sink.result()

    return go


def fanin_contenders(k: int, total: int) -> list[Contender]:
    """Every fan-in contender on ``k`` sources of ``total // k`` items each."""
    rs = _ranges(k, total)
    src = "Flow.range(a, b).map(f)"
    return [
        Contender(
            FANIN_BASELINE,
            lambda: asyncio.run(asyncio_fanin(rs)),
            "k tasks: for x in r: await q.put(f(x)); one consumer",
        ),
        Contender(FANIN_PULL, _rxpipe_fanin(rs, None), f"Flow.merge(*k x {src}).foreach(sink)"),
        Contender(
            FANIN_PULL_B,
            _rxpipe_fanin(rs, None, boundary=True),
            f"Flow.merge(*k x Flow.range(a, b).buffer({BOUNDARY}).map(f)).foreach(sink)",
        ),
        Contender(
            FANIN_PUSH,
            _rxpipe_fanin(rs, PushEngine()),
            f"Flow.merge(*k x {src}).foreach(sink, engine=PushEngine())",
        ),
        Contender(
            FANIN_THREADS,
            _rxpipe_fanin(rs, PushEngine(runtime="threads")),
            f'Flow.merge(*k x {src}).foreach(sink, engine=PushEngine(runtime="threads"))',
        ),
        Contender(FANIN_THREADQ, lambda: thread_fanin(rs), "k threads: for x in r: q.put(f(x))"),
        Contender(
            FANIN_AIO,
            lambda: asyncio.run(aiostream_fanin(rs)),
            "stream.merge(*k x stream.map(stream.iterate(r), f))",
        ),
        Contender(
            FANIN_RX,
            lambda: rx_fanin(rs),
            "reactivex.merge(*k x from_iterable(r).pipe(map(f))).subscribe(sink)",
            "no backpressure; sources run one after another on the caller's thread",
        ),
    ]


# -- fan-out -------------------------------------------------------------------------------------
async def work(x: int) -> int:
    """A slow IO consumer: waits :data:`DELAY`."""
    sample()
    await asyncio.sleep(DELAY)
    return x


def blocking_work(x: int) -> int:
    sample()
    time.sleep(DELAY)
    return x


def thread_fanout(items: Sequence[int], k: int) -> list[int]:
    """``k`` worker threads fed by a ``queue.Queue(k)``."""
    q: queue.Queue[object] = queue.Queue(k)
    out: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (x := q.get()) is not _END:
            r = blocking_work(x)  # type: ignore[arg-type]
            with lock:
                out.append(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(k)]
    for t in threads:
        t.start()
    for x in items:
        q.put(x)
    for _ in threads:
        q.put(_END)
    for t in threads:
        t.join()
    return sorted(out)


def _identity(x: int) -> int:
    return x


def _rxpipe_fanout(flow: Flow[int], engine: PushEngine | None) -> Callable[[], list[int]]:
    def go() -> list[int]:
        out = flow.to_list() if engine is None else flow.to_list(engine=engine)
        return sorted(out)

    return go


def _sync(make: Callable[[], Coroutine[Any, Any, list[int]]]) -> Callable[[], list[int]]:
    return lambda: sorted(asyncio.run(make()))


def fanout_contenders(k: int, n: int) -> list[Contender]:
    """Every fan-out contender: ``n`` items to ``k`` consumers that each wait :data:`DELAY`."""
    items = list(range(n))
    copies = stage().map_async(work)
    src = Flow.from_iterable(items)
    par = src.parallel(k, copies)
    par_b = src.buffer(BOUNDARY).parallel(k, copies)
    part = src.partition(_identity, k, copies)
    wide = src.map_async(work, concurrency=k, ordered=False)
    code = "Flow.from_iterable(items).parallel(k, stage().map_async(work))"
    return [
        Contender(
            FANOUT_BASELINE,
            _sync(partial(queue_pool, items, work, k, ordered=False)),
            "producer -> asyncio.Queue(k) -> k worker tasks",
        ),
        Contender(FANOUT_PULL, _rxpipe_fanout(par, None), f"{code}.to_list()"),
        Contender(
            FANOUT_PULL_B,
            _rxpipe_fanout(par_b, None),
            f"Flow.from_iterable(items).buffer({BOUNDARY}).parallel(k, ...).to_list()",
        ),
        Contender(
            FANOUT_PUSH, _rxpipe_fanout(par, PushEngine()), f"{code}.to_list(engine=PushEngine())"
        ),
        Contender(
            FANOUT_THREADS,
            _rxpipe_fanout(par, PushEngine(runtime="threads")),
            f'{code}.to_list(engine=PushEngine(runtime="threads"))',
        ),
        Contender(
            FANOUT_PARTITION,
            _rxpipe_fanout(part, None),
            "Flow.from_iterable(items).partition(key, k, stage().map_async(work)).to_list()",
        ),
        Contender(
            FANOUT_MAP_PULL,
            _rxpipe_fanout(wide, None),
            "Flow.from_iterable(items).map_async(work, concurrency=k, ordered=False).to_list()",
            "reference: one stage, no copies",
        ),
        Contender(
            FANOUT_MAP_PUSH,
            _rxpipe_fanout(wide, PushEngine()),
            "... .map_async(work, concurrency=k, ordered=False).to_list(engine=PushEngine())",
            "reference: one stage, no copies",
        ),
        Contender(
            FANOUT_THREADQ,
            lambda: thread_fanout(items, k),
            "queue.Queue(k) -> k threads, time.sleep",
        ),
        Contender(
            FANOUT_AIO,
            _sync(partial(aiostream_map, items, work, k, ordered=False)),
            "stream.map(stream.iterate(items), work, task_limit=k, ordered=False)",
        ),
        Contender(
            FANOUT_RX,
            _sync(partial(rx_merge, items, work, k, ordered=False)),
            "from_iterable(items).pipe(map(defer(from_future(work(i)))), merge(max_concurrent=k))",
            "no backpressure: merge queues every pending call",
        ),
    ]


# -- measuring -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FanMeasurement:
    """One shape (fan-in or fan-out) at every count: timings and resources per contender."""

    shape: str
    counts: tuple[int, ...]
    items: dict[int, int]
    timings: dict[int, Measurement]
    usage: dict[int, dict[str, Usage]]


def _profile_all(
    m: Measurement, contenders: Sequence[Contender], expected: object, every: int, limit: float
) -> dict[str, Usage]:
    """One untimed run of each contender for its resources; ``tracemalloc`` only for those
    whose timed run took at most ``limit`` seconds (it slows a run several-fold)."""
    usage: dict[str, Usage] = {}
    for c in contenders:
        traced = m[c.name].median_ns <= limit * 1e9
        progress(f"{c.name}, {'memory, ' if traced else ''}tasks and threads")
        u, result = profile(c.run, every=every, memory=traced)
        if result != expected:
            raise ResultMismatch(c.name, "the timed rounds", "a different result when profiled")
        usage[c.name] = u
    return usage


def measure_fanin(
    counts: Sequence[int],
    total: int,
    *,
    rounds: dict[int, int],
    warmup: int = 0,
    trace_limit: float = float("inf"),
    skip: frozenset[str] = frozenset(),
    profiled: Sequence[int] | None = None,
) -> FanMeasurement:
    """Time every contender at every count; profile them at the ``profiled`` counts (all)."""
    timings: dict[int, Measurement] = {}
    usage: dict[int, dict[str, Usage]] = {}
    items: dict[int, int] = {}
    for k in counts:
        cs = [c for c in fanin_contenders(k, total) if c.name not in skip]
        n = len(_ranges(k, total)) * max(1, total // k)
        items[k] = n
        progress(f"fan-in of {k}")
        timings[k] = measure(cs, baseline=FANIN_BASELINE, items=n, rounds=rounds[k], warmup=warmup)
        expected = sorted(f(x) for x in range(n))
        usage[k] = (
            _profile_all(timings[k], cs, expected, max(1, n // SAMPLES), trace_limit)
            if profiled is None or k in profiled
            else {}
        )
    return FanMeasurement("fan-in", tuple(counts), items, timings, usage)


def measure_fanout(
    counts: Sequence[int],
    items: dict[int, int],
    *,
    rounds: dict[int, int],
    warmup: int = 0,
    trace_limit: float = float("inf"),
    skip: frozenset[str] = frozenset(),
    profiled: Sequence[int] | None = None,
) -> FanMeasurement:
    """Time every contender at every count; profile them at the ``profiled`` counts (all)."""
    timings: dict[int, Measurement] = {}
    usage: dict[int, dict[str, Usage]] = {}
    for k in counts:
        n = items[k]
        cs = [c for c in fanout_contenders(k, n) if c.name not in skip]
        progress(f"fan-out to {k}")
        timings[k] = measure(cs, baseline=FANOUT_BASELINE, items=n, rounds=rounds[k], warmup=warmup)
        usage[k] = (
            _profile_all(timings[k], cs, list(range(n)), max(1, n // SAMPLES), trace_limit)
            if profiled is None or k in profiled
            else {}
        )
    return FanMeasurement("fan-out", tuple(counts), dict(items), timings, usage)


# -- rendering -----------------------------------------------------------------------------------
def _mib(u: Usage) -> str:
    return "not traced" if u.peak_mib is None else f"{u.peak_mib:.2f} MiB"


def _usage_cell(u: Usage | None) -> str:
    if u is None:
        return "-"
    return f"{_mib(u)}, {u.tasks} tasks, {u.threads} thr"


def _table(m: FanMeasurement) -> str:
    first = m.timings[m.counts[0]]
    names = first.names
    header = [
        "contender",
        *(f"k = {fmt_count(k)} items / s" for k in m.counts),
        *(f"k = {fmt_count(k)} vs baseline" for k in m.counts),
        *(f"k = {fmt_count(k)} peak memory, tasks, threads" for k in m.counts),
    ]
    rows = []
    for name in names:
        t0 = first[name]
        label = f"**{name}** (baseline)" if t0.is_baseline else name
        if t0.note:
            label += f" ({t0.note})"
        rows.append(
            [
                label,
                *(fmt_rate(m.timings[k][name].items_per_second) for k in m.counts),
                *(f"{m.timings[k][name].ratio:.2f}x" for k in m.counts),
                *(_usage_cell(m.usage[k].get(name)) for k in m.counts),
            ]
        )
    align = "l" + "r" * (2 * len(m.counts)) + "l" * len(m.counts)
    return markdown_table(header, rows, align)


def _code_table(m: FanMeasurement) -> str:
    first = m.timings[m.counts[0]]
    return markdown_table(
        ["contender", "code"], [[t.name, f"`{t.code}`"] for t in first.timings], "ll"
    )


def targets(fanin: FanMeasurement, fanout: FanMeasurement) -> list[TargetResult]:
    """The claim as targets at the largest count: demand-pull at least as fast as push."""
    k_in, k_out = fanin.counts[-1], fanout.counts[-1]
    checks = [
        (fanin, k_in, FANIN_PULL, FANIN_PUSH, "fan-in"),
        (fanout, k_out, FANOUT_PULL, FANOUT_PUSH, "fan-out"),
    ]
    out = []
    for m, k, pull, push, shape in checks:
        t = Target(
            f"claim, {shape} of {fmt_count(k)}: `{pull}` at least as fast as `{push}`",
            pull,
            push,
            "faster",
            1.0,
        )
        out.append(t.evaluate(m.timings[k]))
        pu, ps = m.usage[k][pull], m.usage[k][push]
        goal = "at most push's peak memory"
        text = f"claim, {shape} of {fmt_count(k)}: `{pull}` peak memory at most `{push}`'s"
        if pu.peak_bytes is None or ps.peak_bytes is None:
            out.append(TargetResult(text, None, "not traced in quick mode (see the caption)", goal))
        else:
            met = pu.peak_bytes <= ps.peak_bytes
            out.append(TargetResult(text, met, f"{_mib(pu)} vs {_mib(ps)}", goal))
    return out


def _series(m: FanMeasurement, names: Sequence[str]) -> dict[str, list[tuple[float, float | None]]]:
    return {
        name: [
            (float(k), m.timings[k][name].items_per_second if name in m.timings[k] else None)
            for k in m.counts
        ]
        for name in names
    }


def plot(fanin: FanMeasurement, fanout: FanMeasurement, out: Path) -> str:
    progress("drawing the plot")
    result = line_plot(
        out / PLOT_NAME,
        [
            (
                f"fan-in: k sources, {fmt_count(fanin.items[fanin.counts[0]])} items in all",
                _series(fanin, fanin.timings[fanin.counts[0]].names),
            ),
            (
                f"fan-out: k consumers awaiting {DELAY * 1000:g} ms each",
                _series(fanout, fanout.timings[fanout.counts[0]].names),
            ),
        ],
        xlabel="k (sources / consumers)",
        ylabel="throughput (items / s, log scale)",
        xlog=True,
        ylog=True,
        xticks=fanin.counts,
    )
    return plot_markdown(result, "throughput against fan-in and fan-out count")


def verdict(fanin: FanMeasurement, fanout: FanMeasurement) -> str:
    """The measured answer at the largest count, in one paragraph of numbers."""
    k_in, k_out = fanin.counts[-1], fanout.counts[-1]
    ti, to = fanin.timings[k_in], fanout.timings[k_out]
    ui, uo = fanin.usage[k_in], fanout.usage[k_out]

    def rate(m: Measurement, name: str) -> str:
        return fmt_rate(m[name].items_per_second) if name in m else "n/a"

    return (
        f"**At the largest count.** Fan-in of {fmt_count(k_in)}: pull {rate(ti, FANIN_PULL)}, "
        f"push asyncio {rate(ti, FANIN_PUSH)}, push threads {rate(ti, FANIN_THREADS)}, the "
        f"hand-written asyncio baseline {rate(ti, FANIN_BASELINE)} items/s; peak memory pull "
        f"{_mib(ui[FANIN_PULL])} / {ui[FANIN_PULL].tasks} tasks against push "
        f"{_mib(ui[FANIN_PUSH])} / {ui[FANIN_PUSH].tasks} tasks (threads runtime: "
        f"{ui[FANIN_THREADS].threads} threads). Fan-out to {fmt_count(k_out)}: pull parallel "
        f"{rate(to, FANOUT_PULL)}, push asyncio parallel {rate(to, FANOUT_PUSH)}, "
        f"`map_async(concurrency=k)` {rate(to, FANOUT_MAP_PULL)}, the asyncio worker pool "
        f"{rate(to, FANOUT_BASELINE)} items/s (ideal: {fmt_rate(k_out / DELAY)}); peak memory "
        f"pull {_mib(uo[FANOUT_PULL])}, push {_mib(uo[FANOUT_PUSH])}; tasks pull "
        f"{uo[FANOUT_PULL].tasks}, push {uo[FANOUT_PUSH].tasks}."
    )


def _left_out_text(fanin: FanMeasurement, fanout: FanMeasurement) -> str:
    """A sentence naming the contenders this run left out (quick mode's :data:`QUICK_SKIP`)."""
    ran_in, ran_out = fanin.timings[fanin.counts[0]], fanout.timings[fanout.counts[0]]
    left = [c.name for c in fanin_contenders(1, 1) if c.name not in ran_in]
    left += [c.name for c in fanout_contenders(1, 1) if c.name not in ran_out]
    if not left:
        return ""
    names = ", ".join(f"`{name}`" for name in left)
    return f"Quick mode leaves out rows no target or verdict uses (full mode runs them): {names}. "


def render(fanin: FanMeasurement, fanout: FanMeasurement, plot_line: str = "") -> str:
    results = targets(fanin, fanout)
    first_in = fanin.timings[fanin.counts[0]]
    caption = (
        "The guide says *Reactive Streams' demand-pull model is more efficient for fan-in/out "
        "at large scale*. Tested here at k = "
        + ", ".join(fmt_count(k) for k in fanin.counts)
        + ".\n\n"
        f"**Fan-in**: {fmt_count(fanin.items[fanin.counts[0]])} items in all, split evenly over "
        "k sources; each source is `range(a, b)` then `map(f)` (`f(x) = 3x + 1`), and one "
        "consumer takes every item. **Fan-out**: N items (N = "
        + ", ".join(f"{fmt_count(fanout.items[k])} at k = {fmt_count(k)}" for k in fanout.counts)
        + f") to k consumers, each item awaiting `asyncio.sleep({DELAY:g})` (the threads pool "
        f"calls `time.sleep({DELAY:g})`); ideal throughput k / {DELAY * 1000:g} ms. Outputs are "
        "sorted (arrival order is free) and checked equal to the baseline's in every round.\n\n"
        "**items / s**: N over the median wall time of one run (median of "
        + ", ".join(f"{first.rounds} at k = {fmt_count(k)}" for k, first in fanin.timings.items())
        + " timed rounds for fan-in; "
        + ", ".join(f"{t.rounds} at k = {fmt_count(k)}" for k, t in fanout.timings.items())
        + f" for fan-out; warm-up rounds: {first_in.warmup}); **vs baseline**: paired time "
        "ratio to the hand-written asyncio row (lower is faster). **peak memory, tasks, "
        "threads**: one extra run per contender with `tracemalloc` on: peak traced memory "
        "above the start, and the most asyncio tasks (on the consumer's loop) and threads "
        "alive as sampled by the consumer (fan-in) or by each slow call (fan-out). "
        "Tasks on another thread's loop are not counted (the threads runtime shows threads; "
        "its merge runs the inputs as asyncio tasks on the merge stage's thread, so they do "
        "not show). *not traced*: in quick mode, a run that took more than "
        f"{TRACE_LIMIT_QUICK:g} s is profiled without `tracemalloc` (which slows a run "
        "several-fold, most of all with many threads); `make bench-full` traces every row. "
        + (
            "Quick mode profiles only at the largest k (`-` elsewhere). "
            if any(not u for u in (*fanin.usage.values(), *fanout.usage.values()))
            else ""
        )
        + _left_out_text(fanin, fanout)
        + "The hand-written threads rows really start k threads (1,001 at k = 1,000): no cap "
        "was needed here."
    )
    return (
        "## Fan-in and fan-out at scale: does demand-pull win?\n\n"
        f"{caption}\n\n"
        f"**Fan-in** ({fmt_count(fanin.items[fanin.counts[0]])} items)\n\n{_table(fanin)}\n\n"
        f"**Fan-out** (slow consumers, {DELAY * 1000:g} ms each)\n\n{_table(fanout)}\n\n"
        f"{plot_line}\n\n{verdict(fanin, fanout)}\n\n"
        "**The claim as targets** (reported, never enforced)\n\n"
        f"{target_table(results)}\n\n"
        "**Code of each row**\n\n"
        f"{_code_table(fanin)}\n\n{_code_table(fanout)}\n"
    )


def run(quick: bool, out: Path) -> Section:
    limit = TRACE_LIMIT_QUICK if quick else float("inf")
    skip = QUICK_SKIP if quick else frozenset()
    profiled = COUNTS[-1:] if quick else None
    fanin = measure_fanin(
        COUNTS,
        FANIN_ITEMS_QUICK if quick else FANIN_ITEMS_FULL,
        rounds=ROUNDS_QUICK if quick else ROUNDS_FULL,
        warmup=0 if quick else 1,
        trace_limit=limit,
        skip=skip,
        profiled=profiled,
    )
    fanout = measure_fanout(
        COUNTS,
        FANOUT_ITEMS_QUICK if quick else FANOUT_ITEMS_FULL,
        rounds=ROUNDS_QUICK if quick else ROUNDS_FULL,
        warmup=0 if quick else 1,
        trace_limit=limit,
        skip=skip,
        profiled=profiled,
    )
    line = plot(fanin, fanout, out)
    k = COUNTS[-1]
    ti, to = fanin.timings[k], fanout.timings[k]
    head = (
        f"k = {fmt_count(k)}: fan-in pull {ti.ratio(FANIN_PULL, FANIN_PUSH):.2f}x the time of "
        f"push; fan-out pull parallel {to.ratio(FANOUT_PULL, FANOUT_PUSH):.2f}x the time of push, "
        f"{to.ratio(FANOUT_PULL, FANOUT_BASELINE):.2f}x the asyncio worker pool's"
    )
    return Section(render(fanin, fanout, line), head, tuple(targets(fanin, fanout)))


WORKLOAD: Final = Workload(
    name="fan_scale",
    title="fan-in (merge) and fan-out (parallel, partition) of 10, 100, 1000: pull, push, peers",
    run=run,
)
