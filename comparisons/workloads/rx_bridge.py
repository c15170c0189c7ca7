"""A hot observable into a slow async consumer: RxPY alone against ``Flow.from_observable``.

The hot source is a ``reactivex`` ``Subject`` fed by a producer thread as fast as it can
(``items`` fresh ``bytearray(size)`` items, then ``on_completed``). The consumer runs on an
asyncio loop and awaits ``asyncio.sleep(pause)`` per item, so it is far slower than the
producer: the case RxPY's issue #582 describes.

* **RxPY alone**: ``subject.pipe(ops.observe_on(AsyncIOThreadSafeScheduler(loop)))`` hands
  each item to the loop, where an ``asyncio.Queue`` feeds the consumer coroutine: how an
  RxPY application hands a hot stream to async code. RxPY has no backpressure, so every item
  the consumer has not reached yet waits in the loop's callback queue or in the queue.
* **rxpipe**: ``Flow.from_observable(subject, buffer=B, overflow=...)`` consumed with
  ``async for`` on the same loop, once per policy. ``BACKPRESSURE`` blocks the producer
  thread (lossless, the producer is slowed down); the dropping policies keep the producer's
  pace and count every drop in the Report.

``tracemalloc`` measures each run: the peak traced memory minus the memory traced when the
run started, in MiB and in items (divided by one item's traced size).
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from comparisons.harness import ResultMismatch, progress
from comparisons.report import Section, fmt_count, markdown_table
from comparisons.workloads import Workload

__all__ = (
    "BUFFER",
    "WORKLOAD",
    "BridgeMeasurement",
    "BridgeResult",
    "measure_bridge",
    "render",
    "run",
)

ITEMS_QUICK: Final = 300
ITEMS_FULL: Final = 2000
ITEM_BYTES: Final = 64 * 1024
#: The consumer's await per item (seconds).
PAUSE: Final = 0.001
#: The bridge's buffer, in items.
BUFFER: Final = 8


@dataclass(frozen=True, slots=True)
class BridgeResult:
    """One contender's run: what it delivered, dropped, held at most, and how long it took."""

    name: str
    code: str
    delivered: int
    dropped: int
    lost: int
    peak_bytes: int
    producer_seconds: float
    seconds: float


@dataclass(frozen=True, slots=True)
class BridgeMeasurement:
    results: tuple[BridgeResult, ...]
    items: int
    size: int
    item_bytes: int
    pause: float
    buffer: int

    def __getitem__(self, name: str) -> BridgeResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)


class _HotSource:
    """A Subject, a producer thread that feeds it once someone subscribed, and timings."""

    def __init__(self, items: int, size: int) -> None:
        import reactivex
        from reactivex.subject import Subject

        self.items = items
        self.size = size
        self.subject: Subject[bytearray] = Subject()
        self.subscribed = threading.Event()
        self.producer_seconds = 0.0

        def subscribe(observer: Any, _: Any = None) -> Any:
            disposable = self.subject.subscribe(observer)
            self.subscribed.set()
            return disposable

        self.observable: reactivex.Observable[bytearray] = reactivex.create(subscribe)
        self.thread = threading.Thread(target=self._produce, name="rx-bridge-producer")

    def _produce(self) -> None:
        import time

        if not self.subscribed.wait(30):
            return
        started = time.perf_counter()
        for _ in range(self.items):
            self.subject.on_next(bytearray(self.size))
        self.subject.on_completed()
        self.producer_seconds = time.perf_counter() - started


async def _consume_slowly(item: bytearray, pause: float) -> None:
    item[0] = 1  # touch it, as a consumer would
    await asyncio.sleep(pause)


def _rxpy_alone(source: _HotSource, pause: float) -> tuple[int, int, int]:
    from reactivex import operators as ops
    from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

    async def main() -> int:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()  # unbounded: RxPY cannot slow the producer
        end = object()
        source.observable.pipe(ops.observe_on(AsyncIOThreadSafeScheduler(loop))).subscribe(
            queue.put_nowait, lambda e: queue.put_nowait(end), lambda: queue.put_nowait(end)
        )
        delivered = 0
        while (item := await queue.get()) is not end:
            await _consume_slowly(item, pause)
            delivered += 1
            del item
        return delivered

    return asyncio.run(main()), 0, 0


def _bridge(source: _HotSource, pause: float, buffer: int, policy: str) -> tuple[int, int, int]:
    from rxpipe import Flow, Overflow

    async def main() -> tuple[int, int, int]:
        flow = Flow.from_observable(source.observable, buffer=buffer, overflow=Overflow[policy])
        run = _engine().open(flow.plan)
        delivered = 0
        try:
            async for item in run:
                await _consume_slowly(item, pause)
                delivered += 1
                del item
        finally:
            await run.aclose()
        report = run.report()
        return delivered, report.stages["from_observable"].dropped, report.lost

    return asyncio.run(main())


def _engine() -> Any:
    from rxpipe import PullEngine

    return PullEngine()


