"""The push engine's lowerings: hand-written loops for the hottest shapes.

Each does what the generic runner (:func:`rxpipe._core.steps.stage_steps`, run by a
runtime's driver) would do for that stage, without the port protocol in between, and moves
many ready items per wake-up. :func:`simple_steps` is a step machine like the generic one,
so both runtimes' drivers run it; the source loop is the asyncio runtime's alone. They are
declared in :mod:`rxpipe.engines.lowerings`, which says when each applies; a test checks each
against the generic path.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from rxpipe._core.stats import StageStats
from rxpipe._core.steps import COMPLETE, END, GONE, NOTHING, RECEIVE, SEND, Failure, Steps
from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ClosedChannelError,
    WouldBlock,
)
from rxpipe.stages.errors import annotate

__all__ = ("run_iterator_source_async", "simple_steps")

_DONE: Final[Any] = object()


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


async def run_iterator_source_async(items: Iterator[Any], stats: StageStats, outbox: Any) -> None:
    """A synchronous source on the asyncio runtime: as many items per step as the channel has
    room for, then a waiting send when it is full (which is where the task yields)."""
    # an observed source times some of its reads itself (TimedIterator.take): the stretches
    # between them still run at C speed
    take = getattr(items, "take", None)
    try:
        while True:
            room = outbox.space()
            if room > 1:
                # Items the source produced before it raised go out before its error.
                chunk: list[Any] = []
                failure: Exception | None = None
                try:
                    if take is None:
                        chunk.extend(itertools.islice(items, room))
                    else:
                        take(room, chunk)
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
            item = next(items, _DONE)
            if item is _DONE:
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


#: What a runner's input reference is set to once the item was turned into its output.
_TAKEN: Final[Any] = object()


def simple_steps(
    inbox: Any,
    outbox: Any,
    stats: StageStats,
    output: deque[Any],
    fn: Callable[[Any], Any],
    keep: bool,
) -> Steps:
    """The push engine's lowering of ``map`` (``keep=False``) and ``filter`` (``keep=True``),
    on both runtimes: a step machine that either runtime's driver runs.

    The same Go stage as the generic runner, without the port protocol in between: receive,
    call, send. Ready items move without waiting (the channels' ``*_available`` calls), as
    many as the output channel has room for, so a woken stage drains everything that is
    ready before it yields, and never holds more than the downstream channel could (the
    in-flight bound holds). It yields ``RECEIVE`` or ``SEND`` only to wait.
    """
    # An observed run times one call in a stride (StageTiming.item): ``fn`` is the timed
    # call, ``call`` the plain one for the calls in between (``skip`` counts them down).
    timing, call, skip = stats.timing, fn, 0
    if timing is not None:
        fn = timing.timed_always(call)
    name = stats.name
    space, receive_available, send_available, send_nowait = (
        outbox.space,
        inbox.receive_available,
        outbox.send_available,
        outbox.send_nowait,
    )
    batch: list[Any] = []
    while True:
        room = space()
        if room > 1:
            try:
                batch = receive_available(room)
            except Exception:
                batch = []  # the item-by-item path below reports the end
            if batch:
                outs: list[Any] = []
                filtered = 0
                for i in range(len(batch)):
                    # the input leaves the batch as it is worked on: an item turned into a
                    # new object is never held twice (the in-flight bound holds)
                    item, batch[i] = batch[i], _TAKEN
                    try:
                        if skip:  # untimed (no frame more than an unobserved call)
                            skip -= 1
                            out = call(item)
                        else:
                            out = fn(item)
                            if timing is not None:
                                skip, timing.skip = timing.skip, 0
                    except Exception as exc:
                        if timing is not None:
                            timing.error(exc)
                        # what came before the failing item still goes out first (it fits)
                        stats.received += len(batch)
                        stats.filtered += filtered
                        stats.errored += 1
                        stats.lost += len(batch) - i - 1
                        batch = []
                        stats.emitted += len(outs)
                        try:
                            send_available(outs)
                        except (BrokenChannelError, ClosedChannelError):
                            stats.lost += len(outs)
                        inbox.close_receiving()
                        return annotate(exc, name)
                    except BaseException:  # KeyboardInterrupt...: counted, then it ends the run
                        stats.received += len(batch)
                        stats.filtered += filtered
                        stats.errored += 1
                        stats.lost += len(batch) - i - 1 + len(outs)  # never sent
                        batch = []
                        raise
                    if keep:
                        if out:
                            outs.append(item)
                        else:
                            filtered += 1
                    else:
                        outs.append(out)
                sent = len(outs)
                stats.received += len(batch)
                stats.filtered += filtered
                stats.emitted += sent
                batch = []
                try:
                    send_available(outs)
                except (BrokenChannelError, ClosedChannelError):
                    stats.lost += sent
                    inbox.close_receiving()
                    return GONE
                finally:
                    # the channel has them now: keeping references here would keep
                    # consumed items alive past the in-flight bound
                    outs.clear()
                    item = out = None
                continue
        got = yield RECEIVE
        if got is NOTHING:
            continue
        if got is END:
            return COMPLETE
        if type(got) is Failure:
            return got.error  # upstream's, already named after its stage
        stats.received += 1
        try:
            if skip:
                skip -= 1
                out = call(got)
            else:
                out = fn(got)
                if timing is not None:
                    skip, timing.skip = timing.skip, 0
        except Exception as exc:
            if timing is not None:
                timing.error(exc)
            stats.errored += 1
            inbox.close_receiving()
            return annotate(exc, name)
        except BaseException:  # KeyboardInterrupt...: counted, then it ends the run
            stats.errored += 1
            raise
        if keep:
            if not out:
                stats.filtered += 1
                continue
            out = got
        got = None  # only the output is held while it waits to be sent
        stats.emitted += 1
        try:
            send_nowait(out)  # room: no step through the driver
            out = None
            continue
        except WouldBlock:
            output.append(out)
            out = None
        except (BrokenChannelError, ClosedChannelError):
            out = None
            stats.lost += 1
            inbox.close_receiving()
            return GONE
        if (yield SEND) is GONE:
            stats.lost += 1
            inbox.close_receiving()
            return GONE
