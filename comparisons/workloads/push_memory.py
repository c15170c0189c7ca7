"""Peak memory against the documented in-flight bound, with 1 MiB items.

The source yields fresh ``bytearray(1 << 20)`` items, so every slot the bound counts (a
channel slot, a stage's own item, the consumer's item) can only be filled by a 1 MiB object;
``map`` touches each one in place and ``filter`` keeps them all (both pass the same object on).
The consumer keeps nothing, reads one byte of each item and is slower than the stages (it
pauses briefly per item), so the pipeline saturates: the worst case the bound is about.
``tracemalloc`` measures each run: tracing starts right before the run, the memory traced at
that moment is the baseline, and the run's peak minus that baseline is what the run held at
most.

The documented bounds, counting the consumer's one item:

- push (``PushEngine.in_flight_bound``): a pipeline of ``K`` stages (the source included) with
  channel sizes ``B_i`` holds at most ``sum(B_i) + 2K`` items: a stage that builds a new object
  from its input holds both for a moment. These stages pass the same object on, so they hold
  one each and the most they can reach is ``sum(B_i) + K + 1``.
- pull: one item per stage, ``n`` per ``buffer(n)`` boundary, plus the consumer's one:
  ``(K - b) + sum(n_j) + 1`` for ``K`` stages of which ``b`` are boundaries
  (:func:`pull_in_flight_bound`). A boundary holds nothing outside its window (see
  ``rxpipe/engines/pull/boundary.py``: ``iterate`` refills only once at most ``n // 4`` items
  remain and stops at ``n``; ``aiterate``'s producer waits once the window holds ``n``; the
  loop variable only aliases the newest item), so it adds ``n``, not ``n + 1``.

The rendered notes explain every row whose peak stays below the bound; each explanation was
checked with an instrumented run (channel and window lengths logged at every item).
"""

from __future__ import annotations

import asyncio
import math
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from comparisons.harness import ResultMismatch, TargetResult, progress
from comparisons.report import Section, fmt_count, markdown_table, status_cell
from comparisons.workloads import Workload
from rxpipe import Flow, PushEngine
from rxpipe.engines.base import Plan
from rxpipe.stages.buffering import Buffer

__all__ = (
    "BUFFERS",
    "ITEM_BYTES",
    "NOTES",
    "WINDOW",
    "WORKLOAD",
    "FreshBuffers",
    "MemoryCase",
    "MemoryMeasurement",
    "MemoryResult",
    "cases",
    "item_footprint",
    "measure_memory",
    "peak_of",
    "pull_in_flight_bound",
    "render",
    "run",
)

ITEM_BYTES: Final = 1 << 20
ITEMS: Final = 40
REPEATS_QUICK: Final = 2
REPEATS_FULL: Final = 5
BUFFERS: Final = (1, 4, 8)
#: The window of the pull engine's ``buffer(n)`` boundaries.
WINDOW: Final = 4
#: The consumer's pause per item: long enough that the stages always run ahead of it.
SINK_PAUSE: Final = 0.0005


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
    """A consumer that keeps nothing but a count (and one byte of each item).

    Called, it also sleeps ``pause`` (a slow synchronous consumer); an awaiting consumer calls
    :meth:`count` and awaits ``asyncio.sleep(pause)`` itself.
    """

    __slots__ = ("n", "pause", "total")

    def __init__(self, pause: float) -> None:
        self.n = 0
        self.total = 0
        self.pause = pause

    def count(self, item: bytearray) -> None:
        self.n += 1
        self.total += item[0]

    def __call__(self, item: bytearray) -> None:
        self.count(item)
        if self.pause:
            time.sleep(self.pause)


@dataclass(frozen=True, slots=True)
class MemoryCase:
    """One way of running the pipeline, with its documented bound (in items).

    ``run(sink)`` runs the whole flow once, passing every item to ``sink``. ``note`` is the key
    of the :data:`NOTES` entry that explains the row.
    """

    name: str
    code: str
    bound_items: int
    bound_text: str
    run: Callable[[_Sink], object]
    note: str


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
    def target(self) -> TargetResult:
        """The bound is a ceiling: met when the whole items held at the peak do not exceed it.

        How far below it the peak stays only says how tight the bound is (the notes explain
        every row's peak); it is never a miss.
        """
        bound = self.case.bound_items
        held = self.held_items
        figure = f"peak {held} item{'s' if held != 1 else ''}"
        if held > bound:
            figure += f", {held - bound} above the bound"
        goal = f"at most {bound} items"
        return TargetResult(f"`{self.case.name}` {goal}", held <= bound, figure, goal)

    @property
    def status(self) -> str:
        """``MET`` (at or under the bound) or ``MISSED`` (above it)."""
        return self.target.status


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


