"""IO-bound fan-out: N items, each awaiting a skewed delay, at most 8 awaits at once.

Every item ``i`` awaits ``asyncio.sleep(delays[i])`` and returns ``i``. The delays are drawn
once from a seeded log-normal distribution, scaled so that their median is 1 ms, with a p99
of about 10 ms (a few slow calls among many fast ones, the shape of real IO). Parallelism is
8 everywhere, in input order (ordered) and in completion order (unordered):

- rxpipe ``Flow.from_iterable(items).map_async(work, concurrency=8, ordered=...)`` on the pull
  engine and on the push engine's asyncio runtime (``to_list_async`` inside one
  ``asyncio.run`` per call), and on the push engine's threads runtime (informational);
- the BASELINE: a hand-written pool of 8 worker tasks fed by a producer through an
  ``asyncio.Queue(8)``; its ordered variant sorts the results by index afterwards;
- ``asyncio.Semaphore(8)`` around each call, all calls started at once by ``gather`` (ordered);
- aiostream's ``stream.map(..., task_limit=8, ordered=...)``;
- reactivex: each call is a deferred ``from_future`` observable, flattened by
  ``merge(max_concurrent=8)``; its ordered variant sorts by index afterwards.

The unordered contenders return their results sorted (the same sort for all of them, inside
the timed call, well under a millisecond) so that every output is compared with the
baseline's. Reference rows, computed and not run, show what a zero-overhead runtime would
take: the sum of the delays / 8, the list schedule of 8 workers taking the items in input
order, and that schedule with map_async's ordered window (at most ``4 * concurrency`` items
running or waiting to be emitted in order).

A second table runs the same contenders with calls that await ``asyncio.sleep(0)``: what is
left is what each way of fanning out costs per item on the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import statistics
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

import reactivex
from aiostream import stream
from reactivex import operators as ops

from comparisons.harness import Contender, Measurement, Target, measure, progress
from comparisons.report import Section, contender_table, fmt_count, fmt_rate, headline, target_table
from comparisons.workloads import Workload
from rxpipe import Flow, PushEngine

__all__ = (
    "AIOSTREAM_O",
    "AIOSTREAM_U",
    "BASELINE",
    "CONCURRENCY",
    "POOL_O",
    "PULL_O",
    "PULL_O_WIDE",
    "PULL_U",
    "PUSH_O",
    "PUSH_O_WIDE",
    "PUSH_U",
    "QUICK_SKIP",
    "RX_O",
    "RX_U",
    "SEMAPHORE",
    "TARGETS",
    "THREADS_O",
    "THREADS_U",
    "WORKLOAD",
    "Reference",
    "Work",
    "aiostream_map",
    "contenders",
    "delays",
    "measure_fanout",
    "queue_pool",
    "references",
    "render",
    "run",
    "rx_merge",
    "schedule",
    "semaphore_gather",
)

N_FULL: Final = 2_000
N_QUICK: Final = 400
ROUNDS_FULL: Final = 7
ROUNDS_QUICK: Final = 5
#: The overhead table: calls that await ``asyncio.sleep(0)``.
ZERO_N_FULL: Final = 10_000
ZERO_N_QUICK: Final = 2_000
ZERO_ROUNDS_FULL: Final = 5
ZERO_ROUNDS_QUICK: Final = 3

#: The most calls running at once, for every contender.
CONCURRENCY: Final = 8
#: map_async's ordered window: at most this many items running or waiting to be emitted.
ORDERED_WINDOW: Final = 4 * CONCURRENCY
#: A wider ordered window (``map_async(window=)``), to show what the default's bound costs.
WIDE_WINDOW: Final = 8 * CONCURRENCY
SEED: Final = 20_261_128
MEDIAN_S: Final = 1e-3
#: sigma of the log-normal: exp(sigma * z_0.99) = 10, so p99 = 10 x the median.
SIGMA: Final = math.log(10) / 2.326_347_874_040_841

BASELINE: Final = "asyncio.Queue pool, unordered"
POOL_O: Final = "asyncio.Queue pool, ordered"
PULL_U: Final = "pull map_async, unordered"
PULL_O: Final = "pull map_async, ordered"
PUSH_U: Final = "push asyncio map_async, unordered"
PUSH_O: Final = "push asyncio map_async, ordered"
PULL_O_WIDE: Final = f"pull map_async, ordered, window={WIDE_WINDOW}"
PUSH_O_WIDE: Final = f"push asyncio map_async, ordered, window={WIDE_WINDOW}"
THREADS_U: Final = "push threads map_async, unordered"
THREADS_O: Final = "push threads map_async, ordered"
SEMAPHORE: Final = "Semaphore(8) + gather, ordered"
AIOSTREAM_U: Final = "aiostream map, unordered"
AIOSTREAM_O: Final = "aiostream map, ordered"
RX_U: Final = "reactivex merge(max_concurrent=8), unordered"
RX_O: Final = "reactivex merge(max_concurrent=8), ordered"

#: Rows quick mode leaves out (no target or headline uses them; ``make bench-full`` runs them):
#: the threads runtime (informational), the ordered peers and the semaphore.
QUICK_SKIP: Final = frozenset({THREADS_U, THREADS_O, AIOSTREAM_O, RX_O, SEMAPHORE})

TARGETS: Final = (
    Target(f"`{PULL_U}` within 1.05x of `{BASELINE}`", PULL_U, BASELINE, "within", 1.05),
    Target(f"`{PUSH_U}` within 1.05x of `{BASELINE}`", PUSH_U, BASELINE, "within", 1.05),
    Target(f"`{PULL_O}` within 1.10x of `{POOL_O}`", PULL_O, POOL_O, "within", 1.10),
    Target(f"`{PUSH_O}` within 1.10x of `{POOL_O}`", PUSH_O, POOL_O, "within", 1.10),
    Target(f"`{PULL_O_WIDE}` within 1.10x of `{POOL_O}`", PULL_O_WIDE, POOL_O, "within", 1.10),
    Target(f"`{PUSH_O_WIDE}` within 1.10x of `{POOL_O}`", PUSH_O_WIDE, POOL_O, "within", 1.10),
)

#: An async call on one item.
Work = Callable[[int], Coroutine[Any, Any, int]]


def delays(n: int, *, seed: int = SEED) -> tuple[float, ...]:
    """``n`` seeded log-normal delays in seconds, scaled so that their median is exactly 1 ms.

    The distribution's p99 is 10 ms; the p99 of ``n`` draws is close to it.
    """
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0.0, SIGMA) for _ in range(n)]
    scale = MEDIAN_S / statistics.median(raw)
    return tuple(x * scale for x in raw)


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (``statistics.quantiles``, exclusive method)."""
    if len(values) < 2:
        return max(values)
    return statistics.quantiles(values, n=100)[98]


