"""Trivial items through a Dask cluster: what batching buys rxpipe's ``parallel`` on Dask.

``inc(x) = x + 1`` costs nothing, so the table measures only the way there and back: a
``distributed.LocalCluster`` of 2 worker processes with one thread each, on 127.0.0.1, behind
``client.get_executor(pure=False)`` (a ``concurrent.futures.Executor``; ``pure=False`` so that
identical calls are not merged). The cluster starts once per measurement, before the rounds,
and is closed (client, then cluster) afterwards, also on error; if it cannot start, the
section says so and the rest of the benchmark goes on.

Two tables, because one Dask task per item is about a hundred times slower than batches:

- batched, on N items: rxpipe ``parallel(2, rxpipe.stage().map(inc), executor=ex, batch=B)``
  for B = 100 and 1000, against the hand-written batches ``ex.submit(inc_batch, chunk)``
  for every chunk of 1000 (the BASELINE) or 100 items, all submitted at once; plus the
  plain in-process list comprehension as a reference;
- one task per item, on fewer items: rxpipe with ``batch=1`` against the hand-written
  ``ex.map(inc, items)`` (the BASELINE of that table; Dask's ``map`` ignores ``chunksize``).

rxpipe's rows are unordered (``parallel``'s default) and return their results sorted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import rxpipe
from comparisons.harness import Contender, Measurement, TargetResult, measure, progress
from comparisons.report import (
    Section,
    contender_table,
    fmt_count,
    fmt_rate,
    headline,
    target_table,
)
from comparisons.workloads import Workload
from rxpipe import Flow

__all__ = (
    "BATCHES",
    "BATCH_BASELINE",
    "DEEP",
    "IN_PROCESS",
    "MAP_BASELINE",
    "RATE_TARGET",
    "WORKERS",
    "WORKLOAD",
    "DaskRun",
    "Unavailable",
    "batched_contenders",
    "dask_executor",
    "has_parallel",
    "inc",
    "inc_batch",
    "measure_dask",
    "render",
    "run",
    "rxpipe_name",
    "single_contenders",
    "target_results",
    "unavailable",
)

N_FULL: Final = 20_000
N_QUICK: Final = 5_000
#: Items of the one-task-per-item table (a few hundred tasks per second on Dask).
N_SINGLE_FULL: Final = 1_000
N_SINGLE_QUICK: Final = 50
ROUNDS_FULL: Final = 5
ROUNDS_QUICK: Final = 3

WORKERS: Final = 2
#: rxpipe's batch sizes in the batched table (batch=1 has a table of its own).
BATCHES: Final = (100, 1000)
#: ``parallel(n)`` beyond the worker count: n batches run and n more wait, so a deeper n hides
#: Dask's per-task latency (every table also runs it, with the smaller batch).
DEEP: Final = 8
#: The target: rxpipe's items per second with batching.
RATE_TARGET: Final = 20_000

BATCH_BASELINE: Final = "hand-written submit, 1000 per task"
BATCH_100: Final = "hand-written submit, 100 per task"
IN_PROCESS: Final = "in-process list comprehension"
MAP_BASELINE: Final = "hand-written ex.map"

CLUSTER_CODE: Final = (
    f"LocalCluster(n_workers={WORKERS}, threads_per_worker=1, processes=True, "
    'host="127.0.0.1", dashboard_address=None); ex = Client(cluster).get_executor(pure=False)'
)


def inc(x: int) -> int:
    """The work: module-level, so Dask workers import it rather than receive its code."""
    return x + 1


def inc_batch(xs: list[int]) -> list[int]:
    """The hand-written batch task."""
    return [x + 1 for x in xs]


def rxpipe_name(batch: int, n: int = WORKERS) -> str:
    return f"rxpipe parallel({n}), batch={batch}"


def _rxpipe_code(batch: int, n: int = WORKERS) -> str:
    return (
        f"Flow.from_iterable(items).parallel({n}, rxpipe.stage().map(inc), executor=ex, "
        f"batch={batch}).to_list()"
    )


def _rxpipe_contender(items: Sequence[int], ex: Executor, batch: int, n: int) -> Contender:
    note = f"{n} tasks running, {n} queued, on {WORKERS} workers" if n != WORKERS else ""
    return Contender(
        rxpipe_name(batch, n), _parallel(items, ex, batch, n), _rxpipe_code(batch, n), note
    )


def has_parallel() -> bool:
    """Whether this rxpipe has ``Flow.parallel`` (written separately)."""
    return callable(getattr(Flow, "parallel", None))


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A contender this rxpipe cannot run (yet): listed in the table, not measured."""

    name: str
    code: str
    reason: str


