"""CPU-bound fan-out over a process pool of 2 workers, against the same work done serially.

Each item costs about 1 ms of pure-Python CPU work (:func:`cpu_work`, a loop whose length is
calibrated once per process). The contenders:

- the BASELINE: serial, in-process, ``[work(x) for x in items]``;
- ``concurrent.futures.ProcessPoolExecutor(2).map(work, items)``, hand-written, with
  ``chunksize`` 1 and 10;
- hand-written asyncio: 2 coroutines, each awaiting one ``pool.submit`` at a time (what
  ``parallel(2)`` keeps in flight), informational;
- rxpipe ``Flow.from_iterable(items).parallel(2, rxpipe.stage().map(work), executor=pool)``,
  unordered (the default) and ordered, and with ``batch=10`` (items per executor task).

The pool uses the ``spawn`` start method: the benchmark process runs threads (forking it is
unsafe) and, unlike ``forkserver``, ``spawn`` leaves no server process behind. The pool is
started once per measurement and warmed up before the timed rounds; every contender that uses
it shares it. Unordered contenders return their results sorted (each result starts with the
item, so sorted is input order). Before and after the rounds, a probe measures how many
cores the pool really gets (:func:`parallel_capacity`): the machine is shared.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import rxpipe
from comparisons.harness import Contender, Measurement, Target, measure, progress, time_once
from comparisons.report import Section, contender_table, fmt_count, headline, target_table
from comparisons.workloads import Workload
from rxpipe import Flow

__all__ = (
    "BASELINE",
    "IN_FLIGHT",
    "POOL_MAP",
    "POOL_MAP_10",
    "RXPIPE",
    "RXPIPE_B10",
    "RXPIPE_ORDERED",
    "TARGETS",
    "WORKERS",
    "WORKLOAD",
    "CpuRun",
    "Unavailable",
    "calibrate",
    "contenders",
    "cpu_work",
    "has_parallel",
    "in_flight",
    "measure_cpu",
    "parallel_capacity",
    "process_pool",
    "render",
    "run",
    "unavailable",
)

N_FULL: Final = 400
N_QUICK: Final = 120
ROUNDS_FULL: Final = 9
ROUNDS_QUICK: Final = 5

WORKERS: Final = 2
#: The CPU time each item should cost.
ITEM_SECONDS: Final = 1e-3
START_METHOD: Final = "spawn"

BASELINE: Final = "serial"
POOL_MAP: Final = "ProcessPoolExecutor.map"
POOL_MAP_10: Final = "ProcessPoolExecutor.map, chunksize=10"
IN_FLIGHT: Final = "asyncio, 2 tasks in flight"
RXPIPE: Final = "rxpipe parallel(2)"
RXPIPE_ORDERED: Final = "rxpipe parallel(2, ordered=True)"
RXPIPE_B10: Final = "rxpipe parallel(2, batch=10)"

TARGETS: Final = (
    Target(f"`{RXPIPE}` at least 1.7x faster than `{BASELINE}`", RXPIPE, BASELINE, "faster", 1.7),
    Target(
        f"`{RXPIPE_B10}` at least 1.7x faster than `{BASELINE}`",
        RXPIPE_B10,
        BASELINE,
        "faster",
        1.7,
    ),
)

CHAIN: Final = f"Flow.from_iterable(items).parallel({WORKERS}, rxpipe.stage().map(work)"


def cpu_work(x: int, loops: int) -> tuple[int, int]:
    """``loops`` steps of pure-Python arithmetic seeded by ``x``; returns ``(x, checksum)``.

    Module-level, so a process pool can pickle it (with ``functools.partial`` for ``loops``).
    """
    acc = x
    for k in range(loops):
        acc = (acc * 31 + k) % 1_000_003
    return x, acc


@functools.cache
def calibrate(seconds: float = ITEM_SECONDS) -> int:
    """The loop count for which :func:`cpu_work` takes about ``seconds`` here (once per process).

    The fastest of several timed calls is used, so a busy phase of the machine does not make
    the items shorter.
    """
    loops = 1_000
    while True:
        best = min(_time_call(loops) for _ in range(5))
        if best >= 2e-4:
            return max(1, round(loops * seconds / best))
        loops *= 2


def _time_call(loops: int) -> float:
    start = time.perf_counter()
    cpu_work(0, loops)
    return time.perf_counter() - start


def has_parallel() -> bool:
    """Whether this rxpipe has ``Flow.parallel`` (written separately)."""
    return callable(getattr(Flow, "parallel", None))


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A contender this rxpipe cannot run (yet): listed in the table, not measured."""

    name: str
    code: str
    reason: str