def make_work(waits: Sequence[float]) -> Work:
    """``work(i)``: await ``asyncio.sleep(waits[i])``, then return ``i``."""

    async def work(i: int) -> int:
        await asyncio.sleep(waits[i])
        return i

    return work


# -- the hand-written fan-outs -----------------------------------------------------------------
async def queue_pool(items: Sequence[int], work: Work, workers: int, *, ordered: bool) -> list[int]:
    """A producer feeds ``workers`` tasks through an ``asyncio.Queue(workers)``.

    Results are collected as they finish; ``ordered`` sorts them by input index afterwards.
    """
    q: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue(workers)
    done: list[tuple[int, int]] = []

    async def producer() -> None:
        for job in enumerate(items):
            await q.put(job)
        for _ in range(workers):
            await q.put(None)

    async def worker() -> None:
        while (job := await q.get()) is not None:
            index, item = job
            done.append((index, await work(item)))

    await asyncio.gather(producer(), *(worker() for _ in range(workers)))
    if ordered:
        done.sort(key=itemgetter(0))
    return [result for _, result in done]


async def semaphore_gather(items: Sequence[int], work: Work, limit: int) -> list[int]:
    """Every call started at once by ``gather``, at most ``limit`` past the semaphore."""
    sem = asyncio.Semaphore(limit)

    async def one(item: int) -> int:
        async with sem:
            return await work(item)

    return await asyncio.gather(*(one(x) for x in items))


async def aiostream_map(
    items: Sequence[int], work: Work, limit: int, *, ordered: bool
) -> list[int]:
    """aiostream's ``map`` with ``task_limit``; ``ordered`` is aiostream's own option."""
    # Any: aiostream types map's function as taking the items of *more_sources as well
    aio: Any = stream
    xs = aio.map(aio.iterate(items), work, ordered=ordered, task_limit=limit)
    result: list[int] = await aio.list(xs)
    return result


