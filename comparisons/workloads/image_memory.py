"""The guide's image pipeline, measured: peak memory of 5 stages with 1 MiB items.

``read -> decode -> resize -> encode -> upload``: ``read`` (the source) makes a fresh
``bytearray(1 MiB)`` per image; ``decode``, ``resize`` and ``encode`` each build a new 1 MiB
``bytearray`` from their input (as real codecs do: input and output alive together for a
moment); ``upload`` awaits ``asyncio.sleep`` (the network, the slowest stage, so everything
upstream fills) and returns a small receipt (the byte count). The consumer keeps nothing.

The guide's arithmetic: "K stages with buffer B hold up to K * B items in flight" (5 x 16 = 80
images). rxpipe documents ``PushEngine(buffer=B).in_flight_bound(flow.plan)`` =
``sum(B_i) + 2K`` for the push engine and, for the pull engine, one item per stage plus ``n``
per ``buffer(n)`` boundary plus the consumer's (:func:`push_memory.pull_in_flight_bound`).
Each case runs at B = 1, 4, 16 with ``tracemalloc`` on; the peak above the start, divided by
one image's traced size, is the images alive at the peak.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from comparisons.harness import ResultMismatch, TargetResult, progress
from comparisons.plots import line_plot, plot_markdown
from comparisons.report import Section, fmt_count, markdown_table, status_cell
from comparisons.workloads import Workload
from comparisons.workloads.push_memory import item_footprint, peak_of, pull_in_flight_bound
from rxpipe import Flow, PushEngine

__all__ = (
    "BUFFERS",
    "ITEM_BYTES",
    "STAGES",
    "WORKLOAD",
    "Case",
    "ImageMeasurement",
    "cases",
    "measure_images",
    "pipeline",
    "render",
    "run",
)

ITEM_BYTES: Final = 1 << 20
BUFFERS: Final = (1, 4, 16)
#: read, decode, resize, encode, upload
STAGES: Final = 5
ITEMS: Final = 110
REPEATS_QUICK: Final = 1
REPEATS_FULL: Final = 3
UPLOAD_PAUSE: Final = 0.002
PLOT_NAME: Final = "image_memory.png"


class Images:
    """A re-iterable source of ``count`` fresh ``bytearray(size)`` images."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[bytearray]:
        for i in range(self.count):
            image = bytearray(self.size)
            image[0] = i % 256
            yield image


def decode(image: bytearray) -> bytearray:
    return bytearray(image)  # a new 1 MiB object, as a decoder makes


def resize(image: bytearray) -> bytearray:
    return bytearray(image)


def encode(image: bytearray) -> bytearray:
    return bytearray(image)


def make_upload(pause: float) -> Callable[[bytearray], object]:
    async def upload(image: bytearray) -> int:
        await asyncio.sleep(pause)
        return len(image)

    return upload


def pipeline(items: int, size: int, pause: float, boundary: int | None = None) -> Flow[int]:
    """The five stages; ``boundary`` puts a pull ``buffer(n)`` between every two of them."""
    flow: Flow[bytearray] = Flow.from_iterable(Images(items, size))
    upload = make_upload(pause)
    for name, fn in (("decode", decode), ("resize", resize), ("encode", encode)):
        if boundary is not None:
            flow = flow.buffer(boundary)
        flow = flow.map(fn, name=name)
    if boundary is not None:
        flow = flow.buffer(boundary)
    return flow.map_async(upload, concurrency=1, ordered=False, name="upload")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    engine: str
    buffer: int | None
    bound: int
    bound_text: str
    run: Callable[[], int]


