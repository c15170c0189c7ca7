"""Peak memory against the documented in-flight bound, with 1 MiB items.

A source yields fresh ``bytearray(1 << 20)`` items; ``map`` touches each one in place and
``filter`` keeps them all; the consumer (``foreach``) reads one byte of each item, keeps
nothing, and is slower than the stages (it sleeps briefly per item), so the channels fill up:
the worst case the bound is about. ``tracemalloc`` measures each run: tracing starts right
before the run, the memory traced at that moment is the baseline, and the run's peak minus that
baseline is what the run held at most. The documented bounds (ARCHITECTURE.md, "Memory
bound"): a push pipeline of ``K`` stages with channel buffers ``B_i`` holds at most
``sum(B_i) + K`` items (``PushEngine.in_flight_bound``); the pull engine holds at most the sum
of its boundary windows plus one item per stage (fused: one per stage).
"""

from __future__ import annotations

import asyncio
import math
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from comparisons.harness import ResultMismatch
from comparisons.report import fmt_count, markdown_table
from comparisons.workloads import Workload
from rxpipe import Flow, PushEngine

__all__ = (
    "BUFFERS",
    "ITEM_BYTES",
    "WORKLOAD",
    "FreshBuffers",
    "MemoryCase",
    "MemoryMeasurement",
    "MemoryResult",
    "cases",
    "item_footprint",
    "measure_memory",
    "peak_of",
    "render",
    "run",
)

ITEM_BYTES: Final = 1 << 20
ITEMS: Final = 40
REPEATS_QUICK: Final = 2
REPEATS_FULL: Final = 5
BUFFERS: Final = (1, 4, 8)
#: The consumer's pause per item: long enough that the stages always run ahead of it.
SINK_PAUSE: Final = 0.0005
#: A bound is "tight" when the peak reaches at least this share of it.
TIGHT: Final = 0.9