async def rx_merge(items: Sequence[int], work: Work, limit: int, *, ordered: bool) -> list[int]:
    """reactivex: one deferred ``from_future`` per call, ``merge(max_concurrent=limit)``.

    ``defer`` starts the call (``ensure_future``) only when ``merge`` subscribes, which it does
    for at most ``limit`` inner observables at once, so the calls are bounded. The source is
    not: reactivex has no backpressure, so ``merge`` queues every not-yet-started observable.
    ``ordered`` sorts the results by input index afterwards.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    done: list[tuple[int, int]] = []

    def call(job: tuple[int, int]) -> reactivex.Observable[tuple[int, int]]:
        index, item = job

        def start(_: object) -> reactivex.Observable[tuple[int, int]]:
            future = asyncio.ensure_future(work(item))
            return reactivex.from_future(future).pipe(ops.map(lambda r: (index, r)))

        return reactivex.defer(start)

    def on_error(exc: Exception) -> None:
        if not finished.done():
            finished.set_exception(exc)

    def on_completed() -> None:
        if not finished.done():
            finished.set_result(None)

    source = reactivex.from_iterable(enumerate(items)).pipe(
        ops.map(call), ops.merge(max_concurrent=limit)
    )
    subscription = source.subscribe(
        on_next=done.append, on_error=on_error, on_completed=on_completed
    )
    try:
        await finished
    finally:
        subscription.dispose()
    if ordered:
        done.sort(key=itemgetter(0))
    return [result for _, result in done]


# -- contenders --------------------------------------------------------------------------------
def _sync(
    make: Callable[[], Coroutine[Any, Any, list[int]]], *, ordered: bool
) -> Callable[[], list[int]]:
    """Run ``make()`` in one ``asyncio.run``; unordered results are returned sorted."""

    def go() -> list[int]:
        out = asyncio.run(make())
        return out if ordered else sorted(out)

    return go


def _rxpipe(
    flow: Flow[int], engine: PushEngine | None, *, ordered: bool
) -> Callable[[], list[int]]:
    """``flow`` on the pull engine (``engine=None``) or an asyncio push engine, in asyncio.run."""
    if engine is None:
        return _sync(flow.to_list_async, ordered=ordered)
    return _sync(lambda: flow.to_list_async(engine=engine), ordered=ordered)


def _threads(flow: Flow[int], *, ordered: bool) -> Callable[[], list[int]]:
    """``flow.to_list()`` on the push engine's threads runtime, in the calling thread."""
    engine = PushEngine(runtime="threads")

    def go() -> list[int]:
        out = flow.to_list(engine=engine)
        return out if ordered else sorted(out)

    return go


def contenders(n: int, *, zero: bool = False) -> list[Contender]:
    """Every contender on ``n`` items (``0 .. n-1``; item ``i`` sleeps ``delays(n)[i]``).

    With ``zero``, every call awaits ``asyncio.sleep(0)`` instead: what is left is what the
    fan-out machinery costs per item.
    """
    items = list(range(n))
    work = make_work((0.0,) * n if zero else delays(n))
    c = CONCURRENCY
    out: list[Contender] = []
    for ordered in (False, True):
        flow = Flow.from_iterable(items).map_async(work, concurrency=c, ordered=ordered)
        chain = f"Flow.from_iterable(items).map_async(work, concurrency={c}, ordered={ordered})"
        after = ", sorted by index after" if ordered else ""
        out += [
            Contender(
                POOL_O if ordered else BASELINE,
                _sync(partial(queue_pool, items, work, c, ordered=ordered), ordered=ordered),
                f"producer -> asyncio.Queue({c}) -> {c} worker tasks{after}",
            ),
            Contender(
                PULL_O if ordered else PULL_U,
                _rxpipe(flow, None, ordered=ordered),
                f"asyncio.run({chain}.to_list_async())",
            ),
            Contender(
                PUSH_O if ordered else PUSH_U,
                _rxpipe(flow, PushEngine(runtime="asyncio"), ordered=ordered),
                f"asyncio.run({chain}.to_list_async(engine=PushEngine()))",
            ),
            Contender(
                THREADS_O if ordered else THREADS_U,
                _threads(flow, ordered=ordered),
                f'{chain}.to_list(engine=PushEngine(runtime="threads"))',
                "informational",
            ),
            Contender(
                AIOSTREAM_O if ordered else AIOSTREAM_U,
                _sync(partial(aiostream_map, items, work, c, ordered=ordered), ordered=ordered),
                f"stream.map(stream.iterate(items), work, ordered={ordered}, task_limit={c})",
            ),
            Contender(
                RX_O if ordered else RX_U,
                _sync(partial(rx_merge, items, work, c, ordered=ordered), ordered=ordered),
                "from_iterable(items).pipe(map(defer(from_future(work(i)))), "
                f"merge(max_concurrent={c})){after}",
                "no backpressure: merge queues every pending call",
            ),
        ]
    wide = Flow.from_iterable(items).map_async(work, concurrency=c, window=WIDE_WINDOW)
    chain = f"Flow.from_iterable(items).map_async(work, concurrency={c}, window={WIDE_WINDOW})"
    out += [
        Contender(
            PULL_O_WIDE, _rxpipe(wide, None, ordered=True), f"asyncio.run({chain}.to_list_async())"
        ),
        Contender(
            PUSH_O_WIDE,
            _rxpipe(wide, PushEngine(runtime="asyncio"), ordered=True),
            f"asyncio.run({chain}.to_list_async(engine=PushEngine()))",
        ),
    ]
    out.append(
        Contender(
            SEMAPHORE,
            _sync(partial(semaphore_gather, items, work, c), ordered=True),
            f"gather(*(one(x) for x in items)), one(x) awaits work(x) under Semaphore({c})",
            "all N tasks exist at once",
        )
    )
    return out


