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

from rxpipe._core.clock import Deadlines
from rxpipe._core.steps import (
    COMPLETE,
    END,
    GONE,
    NOTHING,
    RECEIVE,
    SEND,
    STALL,
    YIELD,
    Failure,
)
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
    inbox_receive = part.inbox.receive
    receive = functools.partial(_receive, part)
    # an asyncio channel wakes the future running work wakes (see Work.wait_beside)
    wake_me = part.inbox if hasattr(part.inbox, "wake_when_receivable") else None
    loop_time = asyncio.get_running_loop().time
    ready_in_a_row = 0
    held: list[Any] = []  # an input taken after a timer came due, handed over after it
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
                if held:
                    got = held.pop()
                    op = steps.send(got)
                    got = None
                    continue
                got = NOTHING
                # a ready item is taken at once; beside running work, only so many in a row
                if ready_in_a_row < _READY_IN_A_ROW and work.awaited_input is None:
                    try:
                        got = receive_nowait()
                    except WouldBlock:
                        pass
                    except Exception as exc:
                        got = _outcome(exc, part)
                if got is NOTHING:
                    if ready_in_a_row >= _READY_IN_A_ROW:
                        await asyncio.sleep(0)  # the running work gets its turn
                    ready_in_a_row = 0
                    if (
                        wake_me is not None
                        and work.awaited_input is None
                        and (work.running or work.finished)
                    ):
                        # input, ended work and timers all wake one future: no task
                        await work.wait_beside(wake_me)
                        try:
                            got = receive_nowait()
                        except WouldBlock:
                            got = NOTHING
                        except Exception as exc:
                            got = _outcome(exc, part)
                    elif work.running or work.finished or work.awaited_input is not None:
                        got = await work.awaiting(receive)
                    else:  # nothing else can happen meanwhile: just the input
                        try:
                            got = await inbox_receive()
                        except Exception as exc:
                            got = _outcome(exc, part)
                elif work.running:
                    ready_in_a_row += 1
                if got is _CLOSED:
                    return
                if (
                    work.timers
                    and got is not NOTHING
                    and work.next_due <= loop_time()
                    and work.fire_due()
                ):
                    # due while other tasks held the loop: the timer first, then this input
                    held.append(got)
                    got = NOTHING
            elif op == YIELD:
                await asyncio.sleep(0)
                got = None
            else:  # WAIT
                await work.wait_or_stall(part.stats.name)
                got = None
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        _end(part, ended.value)
    finally:
        _count_held(part, held)
        await _stop_async(part)


def _count_held(part: Part, held: list[Any]) -> None:
    """An input taken and never handed over (the run ended meanwhile) is lost in this stage."""
    if held and held[0] is not END and type(held[0]) is not Failure:
        part.stats.received += 1
        part.stats.lost += 1


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
    """Run a part on the calling thread: every receive and send blocks it.

    A stage's timers are deadlines here (no event loop): a receive waits at most until the
    next one, a due timer is delivered before the input read after it, and a stage waiting
    for nothing but a timer sleeps until it is due.
    """
    steps, output, scheduled = part.steps, part.output, part.scheduled
    outbox = part.outbox
    timers: Deadlines | None = None
    held: list[Any] = []  # an input read after a timer came due, handed over after it
    got: Any = None
    try:
        op = next(steps)
        while True:
            if scheduled:
                if timers is None:
                    timers = Deadlines(part.work.finished)
                try:
                    timers.arm(scheduled)
                except RuntimeError as exc:
                    raise annotate(exc, part.stats.name) from None
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
                if held:
                    got = held.pop()
                else:
                    got = _receive_blocking(part, timers)
                    if got is _CLOSED:
                        return
                    if timers is not None and timers.fire() and got is not NOTHING:
                        held.append(got)  # the timer first, then this input
                        got = NOTHING
            elif op == YIELD:
                got = None  # the other threads run anyway
            elif timers is None or not timers.wait(part.interrupt):
                raise annotate(RuntimeError(STALL), part.stats.name)
            elif part.interrupt is not None and part.interrupt.is_set():
                return  # the run stops (its channels are closed): end quietly
            else:
                got = None
            op = steps.send(got)
            got = None
    except StopIteration as ended:
        _end(part, ended.value)
    finally:
        _count_held(part, held)
        if timers is not None:
            timers.clear()
        part.steps.close()
        part.stop()


def _receive_blocking(part: Part, timers: Deadlines | None) -> Any:
    """One blocking receive, at most until the next timer is due (then :data:`NOTHING`)."""
    inbox = part.inbox
    left = None if timers is None else timers.time_left()
    if left is not None:
        try:  # wait apart from the receive: upstream may fail with a TimeoutError of its own
            inbox.wait_receivable(timeout=left)
        except TimeoutError:
            return NOTHING
    try:
        return inbox.receive()
    except Exception as exc:
        return _outcome(exc, part)


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
