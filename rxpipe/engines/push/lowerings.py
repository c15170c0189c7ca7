"""The push engine's lowerings: hand-written loops for the hottest shapes.

Each does what the generic runner (:func:`rxpipe._core.steps.stage_steps`, run by a
runtime's driver) would do for that stage, without the port protocol in between, and moves
many ready items per wake-up. Each is a step machine like the generic one, so the runtimes'
drivers run it unchanged. They are declared in :mod:`rxpipe.engines.lowerings`, which says
when each applies; a test checks each against the generic path.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from rxpipe._core.stats import StageStats
from rxpipe._core.steps import (
    COMPLETE,
    END,
    GONE,
    NOTHING,
    RECEIVE,
    SEND,
    YIELD,
    Failure,
    Steps,
)
from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ClosedChannelError,
    WouldBlock,
)
from rxpipe.stages.errors import annotate

__all__ = ("iterator_source_steps", "simple_steps")


def iterator_source_steps(
    items: Iterator[Any], outbox: Any, stats: StageStats, output: deque[Any], *, batch: bool
) -> Steps:
    """A synchronous source on either runtime: with ``batch``, as many items per step as the
    channel has room for, then one at a time while it is full (a ``SEND`` step waits for
    room); without, each item is sent as soon as it was read (a thread's source may block
    between items: a batch would hold back those it read until it is full).

    ``YIELD`` after a batch that found room all the time lets the other runners go (on a
    loop; a thread has nothing to give up). Items the source produced before it raised go
    out before its error.
    """
    # an observed source times some of its reads itself (TimedIterator.take): the stretches
    # between them still run at C speed
    take = getattr(items, "take", None)
    space, send_available, send_nowait = outbox.space, outbox.send_available, outbox.send_nowait
    chunk: list[Any] = []
    while True:
        room = space() if batch else 0
        if room > 1:
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
                stats.emitted += taken
                try:
                    send_available(chunk)
                except (BrokenChannelError, ClosedChannelError):
                    stats.lost += taken
                    return GONE
                finally:
                    chunk.clear()  # the channel holds them now (see simple_steps)
            if failure is not None:
                return annotate(failure, stats.name)
            if taken < room:
                return COMPLETE  # exhausted
            yield YIELD
            continue
        try:
            item = next(items)
        except StopIteration:
            return COMPLETE
        except Exception as exc:
            return annotate(exc, stats.name)
        stats.emitted += 1
        try:
            send_nowait(item)
            item = None
            continue
        except WouldBlock:
            output.append(item)
            item = None
        except (BrokenChannelError, ClosedChannelError):
            stats.lost += 1
            return GONE
        if (yield SEND) is GONE:
            stats.lost += 1
            return GONE


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