def measure_fanout(
    n: int,
    *,
    rounds: int,
    warmup: int = 1,
    zero: bool = False,
    skip: frozenset[str] = frozenset(),
) -> Measurement:
    """Measure every contender on ``n`` items (the tests use a tiny ``n``); ``zero``: no delays;
    ``skip``: contenders left out (quick mode's :data:`QUICK_SKIP`)."""
    cs = [c for c in contenders(n, zero=zero) if c.name not in skip]
    return measure(cs, baseline=BASELINE, items=n, rounds=rounds, warmup=warmup)


# -- reference rows ----------------------------------------------------------------------------
def schedule(waits: Sequence[float], slots: int, *, window: int | None = None) -> float:
    """The makespan of ``slots`` zero-overhead workers taking the items in input order.

    With ``window``, an item may only start while fewer than ``window`` items are running or
    finished but waiting for an earlier one to be emitted (ordered emission; the consumer
    takes each item as soon as it is next in order).
    """
    now = 0.0
    running: list[tuple[float, int]] = []
    finished: set[int] = set()
    started = emitted = 0
    n = len(waits)
    while emitted < n:
        while (
            started < n and len(running) < slots and (window is None or started - emitted < window)
        ):
            heapq.heappush(running, (now + waits[started], started))
            started += 1
        now, index = heapq.heappop(running)
        if window is None:
            emitted += 1
            continue
        finished.add(index)
        while emitted in finished:
            finished.discard(emitted)
            emitted += 1
    return now


@dataclass(frozen=True, slots=True)
class Reference:
    """A computed (not run) time, shown as a row of the table."""

    name: str
    how: str
    seconds: float


def references(waits: Sequence[float]) -> list[Reference]:
    """The reference rows for these delays."""
    c = CONCURRENCY
    return [
        Reference("ideal: sum of delays / 8", f"sum(delays) / {c}", sum(waits) / c),
        Reference(
            "ideal: 8 workers, input order",
            f"list schedule, {c} slots, no overhead",
            schedule(waits, c),
        ),
        Reference(
            f"ideal: 8 workers, ordered window {ORDERED_WINDOW}",
            f"list schedule, {c} slots, <= {ORDERED_WINDOW} running or waiting",
            schedule(waits, c, window=ORDERED_WINDOW),
        ),
        Reference(
            f"ideal: 8 workers, ordered window {WIDE_WINDOW}",
            f"list schedule, {c} slots, <= {WIDE_WINDOW} running or waiting",
            schedule(waits, c, window=WIDE_WINDOW),
        ),
    ]


def _reference_rows(m: Measurement, refs: Sequence[Reference]) -> str:
    base = m[BASELINE].median_ns
    rows = ""
    for r in refs:
        ns = r.seconds * 1e9
        rows += (
            f"\n| {r.name} (reference, not run) | `{r.how}` | {ns / 1e6:.1f} | - "
            f"| {ns / m.items:.1f} | {fmt_rate(m.items / r.seconds)} | {ns / base:.2f}x |"
        )
    return rows