def unavailable(batches: Sequence[int]) -> list[Unavailable]:
    """The rxpipe rows for these batch sizes, if this rxpipe cannot run them."""
    if has_parallel():
        return []
    reason = "not available: no `Flow.parallel` in this rxpipe"
    return [Unavailable(rxpipe_name(b), _rxpipe_code(b), reason) for b in batches]


@contextmanager
def dask_executor(workers: int = WORKERS) -> Iterator[Executor]:
    """A local cluster's executor; on exit the client closes, then the cluster.

    Raises:
        ImportError: ``distributed`` is not installed.
        Exception: whatever starting the cluster raised (nothing is left running).
    """
    import importlib

    distributed: Any = importlib.import_module("distributed")  # Any: untyped in parts
    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        client = distributed.Client(cluster)
        try:
            executor: Executor = client.get_executor(pure=False)
            executor.submit(inc, 0).result()  # the workers import this module once, untimed
            yield executor
        finally:
            client.close()
    finally:
        cluster.close()


def _parallel(
    items: Sequence[int], ex: Executor, batch: int, n: int = WORKERS
) -> Callable[[], list[int]]:
    def go() -> list[int]:
        flow: Any = Flow.from_iterable(items)  # Any: Flow.parallel may not exist yet
        out: list[int] = flow.parallel(
            n, rxpipe.stage().map(inc), executor=ex, batch=batch
        ).to_list()
        return sorted(out)

    return go


def _submit_batches(items: Sequence[int], ex: Executor, size: int) -> Callable[[], list[int]]:
    def go() -> list[int]:
        futures = [
            ex.submit(inc_batch, list(items[i : i + size])) for i in range(0, len(items), size)
        ]
        return [y for f in futures for y in f.result()]

    return go


def batched_contenders(n: int, ex: Executor) -> list[Contender]:
    """The batched table's runnable contenders on ``n`` items."""
    items = list(range(n))
    out = [
        Contender(
            BATCH_BASELINE,
            _submit_batches(items, ex, 1000),
            "futures = [ex.submit(inc_batch, chunk) for each chunk of 1000]; "
            "[y for f in futures for y in f.result()]",
        ),
        Contender(
            BATCH_100,
            _submit_batches(items, ex, 100),
            "the same with chunks of 100",
        ),
        Contender(
            IN_PROCESS,
            lambda: [inc(x) for x in items],
            "[inc(x) for x in items]",
            "no Dask; reference",
        ),
    ]
    if has_parallel():
        out += [_rxpipe_contender(items, ex, b, WORKERS) for b in BATCHES]
        out.append(_rxpipe_contender(items, ex, BATCHES[0], DEEP))
    return out


def single_contenders(n: int, ex: Executor) -> list[Contender]:
    """The one-task-per-item table's runnable contenders on ``n`` items."""
    items = list(range(n))
    out = [Contender(MAP_BASELINE, lambda: list(ex.map(inc, items)), "list(ex.map(inc, items))")]
    if has_parallel():
        out += [_rxpipe_contender(items, ex, 1, n) for n in (WORKERS, DEEP)]
    return out


@dataclass(frozen=True, slots=True)
class DaskRun:
    """Both tables of one run, or why there are none (``error``)."""

    batched: Measurement | None
    single: Measurement | None
    error: str = ""


def measure_dask(n: int, n_single: int, *, rounds: int, warmup: int = 1) -> DaskRun:
    """Start a cluster, measure both tables, close the cluster (the tests use tiny sizes).

    A cluster that cannot start gives a ``DaskRun`` with ``error`` set, not an exception.
    """
    with ExitStack() as stack:
        progress(f"starting a local Dask cluster of {WORKERS} workers")
        try:
            ex = stack.enter_context(dask_executor())
        except Exception as exc:  # report it; the rest of the benchmark goes on
            return DaskRun(None, None, f"{type(exc).__name__}: {exc}")
        batched = measure(
            batched_contenders(n, ex),
            baseline=BATCH_BASELINE,
            items=n,
            rounds=rounds,
            warmup=warmup,
        )
        single = measure(
            single_contenders(n_single, ex),
            baseline=MAP_BASELINE,
            items=n_single,
            rounds=rounds,
            warmup=warmup,
        )
    return DaskRun(batched, single)