def _windows(plan: Plan) -> list[int]:
    return [node.stage.n for node in plan.nodes if isinstance(node.stage, Buffer)]


def pull_in_flight_bound(plan: Plan) -> int:
    """The pull engine's bound: ``(stages - boundaries) + sum(windows) + 1`` (module docs)."""
    windows = _windows(plan)
    return len(plan.names()) - len(windows) + sum(windows) + 1


def _sum_text(sizes: Sequence[int]) -> str:
    """``[4, 4, 4]`` -> ``3 x 4``; uneven sizes are spelled out."""
    if len(set(sizes)) == 1:
        return f"{len(sizes)} x {sizes[0]}"
    return " + ".join(map(str, sizes))


def _pull_bound_text(plan: Plan) -> str:
    windows = _windows(plan)
    stages = len(plan.names()) - len(windows)
    return f"{stages} + {_sum_text(windows)} + 1" if windows else f"{stages} + 1"


def _has_buffer() -> bool:
    return callable(getattr(Flow, "buffer", None))


def cases(items: int, size: int) -> list[MemoryCase]:
    """Every way of running the 1 MiB pipeline, with its bound."""

    def chain() -> Flow[bytearray]:
        return Flow.from_iterable(FreshBuffers(items, size)).map(touch).filter(keep)

    plan = chain().plan
    stages = len(plan.names())
    code = "Flow.from_iterable(buffers).map(touch).filter(keep)"

    def push_case(runtime: str, buffer: int, consumer: str) -> MemoryCase:
        engine = PushEngine(buffer=buffer, runtime="threads" if runtime == "threads" else "asyncio")
        rt = ', runtime="threads"' if runtime == "threads" else ""
        engine_code = f"PushEngine(buffer={buffer}{rt})"

        def sync_sink(sink: _Sink) -> object:
            return chain().foreach(sink, engine=engine)

        def async_sink(sink: _Sink) -> object:
            return asyncio.run(chain().foreach_async(sink, engine=engine))

        async def awaiting(sink: _Sink) -> None:
            async for item in engine.open(chain().plan):
                sink.count(item)
                await asyncio.sleep(sink.pause)  # holding its item, as a slow consumer does

        def awaiting_sink(sink: _Sink) -> object:
            return asyncio.run(awaiting(sink))

        name = f"push {runtime}, buffer {buffer}"
        # the note explaining the row: (c) threads, (a) asyncio with a synchronous sink,
        # (b) asyncio with a consumer that awaits while it holds its item
        note = "c" if runtime == "threads" else "a"
        if consumer == "foreach":
            go: Callable[[_Sink], object] = sync_sink
            shown = f"{code}.foreach(sink, engine={engine_code})"
        elif consumer == "foreach_async":
            name += ", foreach_async"
            go = async_sink
            shown = f"await {code}.foreach_async(sink, engine={engine_code})"
        else:
            name += ", async for + await"
            go = awaiting_sink
            shown = (
                f"async for x in {engine_code}.open(flow.plan): "
                "sink.count(x); await asyncio.sleep(pause)"
            )
            note = "c" if runtime == "threads" else "b"
        sizes = engine.channel_sizes(plan)
        return MemoryCase(
            name,
            shown,
            engine.in_flight_bound(plan),
            f"{_sum_text(sizes)} + 2 x {stages}",
            go,
            note,
        )

    out = [push_case("asyncio", b, "foreach") for b in BUFFERS]
    out.append(push_case("asyncio", BUFFERS[-1], "foreach_async"))
    out.extend(push_case("asyncio", b, "async for") for b in BUFFERS)
    out.extend(push_case("threads", b, "foreach") for b in BUFFERS)
    out.append(push_case("threads", BUFFERS[-1], "foreach_async"))

    out.append(
        MemoryCase(
            "pull, fused",
            f"{code}.foreach(sink)",
            pull_in_flight_bound(plan),
            _pull_bound_text(plan),
            lambda sink: chain().foreach(sink),
            "d",
        )
    )
    if _has_buffer():

        def bounded() -> Any:
            flow: Any = Flow.from_iterable(FreshBuffers(items, size))
            return flow.buffer(WINDOW).map(touch).buffer(WINDOW).filter(keep)

        bplan = bounded().plan
        bcode = f"Flow.from_iterable(buffers).buffer({WINDOW}).map(touch).buffer({WINDOW})"
        bcode += ".filter(keep)"
        out.append(
            MemoryCase(
                f"pull, buffer({WINDOW}) boundaries",
                f"{bcode}.foreach(sink)",
                pull_in_flight_bound(bplan),
                _pull_bound_text(bplan),
                lambda sink: bounded().foreach(sink),
                "e",
            )
        )
        out.append(
            MemoryCase(
                f"pull, buffer({WINDOW}) boundaries, foreach_async",
                f"await {bcode}.foreach_async(sink)",
                pull_in_flight_bound(bplan),
                _pull_bound_text(bplan),
                lambda sink: asyncio.run(bounded().foreach_async(sink)),
                "f",
            )
        )
    return out