def render(m: Measurement, n: int, overhead: Measurement | None = None) -> str:
    """The Markdown section: caption, contender table with reference rows, targets.

    ``overhead``, if given, is the same contenders measured with zero delays (``zero=True``).
    """
    waits = delays(n)
    refs = references(waits)
    caption = (
        f"N = {fmt_count(n)} items; item `i` awaits `asyncio.sleep(delays[i])` and returns `i`. "
        "The delays are drawn once from a seeded log-normal distribution, scaled to a median "
        f"of 1 ms: this run's delays have median {statistics.median(waits) * 1e3:.2f} ms, "
        f"p99 {p99(waits) * 1e3:.2f} ms, max {max(waits) * 1e3:.1f} ms, sum "
        f"{sum(waits):.3f} s. At most {CONCURRENCY} calls run at once in every contender. "
        "Each contender runs in one `asyncio.run(...)` per call (the threads row runs "
        "`to_list()` in the calling thread) and returns the list of results; unordered "
        "contenders return it sorted, so that every output is checked equal to the "
        "baseline's in every round.\n\n"
        f"**median ms** is the wall time of one run (median of {m.rounds} timed rounds after "
        f"{m.warmup} warm-up round{'s' if m.warmup != 1 else ''}, contenders interleaved "
        f"round-robin); **vs {BASELINE}** is the paired ratio of times (lower is faster). "
        "The baseline is a hand-written pool: a producer task feeds "
        f"{CONCURRENCY} worker tasks through an `asyncio.Queue({CONCURRENCY})`; its ordered "
        "variant sorts the results by index afterwards (it holds every result, unbounded). "
        "rxpipe's ordered `map_async` instead keeps at most "
        f"`4 * concurrency` = {ORDERED_WINDOW} items running or waiting in order (the bound "
        "API.md sets), so a slow call stalls the window: the last two reference rows compute "
        f"that cost with zero overhead, for the default window and for `window={WIDE_WINDOW}`, "
        "which the `window=` rows run. The event loop sleeps at least until the timer is "
        "due and `epoll` waits in whole milliseconds, so every real row sits above the "
        "ideal rows."
    )
    left_out = [c.name for c in contenders(1) if c.name not in m]
    if left_out:
        caption += (
            " Quick mode leaves out rows no target uses (`make bench-full` runs them): "
            + ", ".join(f"`{name}`" for name in left_out)
            + "."
        )
    results = [t.evaluate(m) for t in TARGETS]
    text = (
        "## IO-bound fan-out: skewed async calls, 8 at a time\n\n"
        f"{caption}\n\n{contender_table(m)}{_reference_rows(m, refs)}\n\n"
        "**Targets** (reported, never enforced: a missed target does not fail the run)\n\n"
        f"{target_table(results)}\n"
    )
    if overhead is not None:
        text += (
            "\n**What the fan-out itself costs per item**: the same contenders on "
            f"{fmt_count(overhead.items)} items whose calls await `asyncio.sleep(0)` instead "
            f"of a delay (median of {overhead.rounds} rounds). **ns / item** is then the event "
            "loop's time per item for starting the call, awaiting it and collecting its "
            "result; with real delays this work overlaps the waits, except when it delays "
            "the next call's start.\n\n"
            f"{contender_table(overhead)}\n"
        )
    return text


def run(quick: bool, out: Path) -> Section:
    n = N_QUICK if quick else N_FULL
    skip = QUICK_SKIP if quick else frozenset()
    m = measure_fanout(n, rounds=ROUNDS_QUICK if quick else ROUNDS_FULL, skip=skip)
    zero_n = ZERO_N_QUICK if quick else ZERO_N_FULL
    progress("the same with zero delays")
    overhead = measure_fanout(
        zero_n, rounds=ZERO_ROUNDS_QUICK if quick else ZERO_ROUNDS_FULL, zero=True, skip=skip
    )
    return Section(
        render(m, n, overhead),
        headline(m, pull=PULL_U, push=PUSH_U, peers=(BASELINE, AIOSTREAM_U, RX_U)),
        tuple(t.evaluate(m) for t in TARGETS),
    )


WORKLOAD: Final = Workload(
    name="io_fanout",
    title="IO-bound fan-out, 8 at a time: map_async (pull, push), asyncio pools, aiostream, rx",
    run=run,
)
