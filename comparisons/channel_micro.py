"""Micro benchmark: the push engine's channels against the standard library's queues.

A three-stage pipeline (producer -> relay -> consumer, two channels of the same size) moves
integers; we report nanoseconds per item (median of several runs) as a markdown table.

- asyncio: ``asyncio.Queue`` vs ``AsyncChannel`` item by item vs ``AsyncChannel`` batched
  (``send_many`` / ``receive_batch``), three tasks.
- threads: ``queue.Queue`` vs ``ThreadChannel`` item by item and batched, three threads.

The standard queues have no rendezvous (``maxsize=0`` means unbounded), so their ``buffer=0``
row runs with ``maxsize=1``. Run with ``python -m comparisons.channel_micro [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from rxpipe.engines.push.channel import AsyncChannel, EndOfChannel
from rxpipe.engines.push.thread_channel import ThreadChannel

__all__ = ("main", "run_async", "run_threads")

BUFFERS: Final = (0, 1, 16, 256)
BATCH: Final = 256
_END: Final = object()  # end marker for the standard queues (None is an item)


# -- asyncio ------------------------------------------------------------------------------
async def _queue_pipeline(n: int, buffer: int) -> int:
    q1: asyncio.Queue[Any] = asyncio.Queue(max(buffer, 1))
    q2: asyncio.Queue[Any] = asyncio.Queue(max(buffer, 1))

    async def producer() -> None:
        for i in range(n):
            await q1.put(i)
        await q1.put(_END)

    async def relay() -> None:
        while True:
            item = await q1.get()
            await q2.put(item)
            if item is _END:
                return

    async def consumer() -> int:
        count = 0
        while await q2.get() is not _END:
            count += 1
        return count

    _, _, count = await asyncio.gather(producer(), relay(), consumer())
    return int(count)


async def _channel_pipeline(n: int, buffer: int) -> int:
    c1: AsyncChannel[int] = AsyncChannel(buffer)
    c2: AsyncChannel[int] = AsyncChannel(buffer)

    async def producer() -> None:
        for i in range(n):
            await c1.send(i)
        c1.close()

    async def relay() -> None:
        try:
            while True:
                await c2.send(await c1.receive())
        except EndOfChannel:
            c2.close()

    async def consumer() -> int:
        count = 0
        try:
            while True:
                await c2.receive()
                count += 1
        except EndOfChannel:
            return count

    _, _, count = await asyncio.gather(producer(), relay(), consumer())
    return int(count)


async def _channel_batched_pipeline(n: int, buffer: int) -> int:
    c1: AsyncChannel[int] = AsyncChannel(buffer)
    c2: AsyncChannel[int] = AsyncChannel(buffer)

    async def producer() -> None:
        for start in range(0, n, BATCH):
            await c1.send_many(range(start, min(start + BATCH, n)))
        c1.close()

    async def relay() -> None:
        try:
            while True:
                await c2.send_many(await c1.receive_batch(BATCH))
        except EndOfChannel:
            c2.close()

    async def consumer() -> int:
        count = 0
        try:
            while True:
                count += len(await c2.receive_batch(BATCH))
        except EndOfChannel:
            return count

    _, _, count = await asyncio.gather(producer(), relay(), consumer())
    return int(count)


def _time_async(
    pipeline: Callable[[int, int], Coroutine[Any, Any, int]], n: int, buffer: int
) -> float:
    async def timed() -> float:
        start = time.perf_counter_ns()
        count = await pipeline(n, buffer)
        elapsed = time.perf_counter_ns() - start
        assert count == n, f"{pipeline.__name__} lost items: {count} != {n}"
        return elapsed / n

    return asyncio.run(timed())


ASYNC_VARIANTS: Final = {
    "asyncio.Queue": _queue_pipeline,
    "AsyncChannel": _channel_pipeline,
    "AsyncChannel batched": _channel_batched_pipeline,
}


def run_async(n: int, reps: int, buffers: tuple[int, ...] = BUFFERS) -> dict[int, dict[str, float]]:
    """Median ns/item of each asyncio variant, per buffer size."""
    return {
        b: {
            name: statistics.median(_time_async(fn, n, b) for _ in range(reps))
            for name, fn in ASYNC_VARIANTS.items()
        }
        for b in buffers
    }


# -- threads ------------------------------------------------------------------------------
def _run_threads(stages: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=fn) for fn in stages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _thread_queue_pipeline(n: int, buffer: int) -> int:
    q1: queue.Queue[Any] = queue.Queue(max(buffer, 1))
    q2: queue.Queue[Any] = queue.Queue(max(buffer, 1))
    counted = [0]

    def producer() -> None:
        for i in range(n):
            q1.put(i)
        q1.put(_END)

    def relay() -> None:
        while True:
            item = q1.get()
            q2.put(item)
            if item is _END:
                return

    def consumer() -> None:
        count = 0
        while q2.get() is not _END:
            count += 1
        counted[0] = count

    _run_threads([producer, relay, consumer])
    return counted[0]


def _thread_channel_pipeline(n: int, buffer: int) -> int:
    c1: ThreadChannel[int] = ThreadChannel(buffer)
    c2: ThreadChannel[int] = ThreadChannel(buffer)
    counted = [0]

    def producer() -> None:
        for i in range(n):
            c1.send(i)
        c1.close()

    def relay() -> None:
        try:
            while True:
                c2.send(c1.receive())
        except EndOfChannel:
            c2.close()

    def consumer() -> None:
        count = 0
        try:
            while True:
                c2.receive()
                count += 1
        except EndOfChannel:
            counted[0] = count

    _run_threads([producer, relay, consumer])
    return counted[0]


def _thread_channel_batched_pipeline(n: int, buffer: int) -> int:
    c1: ThreadChannel[int] = ThreadChannel(buffer)
    c2: ThreadChannel[int] = ThreadChannel(buffer)
    counted = [0]

    def producer() -> None:
        for start in range(0, n, BATCH):
            c1.send_many(range(start, min(start + BATCH, n)))
        c1.close()

    def relay() -> None:
        try:
            while True:
                c2.send_many(c1.receive_batch(BATCH))
        except EndOfChannel:
            c2.close()

    def consumer() -> None:
        count = 0
        try:
            while True:
                count += len(c2.receive_batch(BATCH))
        except EndOfChannel:
            counted[0] = count

    _run_threads([producer, relay, consumer])
    return counted[0]


def _time_threads(pipeline: Callable[[int, int], int], n: int, buffer: int) -> float:
    start = time.perf_counter_ns()
    count = pipeline(n, buffer)
    elapsed = time.perf_counter_ns() - start
    assert count == n, f"{pipeline.__name__} lost items: {count} != {n}"
    return elapsed / n


THREAD_VARIANTS: Final = {
    "queue.Queue": _thread_queue_pipeline,
    "ThreadChannel": _thread_channel_pipeline,
    "ThreadChannel batched": _thread_channel_batched_pipeline,
}


def run_threads(
    n: int, reps: int, buffers: tuple[int, ...] = BUFFERS
) -> dict[int, dict[str, float]]:
    """Median ns/item of each threads variant, per buffer size."""
    return {
        b: {
            name: statistics.median(_time_threads(fn, n, b) for _ in range(reps))
            for name, fn in THREAD_VARIANTS.items()
        }
        for b in buffers
    }


# -- report -------------------------------------------------------------------------------
def table(results: dict[int, dict[str, float]], baseline: str) -> str:
    """A markdown table: ns/item per variant, and each channel variant's speed-up."""
    names = list(next(iter(results.values())))
    others = [name for name in names if name != baseline]
    head = ["buffer", *(f"{name} ns/item" for name in names), *(f"{o} speed-up" for o in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for b, row in results.items():
        cells = [f"{b}" + (" (queue: 1)" if b == 0 else "")]
        cells += [f"{row[name]:,.0f}" for name in names]
        cells += [f"{row[baseline] / row[o]:.2f}" for o in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run both comparisons and print them as markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--async-items", type=int, default=100_000)
    parser.add_argument("--thread-items", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10x fewer items, 3 runs")
    args = parser.parse_args(argv)
    a_items, t_items, reps = args.async_items, args.thread_items, args.reps
    if args.quick:
        a_items, t_items, reps = a_items // 10, t_items // 10, 3
    print(f"### asyncio: producer -> relay -> consumer, {a_items:,} items, median of {reps}\n")
    print(table(run_async(a_items, reps), "asyncio.Queue"))
    print(f"\n### threads: producer -> relay -> consumer, {t_items:,} items, median of {reps}\n")
    print(table(run_threads(t_items, reps), "queue.Queue"))


if __name__ == "__main__":
    main()