def cases(items: int, size: int, pause: float) -> list[Case]:
    """Every engine at every buffer size; each run returns the bytes uploaded."""
    out: list[Case] = []

    def total(flow: Flow[int], engine: PushEngine | None) -> Callable[[], int]:
        def go() -> int:
            counted = [0]

            def sink(n: int) -> None:
                counted[0] += n

            if engine is None:
                flow.foreach(sink)
            else:
                flow.foreach(sink, engine=engine)
            return counted[0]

        return go

    plain = pipeline(items, size, pause)
    for runtime in ("asyncio", "threads"):
        for b in BUFFERS:
            engine = PushEngine(buffer=b, runtime="threads" if runtime == "threads" else "asyncio")
            bound = engine.in_flight_bound(plain.plan)
            out.append(
                Case(
                    f"push {runtime}, buffer {b}",
                    f"push {runtime}",
                    b,
                    bound,
                    f"{STAGES} x {b} + 2 x {STAGES}",
                    total(plain, engine),
                )
            )
    for b in BUFFERS:
        bounded = pipeline(items, size, pause, boundary=b)
        bound = pull_in_flight_bound(bounded.plan)
        out.append(
            Case(
                f"pull, buffer({b}) between stages",
                "pull, buffer(n) boundaries",
                b,
                bound,
                f"{STAGES} + 4 x {b} + 1",
                total(bounded, None),
            )
        )
    out.append(
        Case(
            "pull, fused",
            "pull, fused",
            None,
            pull_in_flight_bound(plain.plan),
            f"{STAGES} + 1",
            total(plain, None),
        )
    )
    return out


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    peak_bytes: int
    footprint: int

    @property
    def peak_items(self) -> float:
        return self.peak_bytes / self.footprint

    @property
    def target(self) -> TargetResult:
        held = int(self.peak_items + 1e-9)
        goal = f"at most {self.case.bound} images"
        return TargetResult(
            f"`{self.case.name}` {goal}", held <= self.case.bound, f"peak {held} images", goal
        )


@dataclass(frozen=True, slots=True)
class ImageMeasurement:
    results: tuple[Result, ...]
    items: int
    size: int
    footprint: int
    repeats: int
    pause: float


def measure_images(
    items: int = ITEMS, *, repeats: int, size: int = ITEM_BYTES, pause: float = UPLOAD_PAUSE
) -> ImageMeasurement:
    """Run every case ``repeats`` times and keep its worst peak; every image must arrive.

    Raises:
        ResultMismatch: a run uploaded a different number of bytes than the source made.
    """
    footprint = item_footprint(size)
    results = []
    for case in cases(items, size, pause):
        worst = 0
        for i in range(repeats):
            progress(f"{case.name}, run {i + 1}/{repeats}")
            got: list[int] = []
            worst = max(worst, peak_of(lambda c=case, g=got: g.append(c.run())))  # type: ignore[misc]
            if got != [items * size]:
                raise ResultMismatch(case.name, "source", f"{got} bytes, expected {items * size}")
        results.append(Result(case, worst, footprint))
    return ImageMeasurement(tuple(results), items, size, footprint, repeats, pause)


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f}"


def plot(m: ImageMeasurement, out: Path) -> str:
    progress("drawing the plot")
    series: dict[str, list[tuple[float, float | None]]] = {}
    for r in m.results:
        if r.case.buffer is None:
            continue
        series.setdefault(r.case.engine, []).append(
            (float(r.case.buffer), r.peak_bytes / (1 << 20))
        )
    one = m.footprint / (1 << 20)
    push_bounds = [r for r in m.results if r.case.engine == "push asyncio"]
    series["push in_flight_bound"] = [
        (float(r.case.buffer or 0), r.case.bound * one) for r in push_bounds
    ]
    series["guide: K * B"] = [(float(b), STAGES * b * one) for b in BUFFERS]
    fused = [r for r in m.results if r.case.buffer is None]
    if fused:
        series["pull, fused (no buffer)"] = [
            (float(b), fused[0].peak_bytes / (1 << 20)) for b in BUFFERS
        ]
    result = line_plot(
        out / PLOT_NAME,
        [(f"read -> decode -> resize -> encode -> upload, {_mib(m.size)} MiB images", series)],
        xlabel="buffer per channel / boundary (items)",
        ylabel="peak traced memory (MiB)",
        xlog=True,
        xticks=BUFFERS,
    )
    return plot_markdown(result, "peak memory against buffer size")