def _rxpipe_rows() -> list[tuple[str, str]]:
    return [
        (RXPIPE, f"{CHAIN}, executor=pool).to_list()"),
        (RXPIPE_ORDERED, f"{CHAIN}, ordered=True, executor=pool).to_list()"),
        (RXPIPE_B10, f"{CHAIN}, executor=pool, batch=10).to_list()"),
    ]


def unavailable() -> list[Unavailable]:
    """The contenders that cannot run here, with the reason."""
    if has_parallel():
        return []
    reason = "not available: no `Flow.parallel` in this rxpipe"
    return [Unavailable(name, code, reason) for name, code in _rxpipe_rows()]


@contextmanager
def process_pool(workers: int = WORKERS) -> Iterator[ProcessPoolExecutor]:
    """A ``spawn`` process pool, shut down (waiting for its workers) on exit."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(START_METHOD))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _parallel(
    items: Sequence[int], work: Callable[[int], tuple[int, int]], pool: Executor, **options: Any
) -> Callable[[], list[tuple[int, int]]]:
    ordered = bool(options.get("ordered", False))

    def go() -> list[tuple[int, int]]:
        flow: Any = Flow.from_iterable(items)  # Any: Flow.parallel may not exist yet
        out: list[tuple[int, int]] = flow.parallel(
            WORKERS, rxpipe.stage().map(work), executor=pool, **options
        ).to_list()
        return out if ordered else sorted(out)

    return go


async def in_flight(
    items: Sequence[int], work: Callable[[int], tuple[int, int]], pool: Executor, tasks: int
) -> list[tuple[int, int]]:
    """``tasks`` coroutines, each awaiting one ``pool.submit`` at a time; completion order.

    As many submits in flight as ``parallel(tasks, ..., executor=pool)`` keeps, without rxpipe.
    """
    source = iter(items)
    out: list[tuple[int, int]] = []

    async def one() -> None:
        for x in source:
            out.append(await asyncio.wrap_future(pool.submit(work, x)))

    await asyncio.gather(*(one() for _ in range(tasks)))
    return out


def contenders(n: int, pool: Executor, *, loops: int | None = None) -> list[Contender]:
    """Every runnable contender on ``n`` items, the parallel ones on ``pool``."""
    work = functools.partial(cpu_work, loops=calibrate() if loops is None else loops)
    items = list(range(n))
    out = [
        Contender(BASELINE, lambda: [work(x) for x in items], "[work(x) for x in items]"),
        Contender(POOL_MAP, lambda: list(pool.map(work, items)), "list(pool.map(work, items))"),
        Contender(
            POOL_MAP_10,
            lambda: list(pool.map(work, items, chunksize=10)),
            "list(pool.map(work, items, chunksize=10))",
        ),
        Contender(
            IN_FLIGHT,
            lambda: sorted(asyncio.run(in_flight(items, work, pool, WORKERS))),
            f"{WORKERS} tasks: for x in items: await wrap_future(pool.submit(work, x))",
            "as many submits in flight as parallel(2) keeps",
        ),
    ]
    if has_parallel():
        options: dict[str, dict[str, Any]] = {
            RXPIPE: {},
            RXPIPE_ORDERED: {"ordered": True},
            RXPIPE_B10: {"batch": 10},
        }
        for name, code in _rxpipe_rows():
            out.append(Contender(name, _parallel(items, work, pool, **options[name]), code))
    return out


def _chunk(work: Callable[[int], tuple[int, int]], xs: list[int]) -> list[tuple[int, int]]:
    """Module-level (picklable): ``work`` over a list, in one call."""
    return [work(x) for x in xs]


def parallel_capacity(
    pool: Executor, work: Callable[[int], tuple[int, int]], *, items: int = 40, repeats: int = 3
) -> float:
    """How many cores the pool really gets just now (2.0 on an idle 2-core machine).

    ``WORKERS`` times the serial time of one chunk of ``items`` items, over the wall time of
    ``WORKERS`` such chunks on the pool; the median of ``repeats``. Other processes taking CPU
    time lower it: then no contender can reach a ``WORKERS``-fold speed-up.
    """
    xs = list(range(items))
    ratios = []
    for _ in range(repeats):
        one, _ = time_once(lambda: _chunk(work, xs))
        many, _ = time_once(
            lambda: [f.result() for f in [pool.submit(_chunk, work, xs) for _ in range(WORKERS)]]
        )
        ratios.append(WORKERS * one / many)
    return float(statistics.median(ratios))


@dataclass(frozen=True, slots=True)
class CpuRun:
    """The measurement, and the pool's capacity (effective cores) before and after it."""

    measurement: Measurement
    capacity_before: float
    capacity_after: float
    load: str = ""


