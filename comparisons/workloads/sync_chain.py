"""A synchronous chain ``range(N) -> map(f) -> filter(p) -> take(K)``, K = N // 2.

The cheapest possible per-item work (``f`` and ``p`` are one-line Python functions), so the
table shows what each way of running a pipeline costs per item on top of the user's calls.
The builtin ``list(islice(filter(p, map(f, range(N))), K))`` is the baseline: no pipeline
can beat it by much, and the fused pull engine aims to stay close to it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Final

from comparisons.harness import Contender, Measurement, Target, measure
from comparisons.report import Section, contender_table, fmt_count, headline, target_table
from comparisons.workloads import Workload
from rxpipe import Flow, PullEngine

__all__ = (
    "TARGETS",
    "WORKLOAD",
    "consumed",
    "contenders",
    "f",
    "measure_chain",
    "p",
    "render",
    "run",
    "sizes",
)

N_FULL: Final = 1_000_000
N_QUICK: Final = 100_000
ROUNDS_FULL: Final = 7
ROUNDS_QUICK: Final = 5

BASELINE: Final = "builtin"
FUSED: Final = "rxpipe to_list (fused)"
ITERATED: Final = "rxpipe for x in flow"
UNFUSED: Final = "rxpipe fuse=False"
RX: Final = "reactivex"

TARGETS: Final = (
    Target(f"`{FUSED}` within 1.3x of `{BASELINE}`", FUSED, BASELINE, "within", 1.3),
    Target(f"`{FUSED}` at least 3x faster than `{RX}`", FUSED, RX, "faster", 3.0),
    Target(f"`{ITERATED}` within 2x of `{BASELINE}`", ITERATED, BASELINE, "within", 2.0),
)


def f(x: int) -> int:
    """The map function."""
    return x * 3 + 1


def p(x: int) -> bool:
    """The filter predicate (keeps 6 items of 7)."""
    return x % 7 != 0


def sizes(n: int) -> tuple[int, int]:
    """(N, K) for a source of ``n`` items."""
    return n, n // 2


def consumed(n: int, k: int) -> int:
    """How many items the chain pulls from ``range(n)``: up to and including the k-th kept one.

    Computed in plain Python, once; every contender pulls exactly these (``take`` stops
    pulling after its k-th item, and ``islice`` likewise).
    """
    if k == 0:
        return 0
    kept = 0
    for i in range(n):
        if p(f(i)):
            kept += 1
            if kept == k:
                return i + 1
    return n


def contenders(n: int, k: int) -> list[Contender]:
    """Every contender for ``range(n) -> map(f) -> filter(p) -> take(k)``.

    Each builds its whole pipeline inside the timed call and returns the list of outputs.
    reactivex is left out when it is not installed (it comes with the ``bench`` extra).
    """

    def builtin() -> list[int]:
        return list(itertools.islice(filter(p, map(f, range(n))), k))

    def generators() -> list[int]:
        mapped = (f(x) for x in range(n))
        kept = (y for y in mapped if p(y))
        return list(itertools.islice(kept, k))

    def fused() -> list[int]:
        return Flow.range(n).map(f).filter(p).take(k).to_list()

    def iterated() -> list[int]:
        return [x for x in Flow.range(n).map(f).filter(p).take(k)]  # item by item, on purpose

    unfused_engine = PullEngine(fuse=False)

    def unfused() -> list[int]:
        return Flow.range(n).map(f).filter(p).take(k).to_list(engine=unfused_engine)

    chain = "Flow.range(N).map(f).filter(p).take(K)"
    out = [
        Contender(BASELINE, builtin, "list(islice(filter(p, map(f, range(N))), K))"),
        Contender(
            "generator expressions",
            generators,
            "list(islice((y for y in (f(x) for x in range(N)) if p(y)), K))",
        ),
        Contender(FUSED, fused, f"{chain}.to_list()"),
        Contender(ITERATED, iterated, f"[x for x in {chain}]"),
        Contender(
            UNFUSED,
            unfused,
            f"{chain}.to_list(engine=PullEngine(fuse=False))",
            note="generic interpreter; informational",
        ),
    ]
    try:
        import reactivex
        from reactivex import operators as ops
    except ImportError:
        return out

    def rx() -> list[int]:
        results: list[list[int]] = []
        errors: list[Exception] = []
        reactivex.range(n).pipe(ops.map(f), ops.filter(p), ops.take(k), ops.to_list()).subscribe(
            on_next=results.append, on_error=errors.append
        )
        if errors:
            raise errors[0]
        (result,) = results  # range() runs on the current thread: done when subscribe returns
        return result

    out.append(
        Contender(
            RX,
            rx,
            "reactivex.range(N).pipe(ops.map(f), ops.filter(p), ops.take(K), ops.to_list())"
            ".subscribe(...)",
        )
    )
    return out


def measure_chain(n: int, *, rounds: int, warmup: int = 1) -> Measurement:
    """Measure every contender on a source of ``n`` items (the test suite uses a tiny ``n``)."""
    n, k = sizes(n)
    return measure(
        contenders(n, k), baseline=BASELINE, items=consumed(n, k), rounds=rounds, warmup=warmup
    )


def render(m: Measurement, n: int) -> str:
    """The Markdown section: heading, caption, contender table, targets."""
    n, k = sizes(n)
    missing = "" if RX in m else " reactivex is not installed, so its row is missing."
    caption = (
        f"`range(N) -> map(f) -> filter(p) -> take(K)` with N = {fmt_count(n)}, "
        f"K = N // 2 = {fmt_count(k)}, `f(x) = x * 3 + 1`, `p(x) = x % 7 != 0` (plain Python "
        "functions). Every contender builds its pipeline and returns the list of the K "
        "outputs, checked equal to the baseline's in every round.\n\n"
        f"**ns / item** is the median wall time of one run divided by the "
        f"{fmt_count(m.items)} items the chain consumes from `range(N)` (up to and including "
        "the K-th kept one; computed once in plain Python), and **items / s** is its inverse. "
        f"Median of {m.rounds} timed rounds after {m.warmup} warm-up round"
        f"{'s' if m.warmup != 1 else ''}; contenders interleaved round-robin in one process; "
        "GC collected, then disabled, around each timed call. "
        f"**vs {BASELINE}** is the median, over rounds, of the contender's time divided by the "
        "baseline's time in the same round (paired, so a slow phase of the machine hits both "
        "sides; lower is faster); the targets use the same paired ratios." + missing
    )
    results = [t.evaluate(m) for t in TARGETS]
    return (
        "## Synchronous chain: range, map, filter, take\n\n"
        f"{caption}\n\n{contender_table(m)}\n\n"
        "**Targets** (reported, never enforced: a missed target does not fail the run)\n\n"
        f"{target_table(results)}\n"
    )


def run(quick: bool, out: Path) -> Section:
    n = N_QUICK if quick else N_FULL
    rounds = ROUNDS_QUICK if quick else ROUNDS_FULL
    m = measure_chain(n, rounds=rounds)
    return Section(
        render(m, n),
        headline(m, pull=FUSED, push=None, peers=(BASELINE, "generator expressions", RX)),
        tuple(t.evaluate(m) for t in TARGETS),
    )


WORKLOAD: Final = Workload(
    name="sync_chain",
    title="synchronous range -> map -> filter -> take: builtins, rxpipe, reactivex",
    run=run,
)