#: What every row's note says: why the peak is where it is. Checked with instrumented runs
#: (every channel's or window's length logged at each item); see the module docs.
NOTES: Final = {
    "a": (
        "**(a) push asyncio, synchronous sink: the bound is not reached.** The sink runs on "
        "the event loop's thread (inside the consumer's `async for`, with `foreach` and "
        "`foreach_async` alike), so while it holds an item and sleeps, no stage task runs: "
        "stages refill only while the consumer waits on its empty channel (holding its "
        "previous item). And no task suspends while it can move an item: the consumer takes "
        "ready items with `receive_nowait`, and the stage runners move every ready item "
        "that fits downstream per wake-up (`receive_available`/`send_available`), so the "
        "channels fill and drain in waves: a synchronous sink blocks the loop while it works, "
        "so the stages refill only while it waits, and not every channel is full at the "
        "same moment. The peak (measured in the table) stays below the bound and approaches "
        "it as the buffers grow. The (b) rows run the same engine with a consumer that "
        "awaits while it "
        "holds its item: they reach the bound exactly."
    ),
    "b": (
        "**(b) push asyncio, awaiting consumer.** The consumer awaits `asyncio.sleep` while "
        "it holds its item, so the stage tasks run meanwhile: every channel fills and every "
        "stage (the source included) blocks on a full channel holding its item. The peak is "
        "exactly `sum(B_i) + K + 1`, `K - 1` items under `in_flight_bound`: the bound's second "
        "item per stage is for a stage that builds a new object from its input (both alive "
        "for a moment), and these stages pass the same object on."
    ),
    "c": (
        "**(c) push threads.** While the consumer sleeps inside the sink (on the caller's "
        "thread for `foreach`, on the event loop's for `foreach_async`), every stage thread "
        "blocks on a full channel holding its item: the peak is exactly `sum(B_i) + K + 1`, "
        "as in (b), never above. `foreach_async` takes one item at a time from the last channel "
        "(`receive_nowait`, else `receive` on a helper thread), so it holds no more than "
        "`foreach`."
    ),
    "d": (
        "**(d) pull, fused: the per-stage slots are one object.** The bound counts one item "
        "per stage, but the fused loop (demand of one) carries each item from the source "
        "through `touch` and `keep` to the consumer before it asks for the next, and these "
        "stages pass the object on: the three stage slots hold the same item. The most alive "
        "at once is 2: the consumer's previous item (still bound to its loop variable and the "
        "fused loop's locals) while the source makes the next one. With pass-through stages "
        "the bound is loose by `stages - 1` items."
    ),
    "e": (
        f"**(e) pull, `buffer({WINDOW})` boundaries, `foreach`: the two windows are never "
        "full at once.** A sync boundary (`Boundary.iterate`) refills on the consumer's "
        "thread, only once at most `n // 4` items remain, and stops at `n`. The downstream "
        "window refills by pulling through `map` from the upstream one, and the upstream one "
        "refills only when such a pull finds it nearly empty, so while it fills, the "
        "downstream window is mid-refill. Traced at the peak (n = 4): the upstream window "
        "holds 3 plus the item the source is making, the downstream window 3, and the "
        "consumer's previous item is still bound: 1 + 3 + 4 = 8. Source, `map` and `filter` "
        "hold no item of their own (the one they pass is the one moving between the windows)."
    ),
    "f": (
        f"**(f) pull, `buffer({WINDOW})` boundaries, `foreach_async`: one window at a "
        "time.** Each `Boundary.aiterate` runs its upstream in a producer task; as in (a), "
        "the synchronous sink blocks the loop and a boundary's consuming side pops ready "
        "items without suspending, so a producer runs only once its downstream window is "
        "empty. Traced at the peak (n = 4): the downstream window is empty, the upstream one "
        "holds 3 plus the item being made, and the consumer's previous item is bound: "
        "1 + 4 = 5."
    ),
}


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
        for i in range(repeats):
            progress(f"{case.name}, run {i + 1}/{repeats}")
            sink = _Sink(pause)
            worst = max(worst, peak_of(lambda c=case, s=sink: c.run(s)))  # type: ignore[misc]
            if sink.n != items or sink.total != items:
                raise ResultMismatch(case.name, "source", f"{sink.n} items, expected {items}")
        results.append(MemoryResult(case, worst, footprint, repeats))
    return MemoryMeasurement(tuple(results), items, size, footprint, repeats, pause)


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.2f}"


