"""The push engine's lowerings on the asyncio runtime: hand-written loops for the hottest shapes.

Each does what the generic runner (:mod:`rxpipe._core.steps` driven by
:func:`~rxpipe.engines.push.drivers.drive_async`) would do for that stage, without the port
protocol in between, and moves many ready items per wake-up. They are declared in
:mod:`rxpipe.engines.lowerings`, which says when each applies; a test checks each against the
generic path.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any, Final

from rxpipe._core.stats import StageStats
from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
)
from rxpipe.stages.errors import annotate

__all__ = ("run_iterator_source_async", "run_simple_async")

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


async def run_simple_async(
    inbox: Any, stats: StageStats, outbox: Any, fn: Callable[[Any], Any], keep: bool
) -> None:
    """The push engine's lowering of ``map`` (``keep=False``) and ``filter`` (``keep=True``).

    The same Go stage as the generic runner, without the port protocol in between: receive,
    call, send. Ready items move without suspending (``*_nowait``), so a woken stage drains
    everything that is ready before it yields: several items per wake-up, and never more held
    than one.
    """
    # An observed run times one call in a stride (StageTiming.item): ``fn`` is the timed
    # call, ``call`` the plain one for the calls in between (``skip`` counts them down).
    timing, call, skip = stats.timing, fn, 0
    if timing is not None:
        fn = timing.timed_always(call)
    receive_nowait, send_nowait = inbox.receive_nowait, outbox.send_nowait
    received = emitted = filtered = 0
    holding = False
    batch: list[Any] = []
    try:
        while True:
            # Several ready items per wake-up: take no more than the output channel has room
            # for, so all their results fit at once and the stage never holds more than the
            # downstream channel could (the in-flight bound holds).
            room = outbox.space()
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
                        except BaseException:  # KeyboardInterrupt...: counted, then it ends the run
                            stats.errored += 1
                            stats.lost += len(batch) - i - 1 + len(outs)
                            batch = []
                            raise
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
                try:
                    item = receive_nowait()
                except WouldBlock:
                    item = await inbox.receive()
            except EndOfChannel:
                outbox.close()
                return
            except Exception as exc:
                # its own receiving end closed: the run stops; anything else (a channel error
                # too) is what upstream failed with, and travels on
                if not inbox.statistics().receiving_closed:
                    outbox.fail(exc)
                return
            received += 1
            holding = True
            try:
                if skip:
                    skip -= 1
                    out = call(item)
                else:
                    out = fn(item)
                    if timing is not None:
                        skip, timing.skip = timing.skip, 0
            except Exception as exc:
                if timing is not None:
                    timing.error(exc)
                holding = False
                stats.errored += 1
                inbox.close_receiving()
                outbox.fail(annotate(exc, stats.name))
                return
            except BaseException:  # KeyboardInterrupt...: counted, then it ends the run
                holding = False
                stats.errored += 1
                raise
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
