"""One loop per stage: the Go pipeline stage, for asyncio tasks and for threads.

Each loop is the guide's "two-select sandwich" made out of channel operations: every receive
and every send is also where the stage notices cancellation (a channel closed from the other
side, or the task/thread being stopped). The two variants are the same loop; one awaits and
one blocks.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from rxpipe.engines.base import settle_tasks
from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
)
from rxpipe.engines.push.ports import COMPLETE, NOTHING, PushPorts
from rxpipe.stages._base import Done, StageLogic, StageStats
from rxpipe.stages.buffering import Overflow, overflow_error
from rxpipe.stages.errors import annotate

__all__ = (
    "PassThrough",
    "fail_stage",
    "guard_async",
    "guard_thread",
    "run_async_stage_threads",
    "run_iterator_source_async",
    "run_overflow_async",
    "run_overflow_threads",
    "run_simple_async",
    "run_source_async",
    "run_source_threads",
    "run_stage_async",
    "run_stage_threads",
)

#: Ready input items a stage with work running takes in a row before it yields to its loop.
_READY_IN_A_ROW = 64

_STALL = "stage {!r} neither pushed nor pulled after on_pull: its logic breaks the port protocol"


async def guard_async(runner: Coroutine[Any, Any, None], inbox: Any, outbox: Any) -> None:
    """Run one stage's task; whatever escapes it fails the stage through its channels.

    A runner lets a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, a user's own) escape, whether its stage raised it or upstream's
    channel carried it. The run must still end: the output channel fails with it, so it
    travels down to the consumer, and the input channel closes, so upstream stops.
    Cancellation is the run stopping the task, and passes.
    """
    try:
        await runner
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        fail_stage(exc, inbox, outbox)


def guard_thread(
    runner: Callable[..., None],
    args: tuple[Any, ...],
    inbox: Any,
    outbox: Any,
    errors: list[BaseException],
) -> None:
    """The threads twin of :func:`guard_async`: a thread's target. What cannot travel
    downstream is kept in ``errors`` for the run to raise once it joined its threads."""
    try:
        runner(*args)
    except BaseException as exc:
        try:
            fail_stage(exc, inbox, outbox)
        except BaseException as late:
            errors.append(late)


def fail_stage(exc: BaseException, inbox: Any, outbox: Any) -> None:
    """End a stage that raised: fail its output, close its input.

    A stage that had already closed its output ended before it raised (its ``post_stop``, or
    a runner bug): nothing can carry the exception downstream, so it is raised again for the
    run to report (the asyncio runtime raises it from the run's stop).
    """
    if outbox.statistics().closed:
        raise exc
    if inbox is not None:
        inbox.close_receiving()
    outbox.fail(exc)


def _finish_outbox(p: PushPorts, outbox: Any) -> None:
    """Close the output channel the way the stage ended."""
    if p.end is COMPLETE:
        outbox.close()
    else:
        outbox.fail(p.end)


def _downstream_gone(p: PushPorts) -> None:
    """A send found the channel broken: the parked item is lost; the logic decides the rest."""
    p.stats.lost += 1
    p.out_item = NOTHING
    p.out_closed = True
    p.out_pulled = False
    p.call(p.logic.on_downstream_finish)


def _deliver(p: PushPorts, outcome: Any, error: BaseException | None) -> None:
    """Hand a receive's outcome to the logic: an item, the end, or upstream's failure."""
    logic = p.logic
    p.in_pulled = False
    if error is None:
        p.item = outcome
        p.call(logic.on_push)
        return
    p.in_closed = True
    if isinstance(error, EndOfChannel):
        p.call(logic.on_upstream_finish)
    elif not isinstance(error, ClosedChannelError | BrokenChannelError):
        p.call(logic.on_upstream_failure, error)  # upstream failed: the channel carries it


async def run_stage_async(p: PushPorts, outbox: Any) -> None:
    """Drive one stage's logic on asyncio channels until it ends.

    Work the logic schedules runs as tasks beside it; while any runs, the stage waits for
    whichever comes first, a finished piece of work or the input item it asked for.
    """
    logic = p.logic
    inbox = p.inbox
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[Any]] = set()
    finished: deque[tuple[Done, Any, BaseException | None]] = deque()
    wake: list[asyncio.Future[None]] = []
    receiving: asyncio.Task[Any] | None = None
    ready_in_a_row = 0

    def on_work_end(done: Done, task: asyncio.Task[Any]) -> None:
        running.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        finished.append((done, None if error is not None else task.result(), error))
        poke(task)

    def poke(_: object) -> None:
        if wake and not wake[0].done():
            wake[0].set_result(None)

    def start_work() -> None:
        while p.scheduled:
            work, done = p.scheduled.popleft()
            try:
                task = asyncio.ensure_future(work())
            except Exception as exc:  # the work failed before it could even start
                finished.append((done, None, exc))
                continue
            running.add(task)
            task.add_done_callback(functools.partial(on_work_end, done))

    try:
        p.call(logic.pre_start)
        while True:
            start_work()
            while finished:
                p.call(*finished.popleft())
                start_work()
            if p.out_item is not NOTHING:
                item = p.out_item
                try:
                    await outbox.send(item)
                except BrokenChannelError:
                    _downstream_gone(p)
                else:
                    p.out_item = NOTHING
                continue
            if p.end is not NOTHING:
                _finish_outbox(p, outbox)
                return
            if p.out_closed and p.in_closed:
                return
            if receiving is not None and receiving.done():
                task, receiving = receiving, None
                error = task.exception()
                _deliver(p, None if error is not None else task.result(), error)
                continue
            if not p.out_pulled and not p.out_closed:
                p.out_pulled = True
                p.call(logic.on_pull)
                continue
            if p.in_pulled and receiving is None:
                if not running:
                    try:
                        item = await inbox.receive()
                    except Exception as exc:
                        _deliver(p, None, exc)
                    else:
                        _deliver(p, item, None)
                    continue
                # work is running: take a ready item at once, else wait beside the work; after
                # a run of ready items, wait anyway so the loop (and the work) gets a turn
                ready_in_a_row += 1
                if ready_in_a_row < _READY_IN_A_ROW:
                    try:
                        item = inbox.receive_nowait()
                    except WouldBlock:
                        pass
                    except Exception as exc:
                        _deliver(p, None, exc)
                        continue
                    else:
                        _deliver(p, item, None)
                        continue
                ready_in_a_row = 0
                receiving = loop.create_task(inbox.receive())
                receiving.add_done_callback(poke)
            if running or receiving is not None:
                waiter: asyncio.Future[None] = loop.create_future()
                wake[:] = [waiter]
                await waiter  # woken by finished work or by the item received
                wake.clear()
                continue
            p.fail(RuntimeError(_STALL.format(p.stats.name)))
    finally:
        pending = [*running, *([receiving] if receiving is not None else [])]
        again = await settle_tasks(pending) if pending else False
        if receiving is not None and not receiving.cancelled() and receiving.exception() is None:
            p.stats.lost += 1  # an item arrived while the stage was stopping
        p.stats.lost += p.held()
        p.out_item = NOTHING
        p.item = NOTHING
        logic.post_stop()
        if again:
            raise asyncio.CancelledError


def run_stage_threads(p: PushPorts, outbox: Any) -> None:
    """Drive one stage's logic on thread channels until it ends (the blocking twin)."""
    logic = p.logic
    inbox = p.inbox
    try:
        p.call(logic.pre_start)
        while True:
            if p.out_item is not NOTHING:
                item = p.out_item
                try:
                    outbox.send(item)
                except (BrokenChannelError, ClosedChannelError):
                    _downstream_gone(p)
                else:
                    p.out_item = NOTHING
            if p.end is not NOTHING:
                _finish_outbox(p, outbox)
                return
            if p.out_closed and p.in_closed:
                return
            if p.in_pulled:
                try:
                    item = inbox.receive()
                except Exception as exc:
                    _deliver(p, None, exc)
                else:
                    _deliver(p, item, None)
            elif not p.out_pulled and not p.out_closed:
                p.out_pulled = True
                p.call(logic.on_pull)
            elif p.out_item is NOTHING and p.end is NOTHING:
                p.fail(RuntimeError(_STALL.format(p.stats.name)))
    finally:
        p.stats.lost += p.held()
        p.out_item = NOTHING
        p.item = NOTHING
        logic.post_stop()


async def _send_counted(outbox: Any, item: Any, stats: StageStats) -> bool:
    """A source sends one item: at once if there is room, else waiting for it.

    Counts it as emitted; returns False (and counts it lost) when downstream is gone.
    """
    try:
        try:
            outbox.send_nowait(item)
        except WouldBlock:
            await outbox.send(item)  # cancelled here: never sent, so not counted at all
    except (BrokenChannelError, ClosedChannelError):
        stats.emitted += 1
        stats.lost += 1
        return False
    stats.emitted += 1
    return True


async def run_source_async(items: AsyncIterator[Any], stats: StageStats, outbox: Any) -> None:
    """Send a source's items into its output channel; stop when downstream is gone."""
    try:
        async for item in items:
            if not await _send_counted(outbox, item, stats):
                return
    except Exception as exc:
        outbox.fail(annotate(exc, stats.name))
    else:
        outbox.close()
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


async def run_iterator_source_async(items: Iterator[Any], stats: StageStats, outbox: Any) -> None:
    """A synchronous source on the asyncio runtime: as many items per step as the channel has
    room for, then a waiting send when it is full (which is where the task yields)."""
    batches = hasattr(outbox, "space")
    try:
        while True:
            room = outbox.space() if batches else 0
            if room > 1:
                # Items the source produced before it raised go out before its error.
                chunk: list[Any] = []
                append = chunk.append
                failure: Exception | None = None
                try:
                    for item in itertools.islice(items, room):
                        append(item)
                except Exception as exc:
                    failure = exc
                taken = len(chunk)
                if chunk:
                    try:
                        outbox.send_available(chunk)
                    except (BrokenChannelError, ClosedChannelError):
                        stats.emitted += taken
                        stats.lost += taken
                        return
                    finally:
                        chunk.clear()  # the channel holds them now (see run_simple_async)
                        item = None
                    stats.emitted += taken
                if failure is not None:
                    raise failure
                if taken < room:
                    break  # exhausted
                await asyncio.sleep(0)  # room all the time: still let the others run
                continue
            item = next(items, NOTHING)
            if item is NOTHING:
                break
            if not await _send_counted(outbox, item, stats):
                return
    except Exception as exc:
        outbox.fail(annotate(exc, stats.name))
    else:
        outbox.close()
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def run_source_threads(items: Iterator[Any], stats: StageStats, outbox: Any) -> None:
    """The blocking twin of :func:`run_source_async`."""
    try:
        for item in items:
            try:
                outbox.send(item)
            except (BrokenChannelError, ClosedChannelError):
                stats.emitted += 1
                stats.lost += 1
                return
            stats.emitted += 1
    except Exception as exc:
        outbox.fail(annotate(exc, stats.name))
    else:
        outbox.close()
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


class PassThrough(StageLogic[Any, Any]):
    """A ``buffer(n)`` stage on the push engine: the buffer is its output channel."""

    __slots__ = ()

    def on_push(self) -> None:
        self.ports.push(self.ports.grab())

    def on_pull(self) -> None:
        self.ports.pull()


def _offer(p: PushPorts, outbox: Any, item: Any, policy: Overflow) -> bool:
    """Put ``item`` in a buffer's channel without waiting; apply ``policy`` if it is full.

    Returns False when the stage must stop (``Overflow.FAIL``).
    """
    stats = p.stats
    try:
        outbox.send_nowait(item)
    except WouldBlock:
        if policy is Overflow.DROP_NEWEST:
            stats.dropped += 1
            return True
        if policy is Overflow.DROP_OLDEST:
            try:
                outbox.receive_nowait()  # make room: the oldest buffered item goes
            except WouldBlock:
                pass  # downstream took it meanwhile (threads): there is room now
            else:
                stats.emitted -= 1
                stats.dropped += 1
            outbox.send_nowait(item)
        else:  # Overflow.FAIL
            stats.dropped += 1
            outbox.fail(
                annotate(overflow_error(stats.name, outbox.statistics().capacity), stats.name)
            )
            return False
    stats.emitted += 1
    return True


async def run_overflow_async(p: PushPorts, outbox: Any, policy: Overflow) -> None:
    """A buffer that never blocks its upstream: when full it drops or fails."""
    inbox, stats = p.inbox, p.stats
    try:
        while True:
            try:
                item = await inbox.receive()
            except EndOfChannel:
                outbox.close()
                return
            except (ClosedChannelError, BrokenChannelError):
                return
            except Exception as exc:
                outbox.fail(exc)
                return
            stats.received += 1
            if not _offer(p, outbox, item, policy):
                inbox.close_receiving()
                return
    except (BrokenChannelError, ClosedChannelError):  # downstream is gone
        stats.lost += 1
        inbox.close_receiving()


def run_overflow_threads(p: PushPorts, outbox: Any, policy: Overflow) -> None:
    """The blocking twin of :func:`run_overflow_async`."""
    inbox, stats = p.inbox, p.stats
    try:
        while True:
            try:
                item = inbox.receive()
            except EndOfChannel:
                outbox.close()
                return
            except (ClosedChannelError, BrokenChannelError):
                return
            except Exception as exc:
                outbox.fail(exc)
                return
            stats.received += 1
            if not _offer(p, outbox, item, policy):
                inbox.close_receiving()
                return
    except (BrokenChannelError, ClosedChannelError):
        stats.lost += 1
        inbox.close_receiving()


#: What a runner's input reference is set to once the item was turned into its output.
_TAKEN: Final[Any] = object()


async def run_simple_async(p: PushPorts, outbox: Any, fn: Any, keep: bool) -> None:
    """The push engine's lowering of ``map`` (``keep=False``) and ``filter`` (``keep=True``).

    The same Go stage as :func:`run_stage_async`, without the port protocol in between: receive,
    call, send. Ready items move without suspending (``*_nowait``), so a woken stage drains
    everything that is ready before it yields: several items per wake-up, and never more held
    than one.
    """
    inbox, stats = p.inbox, p.stats
    receive_nowait, send_nowait = inbox.receive_nowait, outbox.send_nowait
    batches = hasattr(outbox, "space") and hasattr(inbox, "receive_available")
    received = emitted = filtered = 0
    holding = False
    batch: list[Any] = []
    try:
        while True:
            # Several ready items per wake-up: take no more than the output channel has room
            # for, so all their results fit at once and the stage never holds more than the
            # downstream channel could (the in-flight bound holds).
            room = outbox.space() if batches else 0
            if room > 1:
                try:
                    batch = inbox.receive_available(room)
                except (EndOfChannel, ClosedChannelError, BrokenChannelError, WouldBlock):
                    batch = []  # the item-by-item path below reports the end
                except Exception:
                    batch = []
                if batch:
                    outs: list[Any] = []
                    for i in range(len(batch)):
                        # the input leaves the batch as it is worked on: an item turned into
                        # a new object is never held twice (the in-flight bound holds)
                        item, batch[i] = batch[i], _TAKEN
                        received += 1
                        try:
                            out = fn(item)
                        except Exception as exc:
                            # what came before the failing item still goes out first (it fits)
                            stats.errored += 1
                            stats.lost += len(batch) - i - 1
                            try:
                                outbox.send_available(outs)
                                emitted += len(outs)
                            except (BrokenChannelError, ClosedChannelError):
                                stats.lost += len(outs)
                            inbox.close_receiving()
                            outbox.fail(annotate(exc, stats.name))
                            batch = []
                            return
                        if keep:
                            if out:
                                outs.append(item)
                            else:
                                filtered += 1
                        else:
                            outs.append(out)
                    batch = []
                    sent = len(outs)
                    try:
                        outbox.send_available(outs)
                    except (BrokenChannelError, ClosedChannelError):
                        emitted += sent
                        stats.lost += sent
                        inbox.close_receiving()
                        return
                    finally:
                        # the channel has them now: keeping references here would keep
                        # consumed items alive past the in-flight bound
                        outs.clear()
                        item = out = None
                    emitted += sent
                    continue
            try:
                item = receive_nowait()
            except WouldBlock:
                try:
                    item = await inbox.receive()
                except EndOfChannel:
                    outbox.close()
                    return
                except (ClosedChannelError, BrokenChannelError):
                    return
                except Exception as exc:
                    outbox.fail(exc)
                    return
            except EndOfChannel:
                outbox.close()
                return
            except (ClosedChannelError, BrokenChannelError):
                return
            except Exception as exc:
                outbox.fail(exc)
                return
            received += 1
            holding = True
            try:
                out = fn(item)
            except Exception as exc:
                holding = False
                stats.errored += 1
                inbox.close_receiving()
                outbox.fail(annotate(exc, stats.name))
                return
            if keep:
                if not out:
                    filtered += 1
                    holding = False
                    continue
                out = item
            item = _TAKEN  # only the output is held while it waits to be sent
            try:
                send_nowait(out)
            except WouldBlock:
                try:
                    await outbox.send(out)
                except (BrokenChannelError, ClosedChannelError):
                    emitted += 1
                    holding = False
                    stats.lost += 1
                    inbox.close_receiving()
                    return
            except (BrokenChannelError, ClosedChannelError):
                emitted += 1
                holding = False
                stats.lost += 1
                inbox.close_receiving()
                return
            emitted += 1
            holding = False
    finally:
        if holding:
            stats.lost += 1
        stats.received += received
        stats.emitted += emitted
        stats.filtered += filtered


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
        except WouldBlock:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._ch.send, item)

    def __getattr__(self, name: str) -> Any:  # close, fail, close_receiving, *_nowait, ...
        return getattr(self._ch, name)


def run_async_stage_threads(p: PushPorts, outbox: Any) -> None:
    """A stage that schedules async work, on the threads runtime: its own loop, in its thread."""
    with ThreadPoolExecutor(2, thread_name_prefix=f"rxpipe-{p.stats.name}-io") as pool:
        inbox = p.inbox
        p.inbox = _ThreadChannelForLoop(inbox, pool, p.stats)
        try:
            asyncio.run(run_stage_async(p, _ThreadChannelForLoop(outbox, pool, p.stats)))
        except BaseException as exc:
            # before the pool's exit waits for its threads: one may be blocked on a channel
            fail_stage(exc, inbox, outbox)
        finally:
            p.inbox = inbox
