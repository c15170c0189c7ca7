"""The one scheduler for the asynchronous work stages ask for (``Ports.schedule``).

Work runs on a few long-lived *runner* tasks that :class:`Work` owns, not on a task per piece:
a runner awaits the awaitable handed to it, queues its end in ``finished`` (for the driver to
hand back to the interpreter, serially with the other callbacks), gives the loop one turn (the
driver, woken by that end, usually hands it the next piece meanwhile) and otherwise parks on a
future until it is handed one. A runner is created only when a piece starts and none is free,
so there are never more runners than pieces of work running at once; they all run until the
run stops, when they are cancelled (parked or busy: running work is cancelled and its
``done`` is not called). This spares a task and a done-callback per piece.

A stage may also hand its pieces through a :class:`Lane`: at most ``lane.limit`` of them run
at once and the others wait in the lane, in order, so the stage can ask for the next pieces
before the running ones end. A runner whose lane piece ends takes the lane's next one at once,
without a turn of the loop; that is what makes a fan-out as cheap as a pool of worker tasks
fed by a queue (``map_async`` in ordered mode uses it within its window).

A driver that has nothing to do but wait calls :meth:`Work.wait`: it returns when a piece of
work ended or :meth:`Work.wake` was called (an input the driver asked for arrived). Every
engine and runtime that runs asynchronous stages uses this class: the pull engine's async
segments, each push stage on the asyncio runtime, and async stages on the threads runtime
(on their thread's own loop).

One piece of work can be cancelled alone (:meth:`Work.cancel`, the hook timers use): a piece
still waiting (in a lane, or handed to a runner that has not started it) is reported at once;
a running one has its runner cancelled while it awaits that piece, and the runner takes the
cancellation back (``Task.uncancel``), reports it through ``done`` as the piece's error and
goes on with the next piece. The pieces share their runner's task, hence its ``contextvars``
context: a variable a piece sets is seen by the later pieces on that runner (a task per piece
gave each a copy of the driver's context).

A :class:`Timer` is scheduled like work (``Ports.start_timer`` queues one where
``Ports.schedule`` queues a callable): :meth:`Work.start` arms it as a ``call_later`` handle on
the same loop, counted in ``running`` like a piece of work, and its expiry is queued in
``finished`` like the end of work. No task or runner per timer; cancelling it cancels the
handle.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any, Final, Protocol, TypeVar, final

from rxpipe._core.clock import Timer
from rxpipe._core.notes import annotate
from rxpipe._core.stats import Done
from rxpipe._core.telemetry import TimedWork

__all__ = (
    "NOT_YET",
    "STALL",
    "Lane",
    "LaneCall",
    "Work",
    "run_or_start",
    "settle_tasks",
)


@final
class _NotYet:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_YET"


STALL: Final = "a stage neither pushed nor pulled after on_pull: its logic breaks the port protocol"

#: What :meth:`Work.awaiting` returns when a piece of work ended before the input came.
NOT_YET: Final[Any] = _NotYet()

#: ``(stage index, done, result, error)``: a piece of work that ended.
Ended = tuple[int, Done, Any, BaseException | None]

#: ``(stage index, awaitable, done, lane)``: a piece of work handed to a runner.
_Piece = tuple[int, Awaitable[Any], Done, "Lane | None"]


@final
class Lane:
    """The pieces of one stage that run at most ``limit`` at once; the rest wait in order."""

    __slots__ = ("limit", "queue", "running", "work")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: How many of its pieces run now.
        self.running = 0
        #: Its pieces waiting for their turn: ``(stage index, call, done)``.
        self.queue: deque[tuple[int, LaneCall, Done]] = deque()
        self.work: Work | None = None  # the Work it was first handed to


class LaneCall(tuple[Lane, Callable[[Any], Awaitable[Any]], Any]):
    """``LaneCall((lane, fn, arg))``: the work ``fn(arg)``, run within ``lane``'s limit.

    Pass it to ``Ports.schedule`` as the work: :class:`Work` calls ``fn(arg)`` only once the
    piece's turn in the lane comes.
    """

    __slots__ = ()

    def __call__(self) -> Awaitable[Any]:
        return self[1](self[2])


@final
class _Runner:
    """A long-lived task of a :class:`Work`, and the piece it runs (``None`` when free)."""

    __slots__ = ("busy", "cancelled", "piece", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.piece: _Piece | None = None
        #: It awaits ``piece`` (else the piece was handed to it and has not started yet).
        self.busy = False
        #: :meth:`Work.cancel` cancelled ``piece`` alone (not the whole run).
        self.cancelled = False


class Receivable(Protocol):
    """An input that can wake a future when it has an item (an asyncio channel)."""

    def wake_when_receivable(self, fut: asyncio.Future[None]) -> bool: ...

    def forget_receiver(self, fut: asyncio.Future[None]) -> None: ...


@final
class Work:
    """The running work of one interpreter: start it, wait for it, cancel it at the end."""

    __slots__ = (
        "_idle",
        "_lanes",
        "_runners",
        "_spinning",
        "_stopping",
        "_waiter",
        "awaited_input",
        "finished",
        "next_due",
        "running",
        "timers",
    )

    def __init__(self) -> None:
        #: How many pieces of work were started and have not ended (lanes' waiting ones too).
        self.running = 0
        self.finished: deque[Ended] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._runners: list[_Runner] = []
        #: Runners that just ended a piece and give the loop one turn before they park.
        self._spinning: dict[_Runner, None] = {}
        #: Parked runners, each with the future it waits on for its next piece.
        self._idle: dict[_Runner, asyncio.Future[_Piece]] = {}
        self._lanes: list[Lane] = []
        self._stopping = False
        #: The driver's input, awaited beside the work (see :meth:`awaiting`); while it is
        #: not None, the driver takes no other input (an attribute: read per item).
        self.awaited_input: asyncio.Future[Any] | None = None
        #: Armed timers (counted in ``running`` too): stage, callback and loop time due of each.
        self.timers: dict[Timer, tuple[int, Done, float]] = {}
        #: The earliest loop time an armed timer is due (``math.inf`` with none).
        self.next_due = math.inf

    def start(self, scheduled: deque[tuple[int, Callable[[], Awaitable[Any]], Done]]) -> None:
        """Start every piece of work the stages scheduled since the last call."""
        while scheduled:
            index, work, done = scheduled.popleft()
            if type(work) is Timer:
                if not work.cancelled:
                    self._arm(index, work, done)
                continue
            lane = None
            if type(work) is LaneCall:
                lane = work[0]
                if lane.work is not self:
                    lane.work = self
                    self._lanes.append(lane)
                if lane.running >= lane.limit:
                    lane.queue.append((index, work, done))
                    if type(done) is TimedWork:
                        done.wait()  # an observed stage: its time runs from its turn
                    self.running += 1
                    continue
            try:
                awaitable = work()
            except Exception as exc:  # the work failed before it could even start
                self.finished.append((index, done, None, exc))
                continue
            self.running += 1
            if lane is not None:
                lane.running += 1
            self._hand((index, awaitable, done, lane))

    def _arm(self, index: int, timer: Timer, done: Done) -> None:
        timer.work = self
        handle = asyncio.get_running_loop().call_later(
            timer.delay, self._expired, index, timer, done
        )
        timer.handle = handle
        when = handle.when()
        self.timers[timer] = (index, done, when)
        if when < self.next_due:
            self.next_due = when
        self.running += 1

    def _expired(self, index: int, timer: Timer, done: Done) -> None:
        self._disarmed(timer)
        self.finished.append((index, done, None, None))
        self.wake()

    def fire_due(self) -> bool:
        """Expire now every armed timer whose time has come; whether there was one.

        For a driver whose input may come while its loop is busy (read inline, or taken
        ready from a channel): a timer due meanwhile is delivered before that input, not
        after it (nor a few hundred items later).
        """
        time = asyncio.get_running_loop().time()
        if time < self.next_due:
            return False
        due = [(timer, where) for timer, where in self.timers.items() if where[2] <= time]
        for timer, (index, done, _) in due:
            if timer.handle is not None:
                timer.handle.cancel()
            self._expired(index, timer, done)
        return bool(due)

    def _disarmed(self, timer: Timer) -> None:
        timer.handle = timer.work = None
        if not self._stopping:
            where = self.timers.pop(timer, None)
            self.running -= 1
            if where is not None and where[2] <= self.next_due:
                self.next_due = min((w[2] for w in self.timers.values()), default=math.inf)

    def _hand(self, piece: _Piece) -> None:
        """Give ``piece`` to a free runner, or to a new one."""
        if self._spinning:
            runner, _ = self._spinning.popitem()
            runner.piece = piece
        elif self._idle:
            runner, parked = self._idle.popitem()
            runner.piece = piece
            parked.set_result(piece)
        else:
            runner = _Runner()
            runner.piece = piece
            self._runners.append(runner)
            runner.task = asyncio.ensure_future(self._run(runner))

    async def _run(self, runner: _Runner) -> None:
        """A runner: await the piece it was handed, queue its end, take the next."""
        finished, idle, spinning = self.finished, self._idle, self._spinning
        create_future = asyncio.get_running_loop().create_future
        task = runner.task
        assert task is not None
        piece = runner.piece
        try:
            while True:
                if piece is None:
                    # One turn of the loop first: the driver, woken by the end just queued,
                    # runs before this runner and usually hands it the next piece at once.
                    spinning[runner] = None
                    await _one_turn()
                    piece = runner.piece
                    if piece is None:
                        del spinning[runner]
                        parked = create_future()
                        idle[runner] = parked
                        piece = await parked
                index, awaitable, done, lane = piece
                result: Any = None
                error: BaseException | None = None
                if runner.cancelled:  # cancelled alone (Work.cancel) before it started
                    _close(awaitable)
                    error = asyncio.CancelledError()
                else:
                    runner.busy = True
                    try:
                        result = await awaitable
                    except asyncio.CancelledError as exc:
                        if task.cancelling() > runner.cancelled:
                            raise  # the run stops (or the task was cancelled from outside)
                        error = exc  # cancelled alone, or the piece raised it itself
                    except BaseException as exc:
                        error = exc
                    runner.busy = False
                    if task.cancelling():  # cancelled alone: take it back
                        task.uncancel()
                runner.cancelled = False
                del awaitable
                finished.append((index, done, result, error))
                del done, result
                self.running -= 1
                runner.piece = piece = None
                if lane is not None:
                    lane.running -= 1
                    queue = lane.queue
                    while queue:  # the lane's next piece, at once (Work._next_in, inlined)
                        index, call, done = queue.popleft()
                        if type(done) is TimedWork:
                            done.begin()
                        try:
                            awaitable = call[1](call[2])
                        except Exception as exc:  # the work failed before it could start
                            finished.append((index, done, None, exc))
                            self.running -= 1
                            continue
                        lane.running += 1
                        piece = runner.piece = (index, awaitable, done, lane)
                        del awaitable, done
                        break
                waiter = self._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                if error is not None and not isinstance(error, Exception | asyncio.CancelledError):
                    raise error  # SystemExit & co. end the loop as well
        except BaseException:
            if not self._stopping:
                self._lost(runner)
            raise

    def _next_in(self, lane: Lane) -> _Piece | None:
        """Start the next piece waiting in ``lane`` (the caller runs it)."""
        queue = lane.queue
        while queue:
            index, call, done = queue.popleft()
            if type(done) is TimedWork:
                done.begin()
            try:
                awaitable = call[1](call[2])
            except Exception as exc:  # the work failed before it could even start
                self.finished.append((index, done, None, exc))
                self.running -= 1
                continue
            lane.running += 1
            return (index, awaitable, done, lane)
        return None

    def _lost(self, runner: _Runner) -> None:
        """``runner`` ended before the run stopped: its piece (if any) ends without ``done``.

        That is what a task per piece did when something cancelled it from outside; with
        nothing left running, the driver then sees the stage stall.
        """
        self._runners.remove(runner)
        self._spinning.pop(runner, None)
        self._idle.pop(runner, None)
        piece = runner.piece
        if piece is not None:
            _close(piece[1])
            runner.piece = None
            self.running -= 1
            lane = piece[3]
            if lane is not None:
                lane.running -= 1
                if lane.queue:
                    following = self._next_in(lane)
                    if following is not None:
                        self._hand(following)
        self.wake()

    def cancel(self, done: Done) -> bool:
        """Cancel the piece of work whose callback is ``done``, alone.

        Its ``done`` is called later with a :class:`asyncio.CancelledError` (a timer wrapping
        the work turns it into its own error); its runner goes on with the next piece.
        Returns whether such a piece was started and had not ended.
        """
        for runner in self._runners:
            piece = runner.piece
            if piece is not None and piece[2] is done:
                if not runner.cancelled:
                    runner.cancelled = True
                    if runner.busy and runner.task is not None:
                        runner.task.cancel()  # else it is reported before it starts
                return True
        for lane in self._lanes:
            for waiting in lane.queue:
                if waiting[2] is done:
                    lane.queue.remove(waiting)
                    self.finished.append((waiting[0], done, None, asyncio.CancelledError()))
                    self.running -= 1
                    self.wake()
                    return True
        return False

    def wake(self, _: object = None) -> None:
        """End a :meth:`wait` in progress (a done-callback for the driver's own input task)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait until a piece of work ends or :meth:`wake` is called."""
        if self.finished:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def wait_beside(self, inbox: Receivable) -> None:
        """Wait until a piece of work ends, a timer expires or ``inbox`` can be received from.

        The inbox wakes the same future the work does, so waiting for input beside running
        work costs no task (:meth:`awaiting` needs one per input that has to wait).
        """
        if self.finished:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if not inbox.wake_when_receivable(waiter):
            self._waiter = None
            return
        try:
            await waiter
        finally:
            self._waiter = None
            inbox.forget_receiver(waiter)

    async def wait_or_stall(self, stage: str) -> None:
        """The driver has nothing to do but wait for running work; with none running, the
        stage's logic broke the port protocol (it neither pushed nor pulled)."""
        if not self.running and not self.finished:
            raise annotate(RuntimeError(STALL), stage)
        await self.wait()

    async def awaiting(self, receive: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """The outcome of the driver's next input, raced against the work: what ``receive()``
        returns, or :data:`NOT_YET` when a piece of work ended first (the input stays awaited,
        and the next call picks it up). With no work at all it simply awaits the input.
        """
        task = self.awaited_input
        if task is None:
            if not self.running and not self.finished:
                return await receive()  # nothing else can happen meanwhile
            # most inputs do not wait: no task unless this one does (see run_or_start)
            got, started = run_or_start(receive())
            if started is None:
                return got
            task = self.awaited_input = started
            task.add_done_callback(self.wake)
        if not task.done():
            await self.wait()  # woken by ended work or by the input
        if not task.done():
            return NOT_YET
        self.awaited_input = None
        return task.result()

    def input_at_stop(self) -> Any:
        """What the input awaited at :meth:`stop` brought (:data:`NOT_YET` if nothing)."""
        task, self.awaited_input = self.awaited_input, None
        if task is None or task.cancelled():
            return NOT_YET
        return task.result()

    async def stop(self, *extra: asyncio.Future[Any]) -> bool:
        """Cancel the running work (and ``extra`` tasks of the driver); see :func:`settle_tasks`.

        Free runners are cancelled too: nothing of this :class:`Work` is left running. Pieces
        waiting in a lane never start.
        """
        self._stopping = True
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.next_due = math.inf
        runners = self._runners
        pending: list[asyncio.Future[Any]] = [r.task for r in runners if r.task is not None]
        pending.extend(extra)
        if self.awaited_input is not None:
            pending.append(self.awaited_input)
        self._runners = []
        self._spinning.clear()
        self._idle.clear()
        for lane in self._lanes:
            lane.queue.clear()
            lane.running = 0
        self.running = 0
        again = await settle_tasks(pending) if pending else False
        for runner in runners:
            if runner.piece is not None:  # cancelled, or handed and never started: close it
                _close(runner.piece[1])
        return again


@types.coroutine
def _one_turn() -> Generator[None, None, None]:
    """Let the event loop run one turn (``asyncio.sleep(0)`` without the call)."""
    yield


def _close(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine that will never run (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


T = TypeVar("T")


def run_or_start(coro: Coroutine[Any, Any, T]) -> tuple[Any, asyncio.Task[T] | None]:
    """Run ``coro`` up to its first suspension, in the caller: ``(result, None)`` if it never
    suspended, else ``(None, task)`` with a task that goes on with it from there.

    A driver that must race an input against running work (or an armed timer) needs a task
    for the input only when the input is not there at once: most reads from a source that
    rarely waits (a sync iterator behind fused stages) then cost no task.
    """
    try:
        first = coro.send(None)
    except StopIteration as stop:
        return stop.value, None
    return None, asyncio.ensure_future(_Resumed(coro, first))


_STARTED: Final[Any] = object()


@final
class _Resumed(Coroutine[Any, Any, Any]):
    """A coroutine already run to its first suspension, for a task to go on with.

    The task's first step gets the value that suspension yielded (the future it waits on,
    flagged as such), the later steps go to the coroutine. A task cancelled before its first
    step throws the cancellation in here, so it reaches the coroutine where it waits (an
    ``async def`` wrapper would be cancelled before it started, leaving the coroutine, and an
    async generator it was reading, suspended for good).
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def send(self, value: Any) -> Any:
        first = self.first
        if first is not _STARTED:
            self.first = _STARTED
            return first
        return self.coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self.first = _STARTED
        if val is None and tb is None:
            return self.coro.throw(typ)
        return self.coro.throw(typ, val, tb)  # pragma: no cover - the old signature

    def close(self) -> None:
        self.first = _STARTED
        self.coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:  # pragma: no cover - tasks only send
        raise TypeError("a resumed coroutine is run by its task, not awaited")


async def settle_tasks(tasks: Iterable[asyncio.Future[Any]]) -> bool:
    """Cancel ``tasks`` and wait until they are all done, even if we are cancelled meanwhile.

    Cleanup code runs this in ``finally`` blocks, where a second cancellation (the run being
    stopped while this stage was already ending) must not skip the accounting that follows.
    Returns whether such a cancellation arrived: the caller re-raises after its accounting.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    cancelled = False
    while True:
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return cancelled
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
