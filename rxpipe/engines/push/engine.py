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

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Final, Literal, final

from rxpipe._core.stats import StageStats
from rxpipe.engines.base import Engine, Plan, Run
from rxpipe.engines.push._channel_common import (
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
    check_buffer,
)
from rxpipe.engines.push.asyncio_runtime import AsyncioRuntime
from rxpipe.engines.push.runtime import Runtime
from rxpipe.engines.push.threads_runtime import ThreadsRuntime
from rxpipe.stages.buffering import Buffer, Overflow
from rxpipe.telemetry.collector import QueueProbe, RunTelemetry, check_stall_after
from rxpipe.telemetry.report import Report
from rxpipe.telemetry.sampler import DEFAULT_STALL_SECONDS

__all__ = ("PushEngine",)

RuntimeName = Literal["asyncio", "threads"]

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
        stall_after: in a run with an observed stage, log one warning on the ``"rxpipe"``
            logger when no item moved for this many seconds (``None``: never).

    Raises:
        TypeError/ValueError: a buffer size that is not an int >= 0, or an unknown runtime.
    """

    name = "push"

    def __init__(
        self,
        *,
        buffer: int | Mapping[str, int] = DEFAULT_BUFFER,
        runtime: RuntimeName = "asyncio",
        stall_after: float | None = DEFAULT_STALL_SECONDS,
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
        self.runtime: RuntimeName = runtime
        self.stall_after = check_stall_after(stall_after)

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


@final
class PushRun(Run[Any]):
    """One run on the push engine: channels, one runner per stage, and a consumer end.

    What differs between tasks and threads is in its :class:`Runtime`; the run holds what
    both share: the channels, the counters and the Report.
    """

    __slots__ = (
        "_agen",
        "_closed",
        "_engine",
        "_plan",
        "_report",
        "_runtime",
        "_started",
        "_stats",
        "_sync_iter",
        "channels",
        "delivered",
        "telemetry",
    )

    def __init__(self, engine: PushEngine, plan: Plan) -> None:
        self._engine = engine
        self._plan = plan
        self._stats = [StageStats(name) for name in plan.names()]
        #: What this run measures (everything only when a stage is observed).
        self.telemetry = RunTelemetry(plan, self._stats, engine.name, engine.stall_after)
        self.channels: list[Any] = []
        self._report: Report | None = None
        self._started = 0.0
        self._closed = False
        self._sync_iter: Iterator[Any] | None = None
        self._agen: AsyncGenerator[Any, None] | None = None
        self.delivered = 0
        runtime = AsyncioRuntime if engine.runtime == "asyncio" else ThreadsRuntime
        self._runtime: Runtime = runtime(self)

    # -- what the runtimes share ---------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def stats(self) -> list[StageStats]:
        return self._stats

    def wire(self, channel: Callable[[int], Any]) -> None:
        """Create one channel after each stage (the source first)."""
        self._started = time.perf_counter()
        self.channels = [channel(n) for n in self._engine.channel_sizes(self._plan)]
        if self.telemetry.on:  # each channel is the input queue of the stage after it
            for i, ch in enumerate(self.channels):
                self.telemetry.probe_queue(i + 1, _depth(ch))
            self.telemetry.start()

    def begin_stop(self) -> bool:
        """Mark the run as stopping; True for the first caller only."""
        first = not self._closed
        self._closed = True
        return first

    @property
    def stopping(self) -> bool:
        return self._closed

    async def items_async(self, runtime: Runtime) -> AsyncGenerator[Any, None]:
        """The consumer's loop on an event loop, whichever runtime runs the stages: ready
        items are taken at once, otherwise the runtime waits for the next one."""
        runtime.start()
        last = self.channels[-1]
        receive_nowait = last.receive_nowait
        try:
            while True:
                try:
                    try:
                        item = receive_nowait()
                    except WouldBlock:
                        item = await runtime.receive()
                except EndOfChannel:
                    return
                except ClosedChannelError:
                    if self._closed:  # stopped from elsewhere: the loop simply ends
                        return
                    raise
                self.delivered += 1
                yield item
                del item
        finally:
            await runtime.stop_async()

    def close_channels(self) -> None:
        """Close every channel from the receiving side: blocked senders see a broken channel,
        blocked receivers a closed one, so every runner ends soon (idempotent)."""
        for ch in reversed(self.channels):
            ch.close_receiving()

    # -- RunContext: what the source may ask of this run ---------------------------------------
    @property
    def source_stats(self) -> StageStats:
        return self._stats[0]

    def open_input(self, plan: Plan) -> PushRun:
        # Not engine.open: its buffer sizes name this run's stages, checked when it opened;
        # an input's stages get the default size (and the size of a stage of the same name).
        return PushRun(self._runtime.input_engine(self._engine), plan)

    # -- Run interface -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        # the run keeps the runtime's iterator, never the guard the consumer holds: leaving
        # the loop drops the guard at once, and its cleanup stops the run
        self._sync_iter = it = self._runtime.iterate(self._stop_request())
        return self._guarded(it)

    def __aiter__(self) -> AsyncIterator[Any]:
        self._agen = agen = self._runtime.aiterate()  # aclose() closes it (its cleanup stops)
        return self._aguarded(agen)

    async def collect_async(self) -> list[Any]:
        return await self._runtime.collect_async()

    def collect(self) -> list[Any]:
        return self._runtime.collect()

    def consume(self, fn: Callable[[Any], object]) -> None:
        self._runtime.consume(fn)

    def close(self) -> None:
        if self._close_elsewhere():
            return
        it, self._sync_iter = self._sync_iter, None
        close = getattr(it, "close", None)
        if close is not None:
            close()  # its cleanup stops every runner and waits for them
        self._runtime.close()
        self.finish()

    async def aclose(self) -> None:
        if await self._aclose_elsewhere():
            return
        agen, self._agen = self._agen, None
        if agen is not None:
            try:
                await agen.aclose()  # left suspended at a yield: its cleanup stops the run
            except RuntimeError:  # still running in another task: stopped below instead
                pass
        await self._runtime.aclose()
        self.finish()

    def finish(self) -> None:
        """Freeze the Report (once): what channels threw away was in flight, so lost."""
        if self._report is not None:
            return
        self.telemetry.stop()
        # counted at the stage the items were travelling to (the consumer's: the last stage)
        stats = self._stats
        for i, ch in enumerate(self.channels):
            discarded = ch.statistics().discarded
            stats[min(i + 1, len(stats) - 1)].lost += discarded
        self._plan.source.settle(stats[0])  # what only the source knows (rejected offers)
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        self._report = Report.build(
            stats,
            delivered=self.delivered,
            engine=self._engine.name,
            elapsed_seconds=elapsed,
            telemetry=self.telemetry,
        )
        self.telemetry.flush()

    def report(self) -> Report:
        if self._report is None:
            if self._closed:  # stopping: its runners end now, and count what they held
                self._runtime.join()
            self.finish()
        assert self._report is not None
        return self._report


def _depth(channel: Any) -> QueueProbe:
    """How the sampler reads a channel's depth: (items held, capacity)."""

    def probe() -> tuple[int, int]:
        depth: tuple[int, int] = channel.statistics().depth()
        return depth

    return probe