def render(m: ImageMeasurement, plot_line: str = "") -> str:
    rows = [
        [
            r.case.name,
            "-" if r.case.buffer is None else str(STAGES * r.case.buffer),
            f"{r.case.bound} ({r.case.bound_text})",
            _mib(r.peak_bytes),
            f"{r.peak_items:.1f}",
            f"{r.peak_items / r.case.bound:.2f}",
            status_cell(r.target),
        ]
        for r in m.results
    ]
    table = markdown_table(
        [
            "engine",
            "guide: K x B images",
            "documented bound, images",
            "peak MiB",
            "peak images",
            "peak / bound",
            "target: never above the bound",
        ],
        rows,
        "lrrrrrl",
    )
    return (
        "## Memory of a long pipeline: the guide's image pipeline\n\n"
        f"`read -> decode -> resize -> encode -> upload` over {fmt_count(m.items)} images of "
        f"{_mib(m.size)} MiB (`tracemalloc` traces {fmt_count(m.footprint)} bytes per image). "
        "`read` makes a fresh `bytearray` per image; `decode`, `resize` and `encode` each build "
        "a new one from their input; `upload` awaits "
        f"`asyncio.sleep({m.pause:g})` (the slowest stage, so everything upstream fills) and "
        "returns the byte count; the consumer adds the counts (checked: every byte arrives). "
        f"**peak MiB**: the worst of {m.repeats} run{'s' if m.repeats != 1 else ''} of "
        "`tracemalloc`'s peak minus the memory traced at the start; **peak images** divides "
        "it by one image. **guide: K x B** is the guide's estimate for K = 5 stages; "
        "**documented bound**: push `PushEngine(buffer=B).in_flight_bound(flow.plan)` = "
        "`sum(B_i) + 2K` (a channel after each of the 5 stages, the last one carrying "
        "receipts, not images); pull: one item per stage, n per `buffer(n)` boundary (4 of "
        "them), plus the consumer's.\n\n"
        f"{table}\n\n{plot_line}\n\n"
        f"{where_the_peak_comes_from(m)}\n"
    )


def _held(r: Result) -> int:
    return int(r.peak_items + 1e-9)


def where_the_peak_comes_from(m: ImageMeasurement) -> str:
    """The closing paragraph, from this run's peaks: each push peak as ``4B + c``."""
    push = []
    for runtime in ("push asyncio", "push threads"):
        rs = [r for r in m.results if r.case.engine == runtime and r.case.buffer is not None]
        if rs:
            extra = ", ".join(f"{_held(r) - 4 * (r.case.buffer or 0)}" for r in rs)
            at = ", ".join(f"{r.case.buffer}" for r in rs)
            push.append(f"{runtime} `4B + c` with c = {extra} (B = {at})")
    fused = [r for r in m.results if r.case.engine == "pull, fused"]
    text = (
        "**Where the peak comes from.** Four of the five channels carry images (the fifth, "
        "after `upload`, holds receipts), so full channels hold `4B` images; the rest, `c`, "
        "are images the stages hold. This run's push peaks: "
        + "; ".join(push)
        + ". `c` = 5 is one image in each of the five stages (read, decode, resize and encode "
        "each blocked on a full channel holding its output, upload awaiting with its input); "
        "a larger `c` is images in transit beyond one per stage (a stage holding both its "
        "input and its output, say), which the bound's `2K` allows for. The pull engine with "
        "a `buffer(n)` between every stage comes within a few images of its own bound"
    )
    if fused:
        text += f"; fused, it held {_held(fused[0])} images, whatever the guide's B would be"
    return text + "."


def summary_line(m: ImageMeasurement) -> str:
    parts = []
    for b in BUFFERS:
        rs = [r for r in m.results if r.case.buffer == b and r.case.engine.startswith("push")]
        if rs:
            worst = max(rs, key=lambda r: r.peak_items)
            parts.append(f"B={b}: {worst.peak_items:.0f} (bound {worst.case.bound})")
    return "push peak images " + ", ".join(parts)


def run(quick: bool, out: Path) -> Section:
    m = measure_images(repeats=REPEATS_QUICK if quick else REPEATS_FULL)
    line = plot(m, out)
    return Section(render(m, line), summary_line(m), tuple(r.target for r in m.results))


WORKLOAD: Final = Workload(
    name="image_memory",
    title="the guide's 5-stage image pipeline, 1 MiB images, buffers 1/4/16: peak vs bound",
    run=run,
)