def _measure_one(
    name: str, code: str, items: int, size: int, go: Callable[[_HotSource], tuple[int, int, int]]
) -> BridgeResult:
    import time

    source = _HotSource(items, size)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        source.thread.start()
        started = time.perf_counter()
        try:
            delivered, dropped, lost = go(source)
        finally:
            source.subscribed.set()  # a run that never subscribed: let the producer end
            source.thread.join()
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    if delivered + dropped + lost != items:
        raise ResultMismatch(
            name, "producer", f"{delivered} delivered + {dropped} dropped + {lost} lost"
        )
    return BridgeResult(
        name, code, delivered, dropped, lost, peak, source.producer_seconds, seconds
    )


def _footprint(size: int) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        item = bytearray(size)
        after = tracemalloc.get_traced_memory()[0]
        del item
    finally:
        tracemalloc.stop()
    return after - before


def measure_bridge(
    items: int,
    *,
    size: int = ITEM_BYTES,
    pause: float = PAUSE,
    buffer: int = BUFFER,
    repeats: int = 1,
) -> BridgeMeasurement:
    """Run every contender ``repeats`` times; keep each one's worst peak.

    Raises:
        ResultMismatch: a run's delivered + dropped + lost differs from what was emitted.
    """
    contenders: list[tuple[str, str, Callable[[_HotSource], tuple[int, int, int]]]] = [
        (
            "RxPY alone",
            "subject.pipe(ops.observe_on(AsyncIOThreadSafeScheduler(loop)))"
            ".subscribe(queue.put_nowait)",
            lambda s: _rxpy_alone(s, pause),
        )
    ]
    for policy in ("BACKPRESSURE", "DROP_NEWEST", "DROP_OLDEST"):
        contenders.append(
            (
                f"rxpipe, {policy}",
                f"Flow.from_observable(subject, buffer={buffer}, overflow=Overflow.{policy})",
                lambda s, p=policy: _bridge(s, pause, buffer, p),  # type: ignore[misc]
            )
        )
    for name, code, go in contenders:  # warm-up: imports and first-run caches, untraced
        progress(f"{name}, warm-up")
        _measure_one(name, code, 4, 16, go)
    results = []
    for name, code, go in contenders:
        progress(name)
        runs = [_measure_one(name, code, items, size, go) for _ in range(repeats)]
        results.append(max(runs, key=lambda r: r.peak_bytes))
    return BridgeMeasurement(tuple(results), items, size, _footprint(size), pause, buffer)


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.2f}"


def render(m: BridgeMeasurement) -> str:
    rows = [
        [
            r.name,
            f"`{r.code}`",
            _mib(r.peak_bytes),
            f"{r.peak_bytes / m.item_bytes:.1f}",
            fmt_count(r.delivered),
            fmt_count(r.dropped),
            fmt_count(r.lost),
            f"{r.producer_seconds * 1000:.0f}",
            f"{r.seconds * 1000:.0f}",
        ]
        for r in m.results
    ]
    table = markdown_table(
        [
            "contender",
            "code",
            "peak MiB",
            "peak items",
            "delivered",
            "dropped",
            "lost",
            "producer ms",
            "run ms",
        ],
        rows,
        "llrrrrrrr",
    )
    caption = (
        f"A `reactivex` `Subject` fed by a producer thread as fast as it can with "
        f"{fmt_count(m.items)} fresh `bytearray({m.size})` items ({m.size // 1024} KiB each), "
        f"into an asyncio consumer that awaits `asyncio.sleep({m.pause:g})` per item. "
        "**RxPY alone** hands items to the loop with `observe_on` and an `asyncio.Queue` "
        "(RxPY has no backpressure, so nothing can slow the producer): every item the "
        "consumer has not reached yet is held, and memory grows with the stream. **rxpipe** "
        f"puts `Flow.from_observable` with a buffer of {m.buffer} in between, consumed with "
        "`async for` on the same loop: `BACKPRESSURE` blocks the producer thread (lossless, "
        "the producer runs at the consumer's pace), the dropping policies keep the "
        "producer's pace and count every drop in the Report. **peak MiB** is "
        "`tracemalloc`'s peak during the run minus the memory traced at its start; **peak "
        "items** divides it by one item's traced size. Every run is checked: delivered + "
        "dropped + lost = emitted."
    )
    return f"## RxPY bridge: a hot observable into a slow async consumer\n\n{caption}\n\n{table}\n"


def summary_line(m: BridgeMeasurement) -> str:
    """The closing summary's line: the peak items held, RxPY alone against the lossless bridge."""
    peaks = {r.name: r.peak_bytes / m.item_bytes for r in m.results}
    alone, bridged = peaks.get("RxPY alone"), peaks.get("rxpipe, BACKPRESSURE")
    if alone is None or bridged is None:
        return "not measured"
    return (
        f"peak items held: RxPY alone {alone:.1f}, rxpipe BACKPRESSURE {bridged:.1f} "
        f"(buffer {m.buffer}, lossless)"
    )


def run(quick: bool, out: Path) -> Section:
    m = measure_bridge(ITEMS_QUICK if quick else ITEMS_FULL)
    return Section(render(m), summary_line(m))


WORKLOAD: Final = Workload(
    name="rx_bridge",
    title="hot RxPY observable into a slow async consumer: RxPY alone vs from_observable",
    run=run,
)