def render(m: MemoryMeasurement) -> str:
    """The Markdown section: one row per case, its peak, its bound, the target's status, and
    the notes explaining every row."""
    rows = [
        [
            r.case.name,
            f"`{r.case.code}`",
            _mib(r.peak_bytes),
            f"{r.peak_items:.2f}",
            f"{r.case.bound_items} ({r.case.bound_text})",
            _mib(r.bound_bytes),
            f"{r.ratio:.2f}",
            status_cell(r.target),
            f"({r.case.note})",
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
            "target: never above the bound",
            "note",
        ],
        rows,
        "llrrrrrll",
    )
    caption = (
        f"`source -> map(touch) -> filter(keep) -> consumer` over {fmt_count(m.items)} fresh "
        f"`bytearray({m.size})` items ({_mib(m.size)} MiB each; `tracemalloc` traces "
        f"{fmt_count(m.footprint)} bytes per item, header included): the source makes a new "
        "item each time, so every slot the bound counts can only be filled by a whole item. "
        "`touch` writes one byte in place and `keep` keeps every item (both pass the same "
        "object on); the consumer reads one byte, keeps nothing and is slower than the "
        f"stages: `sink` sleeps {m.pause * 1000:g} ms per item (`time.sleep`), and the "
        f"*async for + await* rows, where `flow` is the pipeline above, await "
        f"`asyncio.sleep({m.pause:g})` per item instead. Every run is checked to deliver "
        "every item.\n\n"
        "**peak MiB** is `tracemalloc`'s peak traced memory during the run minus the memory "
        f"traced when the run started, the worst of {m.repeats} run"
        f"{'s' if m.repeats != 1 else ''}; **peak items** divides it by one item's traced size "
        "(the fraction above a whole number is the pipeline's own objects). **bound items** is "
        "the documented in-flight bound, the consumer's item included. Push: "
        "`PushEngine.in_flight_bound(flow.plan)` = `sum(B_i) + K + 1` for `K` stages (the "
        "source counts) and channel sizes `B_i`. Pull: `(K - b) + sum(n_j) + 1` for `K` "
        "stages of which `b` are `buffer(n_j)` boundaries: one item per stage, at most `n` "
        "per boundary (`boundary.py`: `iterate` refills only once at most `n // 4` remain and "
        "stops at `n`; `aiterate`'s producer waits once the window holds `n`; a boundary "
        "holds nothing outside its window, so it adds `n`, not `n + 1`), plus the consumer's "
        "one. The bound is a ceiling: a row meets its target when the whole items held at its "
        "peak do not exceed the bound. How close the peak comes to it (**peak / bound**) only "
        "says how tight the bound is; every row's **note** explains where its peak comes "
        "from; each explanation was checked with an instrumented run (channel and window "
        "lengths logged at every item)."
    )
    notes = "\n\n".join(NOTES[key] for key in sorted({r.case.note for r in m.results}))
    return (
        "## Memory: peak in-flight items against the documented bound\n\n"
        f"{caption}\n\n{table}\n\n{notes}\n"
    )


def summary_line(m: MemoryMeasurement) -> str:
    """The closing summary's line: the highest peak / bound of each engine's rows."""
    parts = []
    for engine in ("pull", "push"):
        rows = [r for r in m.results if r.case.name.startswith(engine)]
        if rows:
            worst = max(rows, key=lambda r: r.ratio)
            parts.append(f"{engine} {worst.ratio:.2f}")
    return f"highest peak / bound: {', '.join(parts)} (1.00: the bound reached, above: over it)"


def run(quick: bool, out: Path) -> Section:
    m = measure_memory(repeats=REPEATS_QUICK if quick else REPEATS_FULL)
    return Section(render(m), summary_line(m), tuple(r.target for r in m.results))


WORKLOAD: Final = Workload(
    name="push_memory",
    title="peak memory with 1 MiB items vs the in-flight bound: push (asyncio, threads), pull",
    run=run,
)
