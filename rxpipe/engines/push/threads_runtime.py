"""The push engine on threads: one thread per runner, :class:`ThreadChannel` between them.

An async source gets an event loop of its own, inside its thread; so does a stage that
schedules async work (its waits on the channels run on a small private pool, so the loop and
its work keep running).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
)
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any, final

from rxpipe.engines.base import Run, StopRequest
from rxpipe.engines.lowerings import ITERATOR_SOURCE
from rxpipe.engines.push._channel_common import ClosedChannelError, EndOfChannel, WouldBlock
from rxpipe.engines.push.drivers import drive_async, drive_blocking, fail_stage
from rxpipe.engines.push.parts import IteratorInbox, Part, iterator_source_part, stage_part
from rxpipe.engines.push.thread_channel import ThreadChannel

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.engines.push.engine import PushEngine, PushRun

__all__ = ("ThreadsRuntime",)


@final
class ThreadsRuntime:
    """A push run on threads; consumed from sync code, or from async code through a helper."""

    __slots__ = (
        "_errors",
        "_interrupted",
        "_interrupts",
        "_pool",
        "_run",
        "_source_loop",
        "_stage_loops",
        "_threads",
    )

    def __init__(self, run: PushRun) -> None:
        self._run = run
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._source_loop: _LoopSource | None = None
        self._stage_loops: list[_StageLoop] = []
        self._interrupts: list[threading.Event] = []
        self._pool: ThreadPoolExecutor | None = None
        self._interrupted = False

    # -- starting --------------------------------------------------------------------------------
    def start(self) -> None:
        run = self._run
        run.wire(ThreadChannel)
        plan, stats, channels = run.plan, run.stats, run.channels
        source, timed = plan.source, run.telemetry  # timed: the source's items, if observed
        # An async source (or one that waits for items) gets its own event loop, inside its
        # own thread; stopping the run cancels its wait (see _signal_stop).
        items: Iterator[Any]
        if source.is_async or source.prefers_async:
            items = self._source_loop = _LoopSource(timed.source_async(source.open_async(run)))
        else:
            items = timed.source(source.open(run))
        lowered = ITERATOR_SOURCE.applies_to_source(source)
        targets: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
            (_source, (items, stats[0], channels[0], lowered))
        ]
        for i, node in enumerate(plan.nodes):
            part = stage_part(node, stats[i + 1], channels[i], channels[i + 1])
            if node.stage.is_async:
                stage_loop = _StageLoop()
                self._stage_loops.append(stage_loop)
                targets.append((_async_stage, (part, stage_loop)))
            else:
                part.interrupt = threading.Event()  # set by _signal_stop: see Part.interrupt
                self._interrupts.append(part.interrupt)
                targets.append((drive_blocking, (part,)))
        names = plan.names()
        inboxes = [None, *channels[:-1]]
        self._threads = [
            threading.Thread(
                target=_guarded,
                args=(fn, args, inboxes[i], channels[i], self._errors),
                name=f"rxpipe-{names[i]}",
                daemon=True,
            )
            for i, (fn, args) in enumerate(targets)
        ]
        for t in self._threads:
            t.start()

    # -- consuming -------------------------------------------------------------------------------
    def _items(self) -> Generator[Any, None, None]:
        self.start()
        run = self._run
        last = run.channels[-1]
        try:
            while True:
                try:
                    item = last.receive()
                except EndOfChannel:
                    return
                except ClosedChannelError:
                    if self._interrupted:  # stopped from another thread: the loop simply ends
                        return
                    raise
                run.delivered += 1
                yield item
        finally:
            self._stop()

    def iterate(self, stop: StopRequest) -> Iterator[Any]:
        stop.on_request(self._interrupt)  # wakes a consumer blocked on the last channel
        return self._items()

    async def receive(self) -> Any:
        """The next item of the last channel, for a consumer on an event loop: a private
        helper thread only waits for an item to be ready, and the loop takes it, so a
        consumer cancelled meanwhile took nothing."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rxpipe-consumer")
        last = self._run.channels[-1]
        while True:
            await asyncio.wrap_future(self._pool.submit(last.wait_receivable))
            try:
                return last.receive_nowait()
            except WouldBlock:
                continue

    async def stop_async(self) -> None:
        self._signal_stop()  # wakes the helper thread too, if it is waiting
        pool, self._pool = self._pool, None
        if pool is None:
            self._stop()  # nothing was waited for: the joins are quick
            return
        stopping = pool.submit(self._stop)
        try:
            await asyncio.wrap_future(stopping)
        finally:  # even when cancelled meanwhile: the helper finishes the join, then ends
            pool.shutdown(wait=True)
            if stopping.cancelled():
                # The cancellation came before the helper began the stop (its thread still
                # busy, e.g. ending the consumer's last wait) and cancelled it too: stop here,
                # or nobody joins the runners and the Report is built while they still count.
                self._stop()

    def aiterate(self) -> AsyncGenerator[Any, None]:
        return self._run.items_async(self)

    def collect(self) -> list[Any]:
        return Run.collect(self._run)

    async def collect_async(self) -> list[Any]:
        return [item async for item in self.aiterate()]

    def consume(self, fn: Callable[[Any], object]) -> None:
        Run.consume(self._run, fn)

    # -- stopping --------------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Another thread stops the run that this thread's consumer is waiting on."""
        self._interrupted = True
        self._signal_stop()

    def _signal_stop(self) -> None:
        """Every runner ends soon: channels closed, a source waiting for items interrupted."""
        self._run.close_channels()
        if self._source_loop is not None:
            self._source_loop.interrupt()  # a source waiting for items would never notice
        for stage_loop in self._stage_loops:
            # a stage whose every call slot is busy waits for its work, not on a channel
            stage_loop.interrupt()
        for interrupt in self._interrupts:
            interrupt.set()  # a blocking stage waiting for its next timer

    def _stop(self) -> None:
        first = self._run.begin_stop()
        if first:
            self._signal_stop()
        # Joined by every caller, not only the first: a stopper that was itself cancelled
        # must not let a second one build the Report while a stage thread still counts.
        self.join()
        self._run.finish()
        if first and self._errors:
            raise self._errors[0]  # raised by a stage after its end (see fail_stage)

    def join(self) -> None:
        current = threading.current_thread()
        for t in self._threads:
            if t is not current:
                t.join()

    def close(self) -> None:
        if self._threads:
            self._stop()

    async def aclose(self) -> None:
        if self._threads:
            self._stop()

    def input_engine(self, engine: PushEngine) -> PushEngine:
        # A source with inputs waits for them, so this runtime opens it with open_async, on
        # its own thread's event loop (see _start): the inputs run there as tasks, where async
        # inputs share one loop, as they do on the other engines (asyncio objects belong to
        # one loop, and a loop to one thread).
        return type(engine)(buffer={**engine._sizes, "*": engine._default})


