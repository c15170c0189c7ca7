"""The two ways a push runner waits: awaiting on an event loop, or blocking a thread.

Each driver runs a :class:`~rxpipe.engines.push.parts.Part`: it asks the step machine what to
do next (``SEND``/``RECEIVE``/``WAIT``), does it on the channels with its own waiting
strategy, and sends the outcome back. The decisions (when to pull, what to count, how to end)
are all in :mod:`rxpipe._core.steps`, written once; here is only I/O. Every receive and every
send is where a stage notices that the run stops (the guide's "two-select sandwich"): a
channel closed from the other side, or the task being cancelled.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Final

from rxpipe._core.steps import COMPLETE, END, GONE, NOTHING, RECEIVE, SEND, STALL, Failure
from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
)
from rxpipe.engines.push.parts import Part
from rxpipe.stages.errors import annotate

__all__ = ("drive_async", "drive_blocking", "fail_stage")

#: Ready input items a stage with work running takes in a row before it yields to its loop.
_READY_IN_A_ROW: Final = 64

_NO_LOOP: Final = (
    "a stage scheduled asynchronous work in a run without an event loop; its blueprint must "
    "set is_async = True"
)

_CLOSED: Final[Any] = object()  # a receive found its own end closed: the run is stopping


def _end(part: Part, how: Any) -> None:
    """Close the output channel the way the steps ended (downstream gone: nothing to close)."""
    if how is COMPLETE:
        part.outbox.close()
    elif how is not GONE:
        part.outbox.fail(how)


def _outcome(exc: Exception, part: Part) -> Any:
    """What a receive that raised ``exc`` means to the step machine.

    A channel error is the end of this runner only if this runner's own receiving end was
    closed (the run stops); otherwise it is what upstream failed with (a user function can
    raise a ``ClosedChannelError`` too), and it travels on like any failure.
    """
    if isinstance(exc, EndOfChannel):
        return END
    if isinstance(exc, ClosedChannelError | BrokenChannelError) and part.inbox_closed():
        return _CLOSED
    return Failure(exc)


async def _receive(part: Part) -> Any:
    """One receive, its outcome as the step machine takes it."""
    try:
        return await part.inbox.receive()
    except Exception as exc:
        return _outcome(exc, part)


async def drive_async(part: Part) -> None:
    """Run a part on the running event loop; the work its stages schedule runs beside it.

    While work runs, a stage that wants input waits for whichever comes first: the input item
    or a piece of work ending. Ready items and free room move without suspending.
    """
    steps, output, scheduled, work = part.steps, part.output, part.scheduled, part.work
    outbox = part.outbox
    send_nowait, receive_nowait = outbox.send_nowait, part.inbox.receive_nowait
    receive = functools.partial(_receive, part)
    ready_in_a_row = 0
    got: Any = None
    try:
        op = next(steps)
        while True:
            if scheduled:
                work.start(scheduled)
            if op == SEND:
                # it stays in ``output`` until sent: cancelled meanwhile, the stop counts it lost
                item = output[0]
                try:
                    try:
                        send_nowait(item)
                    except WouldBlock:
                        await outbox.send(item)
                except (BrokenChannelError, ClosedChannelError):
                    got = GONE  # the steps count it lost
                else:
                    got = None
                del item
                output.popleft()
            elif op == RECEIVE:
                got = NOTHING
                # a ready item is taken at once; beside running work, only so many in a row
                if ready_in_a_row < _READY_IN_A_ROW and not work.input_pending:
                    try:
                        got = receive_nowait()
                    except WouldBlock:
                        pass
                    except Exception as exc:
                        got = _outcome(exc, part)
                if got is NOTHING:
                    ready_in_a_row = 0
                    got = await work.awaiting(receive)
                elif work.running:
                    ready_in_a_row += 1
                if got is _CLOSED:
                    return
            else:  # WAIT
                await work.wait_or_stall(part.stats.name)
                got = None
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        _end(part, ended.value)
    finally:
        await _stop_async(part)


async def _stop_async(part: Part) -> None:
    again = await part.work.stop()
    got = part.work.input_at_stop()
    if got is not NOTHING and got is not _CLOSED and got is not END and type(got) is not Failure:
        part.stats.lost += 1  # an item arrived while the stage was stopping
    part.steps.close()
    part.stop()
    if again:
        raise asyncio.CancelledError


def drive_blocking(part: Part) -> None:
    """Run a part on the calling thread: every receive and send blocks it."""
    steps, output, scheduled = part.steps, part.output, part.scheduled
    inbox, outbox = part.inbox, part.outbox
    got: Any = None
    try:
        op = next(steps)
        while True:
            if scheduled:
                raise annotate(RuntimeError(_NO_LOOP), part.stats.name)
            if op == SEND:
                item = output[0]
                try:
                    outbox.send(item)
                except (BrokenChannelError, ClosedChannelError):
                    got = GONE
                else:
                    got = None
                del item
                output.popleft()
            elif op == RECEIVE:
                try:
                    got = inbox.receive()
                except Exception as exc:
                    got = _outcome(exc, part)
                    if got is _CLOSED:
                        return
            else:
                raise annotate(RuntimeError(STALL), part.stats.name)
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        _end(part, ended.value)
    finally:
        part.steps.close()
        part.stop()


def fail_stage(exc: BaseException, inbox: Any, outbox: Any) -> None:
    """End a runner that raised: fail its output, close its input.

    A runner that had already closed its output ended before it raised (its ``post_stop``,
    or a bug): nothing can carry the exception downstream, so it is raised again for the run
    to report (the asyncio runtime raises it from the run's stop).
    """
    if outbox.statistics().closed:
        raise exc
    if inbox is not None:
        inbox.close_receiving()
    outbox.fail(exc)
