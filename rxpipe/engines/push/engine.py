"""The push-channel engine: Go's pipeline model, with the same stages as the pull engine.

Every stage runs in its own asyncio task (``runtime="asyncio"``) or thread
(``runtime="threads"``), joined to its neighbours by bounded channels. A full channel blocks
the sender: that is the backpressure. ``buffer=0`` is a rendezvous, like an unbuffered Go
channel. A pipeline of ``K`` stages (the source included) with channel buffers ``B_i`` holds at
most ``sum(B_i) + 2 * K`` items in flight (:meth:`PushEngine.in_flight_bound`).

Stopping early (a consumer leaving its loop, ``first()``, an error) stops every stage: the
consumer closes its end, senders see a broken channel, and the remaining tasks are cancelled
(threads are woken by closing every channel). Every task and thread is joined before the
terminal returns. Items that were in channels or held by stages are counted as ``lost``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
)
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Literal, final

from rxpipe.engines.base import (
    Engine,
    Plan,
    Run,
    closing,
    ensure_no_running_loop,
    iterate_on_private_loop,
    run_on_private_loop,
)
from rxpipe.engines.push._channel_common import EndOfChannel, WouldBlock, check_buffer
from rxpipe.engines.push.channel import AsyncChannel
from rxpipe.engines.push.ports import PushPorts
from rxpipe.engines.push.runners import (
    PassThrough,
    guard_async,
    guard_thread,
    run_async_stage_threads,
    run_iterator_source_async,
    run_overflow_async,
    run_overflow_threads,
    run_simple_async,
    run_source_async,
    run_source_threads,
    run_stage_async,
    run_stage_threads,
)
from rxpipe.engines.push.thread_channel import ThreadChannel
from rxpipe.stages._base import StageStats
from rxpipe.stages.buffering import Buffer, Overflow
from rxpipe.stages.errors import Node, create_logic
from rxpipe.stages.simple import Filter, Map
from rxpipe.telemetry.report import Report

__all__ = ("PushEngine",)

Runtime = Literal["asyncio", "threads"]

#: The default channel size: small enough to keep memory tight, large enough to let stages
#: with uneven per-item cost overlap (the Go guide's "1-8 smooths jitter, 16-64 hides
#: moderate slowdowns").
DEFAULT_BUFFER: Final = 16


@final
class PushEngine(Engine):
    """Go-style: a task or thread per stage, bounded channels, blocking send.

    Args:
        buffer: the size of every channel (``0`` is a rendezvous), or a mapping from stage
            names to the size of that stage's *output* channel, with ``"*"`` for the rest
            (``{"parse": 16, "*": 1}``, as the guide's ``out := make(chan T, 16)``).
        runtime: ``"asyncio"`` (one task per stage) or ``"threads"`` (one thread per stage).

    Raises:
        TypeError/ValueError: a buffer size that is not an int >= 0, or an unknown runtime.
    """

    name = "push"

    def __init__(
        self, *, buffer: int | Mapping[str, int] = DEFAULT_BUFFER, runtime: Runtime = "asyncio"
    ) -> None:
        if runtime not in ("asyncio", "threads"):
            raise ValueError(f"runtime must be 'asyncio' or 'threads', got {runtime!r}")
        if isinstance(buffer, Mapping):
            sizes = dict(buffer)
            for key, size in sizes.items():
                if not isinstance(key, str):
                    raise TypeError(f"buffer keys are stage names (str), got {key!r}")
                check_buffer(size)
            self._sizes: dict[str, int] = sizes
            self._default = sizes.get("*", DEFAULT_BUFFER)
        else:
            self._default = check_buffer(buffer)
            self._sizes = {}
        self.runtime: Runtime = runtime

    def __repr__(self) -> str:
        sizes = self._sizes or self._default
        return f"PushEngine(buffer={sizes!r}, runtime={self.runtime!r})"

    def buffer_for(self, stage_name: str) -> int:
        """The size of the output channel of the stage called ``stage_name``."""
        return self._sizes.get(stage_name, self._default)

    def channel_sizes(self, plan: Plan) -> list[int]:
        """The size of each stage's output channel, the source first.

        A ``buffer(n)`` stage's channel holds ``n`` unless the engine's mapping names it.
        """
        sizes = [self.buffer_for(plan.source_name)]
        for node in plan.nodes:
            stage = node.stage
            if isinstance(stage, Buffer) and node.name not in self._sizes:
                sizes.append(stage.n)
            else:
                sizes.append(self.buffer_for(node.name))
            lossy = isinstance(stage, Buffer) and stage.overflow is not Overflow.BACKPRESSURE
            if lossy and sizes[-1] == 0:
                raise ValueError(
                    f"buffer {node.name!r} drops or fails when full, so its channel needs "
                    "room: a size of 0 (a rendezvous) is never 'full' in that sense"
                )
        return sizes

    def in_flight_bound(self, plan: Plan) -> int:
        """The most items a run of ``plan`` can hold at once: ``sum(buffers) + 2 * stages``,
        the source counted among the stages.

        Each channel holds its buffer; the source the one item it is sending; every other
        stage the item it works on and, while it builds a new object from it, that output
        too (the input is alive until the function returns: a map that makes a new object
        per item holds two for a moment, blocked or not); the consumer the one item it was
        handed. Stages that hold items by design add what they hold: ``map_async`` its
        window, ``chunk(n)`` a partial group, ``parallel``/``partition`` their copies.
        """
        return sum(self.channel_sizes(plan)) + 2 * len(plan.names())

    def refuses_running_loop(self, plan: Plan) -> bool:
        """Always: both runtimes wait for their tasks or threads, which would block the loop
        (the asyncio runtime needs a loop of its own, the threads runtime would hold the
        caller's loop until the run ends), so sync terminals refuse alike."""
        return True

    def open(self, plan: Plan) -> PushRun:
        unknown = set(self._sizes) - {"*", *plan.names()}
        if unknown:
            raise ValueError(
                f"buffer sizes name stages that are not in this flow: {sorted(unknown)}; "
                f"its stages are {list(plan.names())}"
            )
        return PushRun(self, plan)


def _async_runner(node: Node, ports: PushPorts, outbox: Any) -> Coroutine[Any, Any, None]:
    """The runner for one stage: a lowering for plain map/filter, else the generic loop."""
    policy = _overflow(node)
    if policy is not None:
        return run_overflow_async(ports, outbox, policy)
    stage = node.stage
    if not node.supervised and type(stage) is Map:
        return run_simple_async(ports, outbox, stage.fn, keep=False)
    if not node.supervised and type(stage) is Filter:
        return run_simple_async(ports, outbox, stage.pred, keep=True)
    return run_stage_async(ports, outbox)


def _overflow(node: Node) -> Overflow | None:
    """The overflow policy of a buffer node that must not block its upstream, if any."""
    stage = node.stage
    if isinstance(stage, Buffer) and stage.overflow is not Overflow.BACKPRESSURE:
        return stage.overflow
    return None


@final
class _LoopSource(Iterator[Any]):
    """An async source iterated by a thread on a private event loop, which another thread can
    interrupt: ``interrupt()`` cancels the wait for the next item, and the iteration ends.

    (A source waiting for items that never come, a quiet ``Flow.queue``, would otherwise keep
    the thread, and the run's join, waiting.)
    """

    __slots__ = ("_gen", "_items", "_lock", "_loop", "_stopped", "_task")

    def __init__(self, items: AsyncIterator[Any]) -> None:
        self._items = items
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopped = False
        self._gen = self._iterate()

    def __next__(self) -> Any:
        return next(self._gen)

    def close(self) -> None:
        """Close the source on the thread that iterates it (its loop lives there)."""
        self._gen.close()

    def _iterate(self) -> Generator[Any, None, None]:
        loop = asyncio.new_event_loop()
        with self._lock:
            self._loop = loop
        try:
            while True:
                task = loop.create_task(_anext(self._items))
                with self._lock:
                    if self._stopped:
                        task.cancel()
                    self._task = task
                try:
                    item = loop.run_until_complete(task)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if self._stopped:
                        return
                    raise
                yield item
        finally:
            try:
                aclose = getattr(self._items, "aclose", None)
                if aclose is not None:
                    loop.run_until_complete(aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                with self._lock:
                    self._loop = self._task = None
                loop.close()

    def interrupt(self) -> None:
        """Stop the iteration from any thread (idempotent)."""
        with self._lock:
            self._stopped = True
            loop, task = self._loop, self._task
            if loop is not None and task is not None:
                loop.call_soon_threadsafe(task.cancel)


async def _anext(items: AsyncIterator[Any]) -> Any:
    return await anext(items)


@final
class PushRun(Run[Any]):
    """One run on the push engine: channels, one runner per stage, and a consumer end."""

    __slots__ = (
        "_agen",
        "_channels",
        "_closed",
        "_engine",
        "_plan",
        "_pool",
        "_ports",
        "_report",
        "_source_loop",
        "_started",
        "_stats",
        "_sync_iter",
        "_tasks",
        "_thread_errors",
        "_threads",
        "delivered",
    )

    def __init__(self, engine: PushEngine, plan: Plan) -> None:
        self._engine = engine
        self._plan = plan
        self._stats = [StageStats(name) for name in plan.names()]
        self._channels: list[Any] = []
        self._ports: list[PushPorts] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._threads: list[threading.Thread] = []
        self._thread_errors: list[BaseException] = []
        self._sync_iter: Iterator[Any] | None = None
        self._agen: AsyncGenerator[Any, None] | None = None
        self._source_loop: _LoopSource | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._report: Report | None = None
        self._started = 0.0
        self._closed = False
        self.delivered = 0

    # -- wiring ------------------------------------------------------------------------------
    def _wire(self, channel_type: Any) -> None:
        """Create one channel after each stage and the ports between them."""
        self._channels = [channel_type(n) for n in self._engine.channel_sizes(self._plan)]
        for i, node in enumerate(self._plan.nodes):
            ports = PushPorts(self._stats[i + 1], self._channels[i])
            if isinstance(node.stage, Buffer):
                # the buffer is the channel after this stage; the stage itself only passes
                # items on (or applies the overflow policy, in its own runner)
                ports.logic = PassThrough(ports)
            else:
                ports.logic = create_logic(node, ports)
            self._ports.append(ports)

    def _start_tasks(self) -> None:
        self._started = time.perf_counter()
        self._wire(AsyncChannel)
        source = self._plan.source
        first: Coroutine[Any, Any, None]
        if source.is_async or source.prefers_async:
            first = run_source_async(source.open_async(self), self._stats[0], self._channels[0])
        else:  # a plain iterator: no async generator in between, batches straight in
            first = run_iterator_source_async(source.open(self), self._stats[0], self._channels[0])
        coros = [first]
        coros += [
            _async_runner(node, p, self._channels[i + 1])
            for i, (p, node) in enumerate(zip(self._ports, self._plan.nodes, strict=True))
        ]
        inboxes = [None, *self._channels[:-1]]
        self._tasks = [
            asyncio.create_task(guard_async(c, inbox, outbox))
            for c, inbox, outbox in zip(coros, inboxes, self._channels, strict=True)
        ]

    def _start_threads(self) -> None:
        self._started = time.perf_counter()
        self._wire(ThreadChannel)
        source = self._plan.source
        # An async source (or one that waits for items) gets its own event loop, inside its
        # own thread; stopping the run cancels its wait (see _signal_stop).
        items: Iterator[Any]
        if source.is_async or source.prefers_async:
            items = self._source_loop = _LoopSource(source.open_async(self))
        else:
            items = source.open(self)
        targets: list[tuple[Any, tuple[Any, ...]]] = [
            (run_source_threads, (items, self._stats[0], self._channels[0]))
        ]
        targets += [
            (run_overflow_threads, (p, self._channels[i + 1], policy))
            if (policy := _overflow(node)) is not None
            else (
                run_async_stage_threads if node.stage.is_async else run_stage_threads,
                (p, self._channels[i + 1]),
            )
            for i, (p, node) in enumerate(zip(self._ports, self._plan.nodes, strict=True))
        ]
        names = self._plan.names()
        inboxes = [None, *self._channels[:-1]]
        self._threads = [
            threading.Thread(
                target=guard_thread,
                args=(fn, args, inboxes[i], self._channels[i], self._thread_errors),
                name=f"rxpipe-{names[i]}",
                daemon=True,
            )
            for i, (fn, args) in enumerate(targets)
        ]
        for t in self._threads:
            t.start()

    # -- asyncio runtime -----------------------------------------------------------------------
    async def _aiter_asyncio(self) -> AsyncGenerator[Any, None]:
        self._start_tasks()
        last = self._channels[-1]
        receive_nowait = last.receive_nowait
        try:
            while True:
                try:
                    try:
                        item = receive_nowait()
                    except WouldBlock:
                        item = await last.receive()
                except EndOfChannel:
                    return
                self.delivered += 1
                yield item
        finally:
            await self._astop()

    async def _astop(self) -> None:
        """Stop every task (those still running are cancelled) and wait for all of them."""
        if self._closed:
            return
        self._closed = True
        # Closing every channel from the receiving side counts what they held as discarded
        # (lost) and breaks blocked senders; then the stragglers are cancelled.
        self._signal_stop()
        for task in self._tasks:
            if not task.done():
                task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r  # a runner bug, not a stage error (those travel through channels)
        self._finish()

    # -- threads runtime -----------------------------------------------------------------------
    def _iter_threads(self) -> Iterator[Any]:
        self._start_threads()
        last = self._channels[-1]
        try:
            while True:
                try:
                    item = last.receive()
                except EndOfChannel:
                    return
                self.delivered += 1
                yield item
        finally:
            self._stop_threads()

    def _signal_stop(self) -> None:
        """Close every channel from the receiving side: blocked senders see a broken channel,
        blocked receivers a closed one, so every runner ends soon (idempotent)."""
        for ch in reversed(self._channels):
            ch.close_receiving()
        if self._source_loop is not None:
            self._source_loop.interrupt()  # a source waiting for items would never notice

    def _stop_threads(self) -> None:
        first = not self._closed
        self._closed = True
        if first:
            self._signal_stop()
        # Joined by every caller, not only the first: a stopper that was itself cancelled
        # must not let a second one build the Report while a stage thread still counts.
        self._join_threads()
        self._finish()
        if first and self._thread_errors:
            raise self._thread_errors[0]  # raised by a stage after its end (see fail_stage)

    def _join_threads(self) -> None:
        current = threading.current_thread()
        for t in self._threads:
            if t is not current:
                t.join()

    async def _aiter_threads(self) -> AsyncGenerator[Any, None]:
        """Threads runtime consumed from async code: receive on a private helper thread."""
        loop = asyncio.get_running_loop()
        pool = self._pool = ThreadPoolExecutor(1, thread_name_prefix="rxpipe-consumer")
        self._start_threads()
        last = self._channels[-1]
        receive_nowait = last.receive_nowait
        try:
            while True:
                # One item at a time: a batch held here would let upstream run further ahead
                # than the in-flight bound. The helper thread only waits for an item to be
                # ready and this loop takes it: cancelled meanwhile, nothing was taken.
                try:
                    item = receive_nowait()
                except WouldBlock:
                    await asyncio.wrap_future(pool.submit(last.wait_receivable))
                    continue
                except EndOfChannel:
                    return
                self.delivered += 1
                yield item
                del item
        finally:
            self._signal_stop()  # wakes the helper thread too, if it is waiting
            try:
                await loop.run_in_executor(pool, self._stop_threads)
            finally:  # even when cancelled meanwhile: the helper finishes the join, then ends
                pool.shutdown(wait=True)
                self._pool = None

    # -- RunContext: what the source may ask of this run ---------------------------------------
    @property
    def source_stats(self) -> StageStats:
        return self._stats[0]

    def open_input(self, plan: Plan) -> PushRun:
        # Not engine.open: its buffer sizes name this run's stages, checked when it opened;
        # an input's stages get the default size (and the size of a stage of the same name).
        engine = self._engine
        if engine.runtime == "threads":
            # A source with inputs waits for them, so the threads runtime opens it with
            # open_async, on its own thread's event loop (see _start_threads): the inputs run
            # there as tasks, where async inputs share one loop, as they do on the other
            # engines (asyncio objects belong to one loop, and a loop to one thread).
            engine = PushEngine(buffer={**engine._sizes, "*": engine._default})
        return PushRun(engine, plan)

    # -- Run interface -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        if self._engine.runtime == "threads":
            self._sync_iter = self._iter_threads()
        else:
            self._sync_iter = iterate_on_private_loop(self._aiter_asyncio())
        return self._sync_iter

    async def collect_async(self) -> list[Any]:
        if self._engine.runtime == "threads":
            return [item async for item in self._aiter_threads()]
        # Items that reach the list are delivered, not in flight: take every ready one at once.
        self._start_tasks()
        last = self._channels[-1]
        out: list[Any] = []
        try:
            while True:
                try:
                    batch = await last.receive_batch(4096)
                except EndOfChannel:
                    break
                out.extend(batch)
                self.delivered += len(batch)
        finally:
            await self._astop()
        return out

    def collect(self) -> list[Any]:
        if self._engine.runtime == "threads":
            return super().collect()
        ensure_no_running_loop("a push/asyncio run from sync code")
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.collect_async())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def consume(self, fn: Callable[[Any], object]) -> None:
        if self._engine.runtime == "threads":
            super().consume(fn)
            return

        # One event-loop call for the whole run, not one per item.
        async def drain() -> None:
            # closed here if fn raises: an abandoned generator is closed by a GC-time task
            # that can outlive the private loop
            async with closing(self._aiter_asyncio()) as items:
                async for item in items:
                    fn(item)

        run_on_private_loop(drain(), "a push/asyncio run from sync code")

    def __aiter__(self) -> AsyncIterator[Any]:
        agen = self._aiter_threads() if self._engine.runtime == "threads" else self._aiter_asyncio()
        self._agen = agen  # aclose() closes it: its cleanup does the run's accounting
        return agen

    def close(self) -> None:
        it, self._sync_iter = self._sync_iter, None
        close = getattr(it, "close", None)
        if close is not None:
            close()  # its cleanup stops every task or thread and joins them
        if self._report is None:
            self._finish()

    async def aclose(self) -> None:
        agen, self._agen = self._agen, None
        if agen is not None:
            try:
                await agen.aclose()  # left suspended at a yield: its cleanup stops the run
            except RuntimeError:  # still running in another task: stopped below instead
                pass
        if self._engine.runtime == "threads":
            if self._threads:
                self._stop_threads()
        elif self._tasks:
            await self._astop()
        if self._report is None:
            self._finish()

    def _finish(self) -> None:
        if self._report is not None:
            return
        # Items thrown away in channels were in flight: lost, counted at the stage they were
        # travelling to (the consumer's channel counts at the last stage).
        stats = self._stats
        for i, ch in enumerate(self._channels):
            discarded = ch.statistics().discarded
            stats[min(i + 1, len(stats) - 1)].lost += discarded
        self._plan.source.settle(stats[0])  # what only the source knows (rejected offers)
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        self._report = Report.build(
            stats, delivered=self.delivered, engine=self._engine.name, elapsed_seconds=elapsed
        )

    def report(self) -> Report:
        if self._report is None:
            if self._closed:  # stopping: its threads end now, and count what they held
                self._join_threads()
            self._finish()
        assert self._report is not None
        return self._report