def _source(items: Iterator[Any], stats: StageStats, outbox: Any, lowered: bool) -> None:
    inbox = IteratorInbox(items)
    try:
        if lowered:
            drive_blocking(iterator_source_part(inbox, stats, outbox, batch=False))
        else:
            drive_blocking(Part.source(stats, inbox, outbox))
    finally:
        inbox.close()


def _async_stage(part: Part, stage_loop: _StageLoop) -> None:
    """A stage that schedules async work: its own event loop, in its thread."""
    inbox, outbox = part.inbox, part.outbox
    with ThreadPoolExecutor(2, thread_name_prefix=f"rxpipe-{part.stats.name}-io") as pool:
        part.inbox = _ThreadChannelForLoop(inbox, pool, part.stats)
        part.outbox = _ThreadChannelForLoop(outbox, pool, part.stats)
        try:
            stage_loop.run(drive_async(part))
        except BaseException as exc:
            # before the pool's exit waits for its threads: one may be blocked on a channel
            fail_stage(exc, inbox, outbox)


def _guarded(
    runner: Callable[..., None],
    args: tuple[Any, ...],
    inbox: Any,
    outbox: Any,
    errors: list[BaseException],
) -> None:
    """A thread's target: whatever escapes the runner fails the stage through its channels;
    what cannot travel downstream is kept in ``errors`` for the run to raise once joined."""
    try:
        runner(*args)
    except BaseException as exc:
        try:
            fail_stage(exc, inbox, outbox)
        except BaseException as late:
            errors.append(late)


@final
class _StageLoop:
    """An async stage's event loop, in its thread, which the run's stop can cancel from
    another thread (its work is cancelled and counted lost; the stage then ends quietly)."""

    __slots__ = ("_lock", "_loop", "_stopped", "_task")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopped = False

    def run(self, main: Coroutine[Any, Any, None]) -> None:
        try:
            asyncio.run(self._main(main))
        except asyncio.CancelledError:
            if not self._stopped:
                raise

    async def _main(self, main: Coroutine[Any, Any, None]) -> None:
        task = asyncio.current_task()
        with self._lock:
            self._loop, self._task = asyncio.get_running_loop(), task
            stopped = self._stopped
        if stopped:
            main.close()
            return
        try:
            await main
        finally:
            with self._lock:
                self._loop = self._task = None

    def interrupt(self) -> None:
        """Cancel the stage's loop from any thread (idempotent)."""
        with self._lock:
            self._stopped = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # its loop closed meanwhile: the stage has ended
                pass


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
class _ThreadChannelForLoop:
    """A thread channel seen through the asyncio channel's API, by one event loop.

    Ready items move with the non-blocking calls; a wait runs on a small private pool, so the
    loop (and the work scheduled on it) keeps running. Closing either side of the channel
    wakes a blocked wait, so no pool thread outlives the run.
    """

    __slots__ = ("_ch", "_pool", "_stats")

    def __init__(self, ch: Any, pool: ThreadPoolExecutor, stats: StageStats) -> None:
        self._ch = ch
        self._pool = pool
        self._stats = stats

    async def receive(self) -> Any:
        try:
            return self._ch.receive_nowait()
        except WouldBlock:
            pass
        waiting = self._pool.submit(self._ch.receive)
        try:
            return await asyncio.wrap_future(waiting)
        except asyncio.CancelledError:
            # the wait goes on in its thread: an item it still takes reached no one, so it is
            # counted lost (before the pool's exit lets the run report)
            waiting.add_done_callback(self._lost_if_received)
            raise

    def _lost_if_received(self, waiting: Future[Any]) -> None:
        if not waiting.cancelled() and waiting.exception() is None:
            self._stats.lost += 1

    async def send(self, item: Any) -> None:
        try:
            self._ch.send_nowait(item)
            return
        except WouldBlock:
            pass
        sending = self._pool.submit(self._ch.send, item)
        try:
            await asyncio.wrap_future(sending)
        except asyncio.CancelledError:
            # Only the run's stop cancels this loop (ThreadsRuntime._signal_stop, after it
            # closed every channel): the send goes on in its thread and ends at once, failing
            # or having delivered the item. Delivered, the item is counted downstream (by the
            # channel, or as received), and the driver's stop would count it lost again, as
            # still held in the stage's output: it is not.
            wait_futures([sending])
            if not sending.cancelled() and sending.exception() is None:
                self._stats.lost -= 1
            raise

    def __getattr__(self, name: str) -> Any:  # close, fail, close_receiving, *_nowait, ...
        return getattr(self._ch, name)
