"""The guide's bottleneck advice, tested: find the slow stage, then fan it out.

``source -> parse -> enrich -> store -> sink`` where ``parse`` and ``store`` are cheap and
``enrich`` is slow. First as one slow stage, then with ``parallel(n, stage().map_async(enrich))``
for n = 1, 2, 4, 8:

- **IO-bound**: ``enrich`` awaits ``asyncio.sleep(4 ms)``. Engines: pull (fused), pull with
  ``buffer(4)`` boundaries around ``enrich``, push asyncio and push threads with a buffer of 1
  on every channel (the guide's first step to find the bottleneck). Peer: a hand-written
  asyncio pipeline, ``producer -> Queue(1) -> n enrich workers -> Queue(1) -> consumer``.
  Counters in the stages say where the queue builds: at every item ``store`` sees, the items
  that passed ``parse`` but whose ``enrich`` call has not started (**queue before**) and the
  items ``enrich`` finished that ``store`` has not taken (**queue after**).
- **CPU-bound**: ``enrich`` is about 1 ms of pure-Python arithmetic, run by
  ``parallel(n, stage().map(work), executor=pool, batch=4)`` on a ``spawn`` process pool of n
  workers, against serial and ``pool.map(work, items, chunksize=4)`` on the same pool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from comparisons.harness import Contender, Measurement, measure, progress
from comparisons.plots import line_plot, plot_markdown
from comparisons.report import Section, fmt_count, fmt_rate, markdown_table
from comparisons.workloads import Workload
from comparisons.workloads.cpu_fanout import calibrate, cpu_work, process_pool
from rxpipe import Flow, PushEngine, stage

__all__ = (
    "IO_BASELINE",
    "WORKERS",
    "WORKLOAD",
    "Queues",
    "cpu_contenders",
    "io_contenders",
    "measure_cpu",
    "measure_io",
    "render",
    "run",
)

WORKERS: Final = (1, 2, 4, 8)
#: Quick mode's CPU-bound pool sizes: the box's two cores, and four times that (each pool size
#: costs a process pool's start and warm-up; ``make bench-full`` runs every n).
CPU_WORKERS_QUICK: Final = (2, 8)
DELAY: Final = 0.004
IO_N_QUICK: Final = 64
IO_N_FULL: Final = 400
CPU_N_QUICK: Final = 120
CPU_N_FULL: Final = 400
ROUNDS_QUICK: Final = 2
ROUNDS_FULL: Final = 5
BATCH: Final = 4
BOUNDARY: Final = 4
PLOT_NAME: Final = "bottleneck.png"

IO_BASELINE: Final = "asyncio: Queue(1) -> n workers -> Queue(1)"
SLOW_ONLY: Final = "pull, one slow stage (no parallel)"
CPU_BASELINE: Final = "serial"


def pull_name(n: int) -> str:
    return f"pull parallel({n})"


def pull_b_name(n: int) -> str:
    return f"pull buffer({BOUNDARY}) + parallel({n}) + buffer({BOUNDARY})"


def push_name(n: int) -> str:
    return f"push asyncio, buffer 1, parallel({n})"


def threads_name(n: int) -> str:
    return f"push threads, buffer 1, parallel({n})"


def cpu_name(n: int) -> str:
    return f"rxpipe parallel({n}, executor=pool({n}), batch={BATCH})"


def pool_map_name(n: int) -> str:
    return f"pool({n}).map(chunksize={BATCH})"


@dataclass
class Queues:
    """Counters of one run, and the queue lengths ``store`` saw (sum, max, samples)."""

    parsed: int = 0
    started: int = 0
    finished: int = 0
    stored: int = 0
    before: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)

    def parse(self, x: int) -> int:
        self.parsed += 1
        return x

    async def enrich(self, x: int) -> int:
        self.started += 1
        await asyncio.sleep(DELAY)
        self.finished += 1
        return x

    def store(self, x: int) -> int:
        self.before.append(self.parsed - self.started)
        self.after.append(self.finished - self.stored - 1)  # not the item in hand
        self.stored += 1
        return x

    def mean(self, which: str) -> float:
        values = self.before if which == "before" else self.after
        return sum(values) / len(values) if values else 0.0

    def peak(self, which: str) -> int:
        values = self.before if which == "before" else self.after
        return max(values, default=0)


#: The counters of the last run of each contender (the tables show the last timed round).
LAST: dict[str, Queues] = {}


def _flow(items: Sequence[int], q: Queues, n: int | None, boundary: bool) -> Flow[int]:
    src = Flow.from_iterable(items).map(q.parse, name="parse")
    if boundary:
        src = src.buffer(BOUNDARY)
    if n is None:
        mid = src.map_async(q.enrich, concurrency=1, ordered=False, name="enrich")
    else:
        mid = src.parallel(n, stage().map_async(q.enrich), name="enrich")
    if boundary:
        mid = mid.buffer(BOUNDARY)
    return mid.map(q.store, name="store")


def _rxpipe(
    name: str, items: Sequence[int], n: int | None, engine: PushEngine | None, boundary: bool
) -> Callable[[], list[int]]:
    def go() -> list[int]:
        q = Queues()
        flow = _flow(items, q, n, boundary)
        out = flow.to_list() if engine is None else flow.to_list(engine=engine)
        LAST[name] = q
        return sorted(out)

    return go


async def asyncio_pipeline(items: Sequence[int], q: Queues, n: int) -> list[int]:
    """``producer -> Queue(1) -> n enrich workers -> Queue(1) -> consumer``."""
    end = object()
    q1: asyncio.Queue[object] = asyncio.Queue(1)
    q2: asyncio.Queue[object] = asyncio.Queue(1)

    async def produce() -> None:
        for x in items:
            await q1.put(q.parse(x))
        for _ in range(n):
            await q1.put(end)

    async def worker() -> None:
        while (x := await q1.get()) is not end:
            await q2.put(await q.enrich(x))  # type: ignore[arg-type]
        await q2.put(end)

    tasks = [asyncio.create_task(produce()), *(asyncio.create_task(worker()) for _ in range(n))]
    out: list[int] = []
    live = n
    while live:
        x = await q2.get()
        if x is end:
            live -= 1
        else:
            out.append(q.store(x))  # type: ignore[arg-type]
    await asyncio.gather(*tasks)
    return sorted(out)


def _peer(name: str, items: Sequence[int], n: int) -> Callable[[], list[int]]:
    def go() -> list[int]:
        q = Queues()
        out = asyncio.run(asyncio_pipeline(items, q, n))
        LAST[name] = q
        return out

    return go


def io_contenders(items: Sequence[int], n: int) -> list[Contender]:
    """The IO-bound contenders with ``n`` copies of ``enrich``."""
    chain = "Flow.from_iterable(items).map(parse)"
    par = f".parallel({n}, stage().map_async(enrich)).map(store)"
    out = [
        Contender(IO_BASELINE, _peer(IO_BASELINE, items, n), f"hand-written, {n} worker tasks"),
        Contender(pull_name(n), _rxpipe(pull_name(n), items, n, None, False), f"{chain}{par}"),
        Contender(
            pull_b_name(n),
            _rxpipe(pull_b_name(n), items, n, None, True),
            f"{chain}.buffer({BOUNDARY}).parallel({n}, ...).buffer({BOUNDARY}).map(store)",
        ),
        Contender(
            push_name(n),
            _rxpipe(push_name(n), items, n, PushEngine(buffer=1), False),
            f"{chain}{par}, engine=PushEngine(buffer=1)",
        ),
        Contender(
            threads_name(n),
            _rxpipe(threads_name(n), items, n, PushEngine(buffer=1, runtime="threads"), False),
            f'{chain}{par}, engine=PushEngine(buffer=1, runtime="threads")',
        ),
    ]
    if n == 1:
        out.append(
            Contender(
                SLOW_ONLY,
                _rxpipe(SLOW_ONLY, items, None, None, False),
                f"{chain}.map_async(enrich).map(store)",
            )
        )
    return out


def measure_io(n_items: int, *, rounds: int, warmup: int = 0) -> dict[int, Measurement]:
    items = list(range(n_items))
    out = {}
    for n in WORKERS:
        progress(f"IO-bound, {n} worker{'s' if n != 1 else ''}")
        out[n] = measure(
            io_contenders(items, n),
            baseline=IO_BASELINE,
            items=n_items,
            rounds=rounds,
            warmup=warmup,
        )
    return out


# -- CPU-bound -----------------------------------------------------------------------------------
def cpu_contenders(
    items: Sequence[int], n: int, pool: Any, work: Callable[[int], tuple[int, int]]
) -> list[Contender]:
    flow = Flow.from_iterable(items).parallel(n, stage().map(work), executor=pool, batch=BATCH)
    return [
        Contender(CPU_BASELINE, lambda: [work(x) for x in items], "[work(x) for x in items]"),
        Contender(
            pool_map_name(n),
            lambda: list(pool.map(work, items, chunksize=BATCH)),
            f"list(pool.map(work, items, chunksize={BATCH}))",
        ),
        Contender(
            cpu_name(n),
            lambda: sorted(flow.to_list()),
            f"Flow.from_iterable(items).parallel({n}, stage().map(work), executor=pool, "
            f"batch={BATCH})",
        ),
    ]


def measure_cpu(
    n_items: int, *, rounds: int, warmup: int = 1, workers: Sequence[int] = WORKERS
) -> dict[int, Measurement]:
    work = functools.partial(cpu_work, loops=calibrate())
    items = list(range(n_items))
    out = {}
    for n in workers:
        progress(f"CPU-bound: starting a process pool of {n}")
        with ExitStack() as stack:
            pool = stack.enter_context(process_pool(n))
            out[n] = measure(
                cpu_contenders(items, n, pool, work),
                baseline=CPU_BASELINE,
                items=n_items,
                rounds=rounds,
                warmup=warmup,
            )
    return out


# -- rendering -----------------------------------------------------------------------------------
IO_SERIES: Final[dict[str, Callable[[int], str]]] = {
    "pull parallel(n)": pull_name,
    f"pull, buffer({BOUNDARY}) boundaries": pull_b_name,
    "push asyncio, buffer 1": push_name,
    "push threads, buffer 1": threads_name,
    "hand-written asyncio": lambda n: IO_BASELINE,
}


def _io_table(io: dict[int, Measurement]) -> str:
    header = ["contender", *(f"n = {n} items / s" for n in WORKERS)]
    header += [f"n = {n} queue before / after (mean, max)" for n in (WORKERS[0], WORKERS[-1])]
    rows = []
    for label, name in IO_SERIES.items():
        row = [label, *(fmt_rate(io[n][name(n)].items_per_second) for n in WORKERS)]
        for n in (WORKERS[0], WORKERS[-1]):
            q = LAST.get(name(n))
            row.append(
                "-"
                if q is None
                else f"{q.mean('before'):.1f} / {q.mean('after'):.1f} "
                f"({q.peak('before')}, {q.peak('after')})"
            )
        rows.append(row)
    slow = io[WORKERS[0]][SLOW_ONLY]
    q = LAST.get(SLOW_ONLY)
    rows.append(
        [
            SLOW_ONLY,
            fmt_rate(slow.items_per_second),
            *("" for _ in WORKERS[1:]),
            "-"
            if q is None
            else f"{q.mean('before'):.1f} / {q.mean('after'):.1f} "
            f"({q.peak('before')}, {q.peak('after')})",
            "",
        ]
    )
    ideal = ["ideal: n / 4 ms", *(fmt_rate(n / DELAY) for n in WORKERS), "", ""]
    rows.append(ideal)
    return markdown_table(header, rows, "l" + "r" * len(WORKERS) + "ll")


def _cpu_table(cpu: dict[int, Measurement]) -> str:
    header = [
        "n",
        "serial items / s",
        "pool.map items / s",
        "rxpipe parallel items / s",
        "rxpipe vs serial",
        "rxpipe vs pool.map",
    ]
    rows = []
    for n, m in cpu.items():
        rows.append(
            [
                str(n),
                fmt_rate(m[CPU_BASELINE].items_per_second),
                fmt_rate(m[pool_map_name(n)].items_per_second),
                fmt_rate(m[cpu_name(n)].items_per_second),
                f"{1 / m[cpu_name(n)].ratio:.2f}x the speed",
                f"{m.ratio(pool_map_name(n), cpu_name(n)):.2f}x the speed",
            ]
        )
    return markdown_table(header, rows, "rrrrrr")


def plot(io: dict[int, Measurement], cpu: dict[int, Measurement], out: Path) -> str:
    progress("drawing the plot")
    io_series: dict[str, list[tuple[float, float | None]]] = {
        label: [(float(n), io[n][name(n)].items_per_second) for n in WORKERS]
        for label, name in IO_SERIES.items()
    }
    io_series["ideal: n / 4 ms"] = [(float(n), n / DELAY) for n in WORKERS]
    cpu_series: dict[str, list[tuple[float, float | None]]] = {
        "rxpipe parallel(n, executor=pool)": [
            (float(n), m[cpu_name(n)].items_per_second) for n, m in cpu.items()
        ],
        "pool.map": [(float(n), m[pool_map_name(n)].items_per_second) for n, m in cpu.items()],
        "serial": [(float(n), m[CPU_BASELINE].items_per_second) for n, m in cpu.items()],
    }
    panels: list[tuple[str, Any]] = [
        (f"IO-bound enrich ({DELAY * 1000:g} ms await)", io_series),
    ]
    if cpu:
        panels.append(("CPU-bound enrich (~1 ms), process pool of n", cpu_series))
    result = line_plot(
        out / PLOT_NAME,
        panels,
        xlabel="n (copies of the slow stage / pool workers)",
        ylabel="throughput (items / s, log scale)",
        xlog=True,
        ylog=True,
        xticks=WORKERS,
    )
    return plot_markdown(result, "throughput against worker count")


def render(io: dict[int, Measurement], cpu: dict[int, Measurement], plot_line: str = "") -> str:
    n_io = io[WORKERS[0]].items
    first = io[WORKERS[0]]
    text = (
        "## The bottleneck: one slow stage, then parallel(n) around it\n\n"
        f"`source -> parse -> enrich -> store -> sink`, N = {fmt_count(n_io)} items; `parse` "
        f"and `store` are cheap; `enrich` awaits `asyncio.sleep({DELAY:g})`. n copies of "
        "`enrich` run with `parallel(n, stage().map_async(enrich))`; the push rows use a "
        "buffer of 1 on every channel (the guide's first step). **items / s**: N over the "
        f"median of {first.rounds} timed rounds (contenders interleaved, outputs checked "
        "against the hand-written pipeline's). **queue before**: items that passed `parse` but "
        "whose `enrich` call had not started, **queue after**: items `enrich` finished that "
        "`store` had not taken (besides the one in hand), both seen by `store` at every "
        "item of the last timed round (mean, and max in brackets).\n\n"
        f"{_io_table(io)}\n"
    )
    if cpu:
        m0 = next(iter(cpu.values()))
        text += (
            f"\n**CPU-bound**: N = {fmt_count(m0.items)} items of about 1 ms of pure-Python "
            f"work each, on a `spawn` process pool of n workers (batches of {BATCH}); median "
            f"of {m0.rounds} rounds after {m0.warmup} warm-up. The machine's usable cores cap "
            "the speed-up, whatever n.\n\n"
            f"{_cpu_table(cpu)}\n"
        )
    text += f"\n{plot_line}\n"
    return text


def headline(io: dict[int, Measurement], cpu: dict[int, Measurement]) -> str:
    a, b = WORKERS[0], WORKERS[-1]
    gain = io[b][push_name(b)].items_per_second / io[a][push_name(a)].items_per_second
    pgain = io[b][pull_name(b)].items_per_second / io[a][pull_name(a)].items_per_second
    text = f"IO: parallel({b}) {pgain:.1f}x (pull), {gain:.1f}x (push) the rate of parallel({a})"
    if cpu and b in cpu:
        text += f"; CPU: parallel({b}) on processes {1 / cpu[b][cpu_name(b)].ratio:.2f}x serial"
    return text


def run(quick: bool, out: Path) -> Section:
    LAST.clear()
    rounds = ROUNDS_QUICK if quick else ROUNDS_FULL
    io = measure_io(IO_N_QUICK if quick else IO_N_FULL, rounds=rounds)
    cpu = measure_cpu(
        CPU_N_QUICK if quick else CPU_N_FULL,
        rounds=rounds,
        workers=CPU_WORKERS_QUICK if quick else WORKERS,
    )
    line = plot(io, cpu, out)
    return Section(render(io, cpu, line), headline(io, cpu))


WORKLOAD: Final = Workload(
    name="bottleneck",
    title="one slow stage, then parallel(n) for n = 1, 2, 4, 8: IO (asyncio) and CPU (processes)",
    run=run,
)