def target_results(batched: Measurement | None) -> list[TargetResult]:
    """One per batched rxpipe contender: at least :data:`RATE_TARGET` items per second (a
    floor: met at or above it)."""
    results = []
    goal = f"at least {fmt_count(RATE_TARGET)} items / s"
    for name in [rxpipe_name(b) for b in BATCHES] + [rxpipe_name(BATCHES[0], DEEP)]:
        text = f"`{name}` {goal}"
        if batched is None or name not in batched:
            results.append(TargetResult(text, None, "not run", goal))
            continue
        rate = batched[name].items_per_second
        results.append(TargetResult(text, rate >= RATE_TARGET, f"{fmt_rate(rate)} items / s", goal))
    return results


def _unavailable_rows(items: Sequence[Unavailable]) -> str:
    return "".join(f"\n| {u.name} ({u.reason}) | `{u.code}` | - | - | - | - | - |" for u in items)


def render(result: DaskRun, n: int, n_single: int) -> str:
    """The Markdown section: caption, both tables (or why not), the target."""
    heading = "## Dask fan-out: trivial items, batched and one per task\n\n"
    setup = (
        f"`inc(x) = x + 1` through a Dask cluster on this machine: `{CLUSTER_CODE}`. The "
        "cluster starts once, before the rounds (not timed), and is closed at the end. "
        "Every contender returns the list of results (rxpipe's unordered ones sorted), "
        "checked equal to the baseline's in every round. **items / s** is N over the median "
        "wall time of one run."
    )
    targets = (
        "**Targets** (reported, never enforced: a missed target does not fail the run)\n\n"
        + target_table(target_results(result.batched))
        + "\n"
    )
    if result.error:
        return (
            f"{heading}{setup}\n\n**Not available**: the Dask cluster could not start "
            f"(`{result.error}`), so nothing was measured.\n\n{targets}"
        )
    b, s = result.batched, result.single
    assert b is not None
    assert s is not None
    rounds = (
        f"Median of {b.rounds} timed rounds after {b.warmup} warm-up round"
        f"{'s' if b.warmup != 1 else ''}, contenders interleaved round-robin; **vs** is the "
        "paired ratio of times to the table's baseline (lower is faster)."
    )
    return (
        f"{heading}{setup} {rounds}\n\n"
        f"**Batched**: N = {fmt_count(n)} items. rxpipe sends `batch` items per Dask task; "
        "`parallel(n)` keeps n tasks running and n more queued (a Dask task's round trip "
        "costs milliseconds, so n above the worker count keeps the workers fed); the "
        "hand-written rows submit every chunk at once.\n\n"
        f"{contender_table(b)}{_unavailable_rows(unavailable(BATCHES))}\n\n"
        f"**One Dask task per item**: N = {fmt_count(n_single)} items (a Dask task costs "
        "milliseconds: this table would take minutes at the batched table's N).\n\n"
        f"{contender_table(s)}{_unavailable_rows(unavailable((1,)))}\n\n{targets}"
    )


def run(quick: bool, out: Path) -> Section:
    n = N_QUICK if quick else N_FULL
    n_single = N_SINGLE_QUICK if quick else N_SINGLE_FULL
    result = measure_dask(n, n_single, rounds=ROUNDS_QUICK if quick else ROUNDS_FULL)
    if result.batched is None:
        line = f"not measured: {result.error}"
    else:
        line = headline(
            result.batched,
            pull=rxpipe_name(BATCHES[-1]),
            push=None,
            peers=(BATCH_BASELINE, BATCH_100),
        )
    return Section(render(result, n, n_single), line, tuple(target_results(result.batched)))


WORKLOAD: Final = Workload(
    name="dask_fanout",
    title="trivial items on a local Dask cluster: parallel(batch=1, 100, 1000) vs hand-written",
    run=run,
)
