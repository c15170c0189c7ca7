"""One loop per stage: the Go pipeline stage, for asyncio tasks and for threads.

Each loop is the guide's "two-select sandwich" made out of channel operations: every receive
and every send is also where the stage notices cancellation (a channel closed from the other
side, or the task/thread being stopped). The two variants are the same loop; one awaits and
one blocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ClosedChannelError,
    EndOfChannel,
)
from rxpipe.engines.push.ports import COMPLETE, NOTHING, PushPorts
from rxpipe.stages._base import StageStats
from rxpipe.stages.errors import annotate

__all__ = ("run_source_async", "run_source_threads", "run_stage_async", "run_stage_threads")

_STALL = "stage {!r} neither pushed nor pulled after on_pull: its logic breaks the port protocol"


def _finish_outbox(p: PushPorts, outbox: Any) -> None:
    """Close the output channel the way the stage ended."""
    if p.end is COMPLETE:
        outbox.close()
    else:
        outbox.fail(p.end)


async def run_stage_async(p: PushPorts, outbox: Any) -> None:
    """Drive one stage's logic on asyncio channels until it ends."""
    logic = p.logic
    inbox = p.inbox
    try:
        p.call(logic.pre_start)
        while True:
            if p.out_item is not NOTHING:
                item = p.out_item
                try:
                    await outbox.send(item)
                except BrokenChannelError:  # downstream is gone
                    p.stats.lost += 1
                    p.out_item = NOTHING
                    p.out_closed = True
                    p.out_pulled = False
                    p.call(logic.on_downstream_finish)
                else:
                    p.out_item = NOTHING
            if p.end is not NOTHING:
                _finish_outbox(p, outbox)
                return
            if p.out_closed and p.in_closed:
                return
            if p.in_pulled:
                try:
                    item = await inbox.receive()
                except EndOfChannel:
                    p.in_closed = True
                    p.in_pulled = False
                    p.call(logic.on_upstream_finish)
                except (ClosedChannelError, BrokenChannelError):
                    p.in_closed = True
                    p.in_pulled = False
                except Exception as exc:  # upstream failed: the channel carries its error
                    p.in_closed = True
                    p.in_pulled = False
                    p.call(logic.on_upstream_failure, exc)
                else:
                    p.in_pulled = False
                    p.item = item
                    p.call(logic.on_push)
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
                    p.stats.lost += 1
                    p.out_item = NOTHING
                    p.out_closed = True
                    p.out_pulled = False
                    p.call(logic.on_downstream_finish)
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
                except EndOfChannel:
                    p.in_closed = True
                    p.in_pulled = False
                    p.call(logic.on_upstream_finish)
                except (ClosedChannelError, BrokenChannelError):
                    p.in_closed = True
                    p.in_pulled = False
                except Exception as exc:
                    p.in_closed = True
                    p.in_pulled = False
                    p.call(logic.on_upstream_failure, exc)
                else:
                    p.in_pulled = False
                    p.item = item
                    p.call(logic.on_push)
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


async def run_source_async(items: AsyncIterator[Any], stats: StageStats, outbox: Any) -> None:
    """Send a source's items into its output channel; stop when downstream is gone."""
    try:
        async for item in items:
            try:
                await outbox.send(item)
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
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


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