def measure_cpu(n: int, *, rounds: int, warmup: int = 1, loops: int | None = None) -> CpuRun:
    """Start a pool, measure every contender on ``n`` items, shut the pool down.

    ``loops`` overrides the calibrated item cost (the tests use a tiny one).
    """
    load = _load()
    progress("calibrating the work item")
    loops = calibrate() if loops is None else loops
    work = functools.partial(cpu_work, loops=loops)
    progress(f"starting a process pool of {WORKERS}")
    with process_pool() as pool:
        list(pool.map(abs, range(4 * WORKERS)))  # start every worker before timing
        progress("effective cores, before the rounds")
        before = parallel_capacity(pool, work)
        m = measure(
            contenders(n, pool, loops=loops),
            baseline=BASELINE,
            items=n,
            rounds=rounds,
            warmup=warmup,
        )
        progress("effective cores, after the rounds")
        after = parallel_capacity(pool, work)
    return CpuRun(m, before, after, load)


def _unavailable_rows(items: Sequence[Unavailable]) -> str:
    return "".join(f"\n| {u.name} ({u.reason}) | `{u.code}` | - | - | - | - | - |" for u in items)


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def render(result: CpuRun, n: int) -> str:
    """The Markdown section: caption, contender table, targets."""
    m, load = result.measurement, result.load
    skipped = unavailable()
    missing = "".join(f" `{u.name}`: {u.reason}." for u in skipped)
    serial = m[BASELINE].ns_per_item / 1e6
    caption = (
        f"N = {fmt_count(n)} items of pure-Python CPU work each (`work = partial(cpu_work, "
        f"loops=L)`, a loop calibrated once to about {ITEM_SECONDS * 1e3:g} ms; the serial "
        f"row measured {serial:.2f} ms per item in this run), over a "
        f"`ProcessPoolExecutor({WORKERS})` with the `{START_METHOD}` start method, started "
        "once and warmed up before the timed rounds, shared by every contender that uses it. "
        "Every contender returns the list of `(item, checksum)` results; unordered ones "
        "return it sorted, so every output is checked equal to the serial one in every "
        "round.\n\n"
        f"Median of {m.rounds} timed rounds after {m.warmup} warm-up round"
        f"{'s' if m.warmup != 1 else ''}, contenders interleaved round-robin. "
        f"**vs {BASELINE}** is the paired ratio of times (lower is faster); a speed-up is its "
        f"inverse. The ideal on {WORKERS} cores is a {WORKERS}x speed-up; the machine is "
        "shared, so other processes take cores away from the pool. **Effective cores**: "
        f"{WORKERS} chunks of 40 items on the pool against one chunk serially measured "
        f"{result.capacity_before:.2f} cores before the rounds and "
        f"{result.capacity_after:.2f} after (2.00: both cores free)"
        + (f"; load average when this run started: {load}" if load else "")
        + "."
        + missing
    )
    results = [t.evaluate(m) for t in TARGETS]
    return (
        "## CPU-bound fan-out: a process pool of 2\n\n"
        f"{caption}\n\n{contender_table(m)}{_unavailable_rows(skipped)}\n\n"
        "**Targets** (reported, never enforced: a missed target does not fail the run)\n\n"
        f"{target_table(results)}\n"
    )


def run(quick: bool, out: Path) -> Section:
    n = N_QUICK if quick else N_FULL
    result = measure_cpu(n, rounds=ROUNDS_QUICK if quick else ROUNDS_FULL)
    m = result.measurement
    return Section(
        render(result, n),
        headline(m, pull=RXPIPE, push=None, peers=(BASELINE, POOL_MAP, POOL_MAP_10, IN_FLIGHT)),
        tuple(t.evaluate(m) for t in TARGETS),
    )


WORKLOAD: Final = Workload(
    name="cpu_fanout",
    title="CPU-bound fan-out on a process pool of 2: serial, ProcessPoolExecutor.map, parallel",
    run=run,
)