class FreshBuffers:
    """A re-iterable source of ``count`` fresh, zeroed ``bytearray(size)`` items."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[bytearray]:
        for _ in range(self.count):
            yield bytearray(self.size)


def touch(item: bytearray) -> bytearray:
    """The map stage: writes one byte, in place (no copy)."""
    item[0] = 1
    return item


def keep(item: bytearray) -> bool:
    """The filter stage: keeps every item."""
    return len(item) > 0


class _Sink:
    """A consumer that keeps nothing but a count (and one byte of each item)."""

    __slots__ = ("n", "pause", "total")

    def __init__(self, pause: float) -> None:
        self.n = 0
        self.total = 0
        self.pause = pause

    def __call__(self, item: bytearray) -> None:
        self.n += 1
        self.total += item[0]
        if self.pause:
            time.sleep(self.pause)


@dataclass(frozen=True, slots=True)
class MemoryCase:
    """One way of running the pipeline, with its documented bound (in items).

    ``run(sink)`` runs the whole flow once, passing every item to ``sink``.
    """

    name: str
    code: str
    bound_items: int
    bound_text: str
    run: Callable[[Callable[[bytearray], None]], object]
    informational: str = ""


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """The worst peak of a case over its repeats, in bytes above the baseline."""

    case: MemoryCase
    peak_bytes: int
    item_bytes: int
    repeats: int

    @property
    def bound_bytes(self) -> int:
        return self.case.bound_items * self.item_bytes

    @property
    def peak_items(self) -> float:
        """The peak in items (a small fraction is the pipeline's own objects)."""
        return self.peak_bytes / self.item_bytes

    @property
    def held_items(self) -> int:
        """Whole items alive at the peak: the few KiB of channels and tasks do not count."""
        return math.floor(self.peak_items + 1e-9)

    @property
    def ratio(self) -> float:
        return self.peak_bytes / self.bound_bytes if self.bound_bytes else float("inf")

    @property
    def status(self) -> str:
        """MET when the peak is within 10% of the bound and never above it (whole items)."""
        bound = self.case.bound_items
        if self.held_items > bound:
            return f"NOT MET (above the bound by {self.held_items - bound})"
        if self.held_items < TIGHT * bound:
            return "NOT MET (below 90%: the bound is loose here)"
        return "MET"


def item_footprint(size: int) -> int:
    """The bytes ``tracemalloc`` attributes to one ``bytearray(size)``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        item = bytearray(size)
        after = tracemalloc.get_traced_memory()[0]
        del item
    finally:
        tracemalloc.stop()
    return after - before


def peak_of(fn: Callable[[], object]) -> int:
    """Run ``fn`` with ``tracemalloc`` on; return its peak traced bytes above the start."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - baseline


def _has_buffer() -> bool:
    return callable(getattr(Flow, "buffer", None))


def cases(items: int, size: int) -> list[MemoryCase]:
    """Every way of running the 1 MiB pipeline, with its bound."""

    def chain() -> Flow[bytearray]:
        return Flow.from_iterable(FreshBuffers(items, size)).map(touch).filter(keep)

    plan = chain().plan
    stages = len(plan.names())
    code = "Flow.from_iterable(buffers).map(touch).filter(keep)"
    out: list[MemoryCase] = []

    def push_case(runtime: str, buffer: int, consumer: str, note: str = "") -> MemoryCase:
        engine = PushEngine(buffer=buffer, runtime="threads" if runtime == "threads" else "asyncio")
        bound = engine.in_flight_bound(plan)

        def go(sink: Callable[[bytearray], None]) -> object:
            if consumer == "foreach_async":
                return asyncio.run(chain().foreach_async(sink, engine=engine))
            return chain().foreach(sink, engine=engine)

        rt = ', runtime="threads"' if runtime == "threads" else ""
        terminal = f"{consumer}(sink, engine=PushEngine(buffer={buffer}{rt}))"
        is_async = consumer == "foreach_async"
        return MemoryCase(
            f"push {runtime}, buffer {buffer}" + (", foreach_async" if is_async else ""),
            f"{'await ' if is_async else ''}{code}.{terminal}",
            bound,
            f"{stages} x {buffer} + {stages}",
            go,
            note,
        )

    for runtime in ("asyncio", "threads"):
        out.extend(push_case(runtime, b, "foreach") for b in BUFFERS)
    for runtime in ("asyncio", "threads"):
        out.append(push_case(runtime, BUFFERS[-1], "foreach_async", "async consumer"))

    out.append(
        MemoryCase(
            "pull, fused",
            f"{code}.foreach(sink)",
            stages,
            f"{stages} x 1",
            lambda sink: chain().foreach(sink),
        )
    )
    if _has_buffer():
        window = 4

        def bounded() -> Any:
            flow: Any = Flow.from_iterable(FreshBuffers(items, size))
            return flow.buffer(window).map(touch).buffer(window).filter(keep)

        bstages = len(bounded().plan.names())
        bcode = f"Flow.from_iterable(buffers).buffer({window}).map(touch).buffer({window})"
        bcode += ".filter(keep)"
        out.append(
            MemoryCase(
                f"pull, buffer({window}) boundaries",
                f"{bcode}.foreach(sink)",
                2 * window + bstages,
                f"2 x {window} + {bstages}",
                lambda sink: bounded().foreach(sink),
            )
        )
        out.append(
            MemoryCase(
                f"pull, buffer({window}) boundaries, foreach_async",
                f"await {bcode}.foreach_async(sink)",
                2 * window + bstages,
                f"2 x {window} + {bstages}",
                lambda sink: asyncio.run(bounded().foreach_async(sink)),
                "async consumer",
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class MemoryMeasurement:
    """Every case's worst peak, and how they were measured."""

    results: tuple[MemoryResult, ...]
    items: int
    size: int
    footprint: int
    repeats: int
    pause: float

    def __getitem__(self, name: str) -> MemoryResult:
        for r in self.results:
            if r.case.name == name:
                return r
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.case.name for r in self.results)


def measure_memory(
    items: int = ITEMS, *, repeats: int, size: int = ITEM_BYTES, pause: float = SINK_PAUSE
) -> MemoryMeasurement:
    """Run every case ``repeats`` times on ``items`` items of ``size`` bytes; keep the worst.

    Every run must deliver every item to the sink (the tests use small sizes).

    Raises:
        ResultMismatch: a run delivered a different number of items than the source made.
    """
    footprint = item_footprint(size)
    results = []
    for case in cases(items, size):
        worst = 0
        for _ in range(repeats):
            sink = _Sink(pause)
            worst = max(worst, peak_of(lambda c=case, s=sink: c.run(s)))  # type: ignore[misc]
            if sink.n != items or sink.total != items:
                raise ResultMismatch(case.name, "source", f"{sink.n} items, expected {items}")
        results.append(MemoryResult(case, worst, footprint, repeats))
    return MemoryMeasurement(tuple(results), items, size, footprint, repeats, pause)


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.2f}"


def render(m: MemoryMeasurement) -> str:
    """The Markdown section: one row per case, its peak, its bound and the target's status."""
    rows = [
        [
            r.case.name + (f" ({r.case.informational})" if r.case.informational else ""),
            f"`{r.case.code}`",
            _mib(r.peak_bytes),
            f"{r.peak_items:.2f}",
            f"{r.case.bound_items} ({r.case.bound_text})",
            _mib(r.bound_bytes),
            f"{r.ratio:.2f}",
            f"**{r.status}**",
        ]
        for r in m.results
    ]
    table = markdown_table(
        [
            "pipeline",
            "code",
            "peak MiB",
            "peak items",
            "bound items",
            "bound MiB",
            "peak / bound",
            "target: within 10% of the bound, never above",
        ],
        rows,
        "llrrrrrl",
    )
    caption = (
        f"`source -> map(touch) -> filter(keep) -> foreach(sink)` over {fmt_count(m.items)} "
        f"fresh `bytearray({m.size})` items ({_mib(m.size)} MiB each; `tracemalloc` traces "
        f"{fmt_count(m.footprint)} bytes per item, header included). `touch` writes one byte "
        "in place, `keep` keeps every item, and the sink reads one byte, keeps nothing and "
        f"sleeps {m.pause * 1000:g} ms per item, so the stages run ahead of it and the "
        "channels fill: the worst case the bound is about. Every run is checked to deliver "
        "every item.\n\n"
        "**peak MiB** is `tracemalloc`'s peak traced memory during the run minus the memory "
        f"traced when the run started, the worst of {m.repeats} run"
        f"{'s' if m.repeats != 1 else ''}; **peak items** divides it by one item's traced size "
        "(the fraction above a whole number is the pipeline's own objects). **bound items** is "
        "the documented in-flight bound: `PushEngine.in_flight_bound(flow.plan)` = "
        "`sum(buffers) + stages` (the source counts as a stage) for the push engine; one item "
        "per stage for the fused pull engine; the boundary windows plus one item per stage "
        "for the pull engine with `buffer(n)` (a boundary is a stage of the plan). The target "
        "compares whole items: the peak must not exceed the bound, and must reach 90% of it "
        "(a loose bound is safe, but says little). Rows marked *async consumer* consume with "
        "`foreach_async` instead of `foreach`.\n\n"
        "When a push row exceeds the bound by exactly one item, that item is the one the "
        "consumer holds (inside `sink`) while every stage and every channel is full: "
        "`sum(buffers) + stages` does not count the consumer."
    )
    return f"## Memory: peak in-flight items against the documented bound\n\n{caption}\n\n{table}\n"


def run(quick: bool) -> str:
    return render(measure_memory(repeats=REPEATS_QUICK if quick else REPEATS_FULL))


WORKLOAD: Final = Workload(
    name="push_memory",
    title="peak memory with 1 MiB items vs the in-flight bound: push (asyncio, threads), pull",
    run=run,
)
