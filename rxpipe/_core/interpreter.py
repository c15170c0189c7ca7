"""The interpreter: runs any chain of stage logics on the caller's thread (the kernel's heart).

Every engine runs stages on it: the pull engine's generic segments, each push stage (an
interpreter between two channels), publishers and processors, and composite stages
(fragments, ``parallel``, ``partition``) for their sub-chains. It does no I/O and knows no
engine; it sits under the blueprints, which build it through
:func:`rxpipe.stages.errors.interpreter`.

Every port action becomes an event on one queue, processed in a loop, so a ``push`` never
calls the next stage's ``on_push`` directly. What a stage sees of its inlet (``has_pulled``,
``is_upstream_closed``) changes when an event is delivered to it, not when it is queued: an end
queued behind an item must not look like the end before the item arrives. The call stack
stays flat however long the chain and however the stages ping-pong (rule 3.3).

The interpreter does no I/O: a driver feeds it input items (:meth:`Interpreter.feed`) and asks
for output (:meth:`Interpreter.demand`), which is how the same interpreter serves sync
iteration, async iteration, channels and publisher edges. Its two edges are the boundaries
(Pekko's boundary logics): ``input_wanted``/``feed*`` and the ``on_input_cancel`` hook at the
upstream edge, ``demand``/``output``/``finished`` and ``cancel`` at the downstream edge.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from time import perf_counter
from typing import Any, Final, Protocol, final

from rxpipe._core.clock import Timer
from rxpipe._core.notes import annotate
from rxpipe._core.stats import Done, StageStats
from rxpipe._core.telemetry import StageTiming

__all__ = ("Interpreter", "Logic", "LogicFactory")


class Logic(Protocol):
    """What the interpreter calls on a stage's logic (``rxpipe.StageLogic`` is one)."""

    def pre_start(self) -> None: ...
    def on_push(self) -> None: ...
    def on_pull(self) -> None: ...
    def on_upstream_finish(self) -> None: ...
    def on_upstream_failure(self, error: BaseException) -> None: ...
    def on_downstream_finish(self) -> None: ...
    def on_timer(self, key: Hashable) -> None: ...
    def post_stop(self) -> None: ...
    def held_items(self) -> int: ...


#: Builds one stage's logic for this run, bound to the ports the interpreter gives it.
LogicFactory = Callable[[Any], Logic]


def _ignore() -> None:
    """The default upstream-cancel hook: a driver reading an iterator has nothing to close."""


_ON_PULL: Final = 0
_ON_PUSH: Final = 1
_ON_FINISH: Final = 2
_ON_FAILURE: Final = 3
_ON_CANCEL: Final = 4
_PRE_START: Final = 5
_ON_DONE: Final = 6

_EMPTY: Final = object()


@final
class Ports:
    """The ports of stage ``index``; the state of its inlet and outlet lives here."""

    __slots__ = (
        "_in_closed",
        "_in_pulled",
        "_item",
        "_out_closed",
        "_out_pulled",
        "_timers",
        "index",
        "interp",
        "logic",
        "stats",
    )

    def __init__(self, interp: Interpreter, index: int, stats: StageStats) -> None:
        self.interp = interp
        self.index = index
        self.stats = stats
        self.logic: Logic
        self._item: Any = _EMPTY
        self._in_pulled = False
        self._in_closed = False
        self._out_pulled = False
        self._out_closed = False
        self._timers: dict[Hashable, Timer] | None = None

    def pull(self) -> None:
        if self._in_closed or self._in_pulled:
            return
        self._in_pulled = True
        self.interp._pulled(self.index)

    def grab(self) -> Any:
        item = self._item
        if item is _EMPTY:
            raise RuntimeError(f"stage {self.stats.name!r} grabbed with no item pushed")
        self._item = _EMPTY
        self.stats.received += 1
        return item

    def push(self, item: Any) -> None:
        if not self._out_pulled:
            raise RuntimeError(f"stage {self.stats.name!r} pushed without a pull from downstream")
        self._out_pulled = False
        self.stats.emitted += 1
        self.interp._pushed(self.index, item)

    def complete(self) -> None:
        self.cancel()
        if self._timers:
            self.cancel_timers()
        if not self._out_closed:
            self._out_closed = True
            self._out_pulled = False
            self.interp._completed(self.index)

    def fail(self, error: BaseException) -> None:
        self.cancel()
        if self._timers:
            self.cancel_timers()
        if not self._out_closed:
            self._out_closed = True
            self._out_pulled = False
            self.interp._failed(self.index, error)

    def cancel(self) -> None:
        if not self._in_closed:
            self._in_closed = True
            self._in_pulled = False
            self.interp._cancelled(self.index)

    def can_push(self) -> bool:
        return self._out_pulled

    def has_pulled(self) -> bool:
        return self._in_pulled

    def is_upstream_closed(self) -> bool:
        return self._in_closed

    def schedule(self, work: Callable[[], Awaitable[Any]], done: Done) -> None:
        timing = self.stats.timing
        if timing is not None:  # an observed run times the work from here to its end
            done = timing.work(done)
        self.interp.scheduled.append((self.index, work, done))

    # -- timers: scheduled like work, armed by the driver's Work, cancelled when the stage stops
    def start_timer(self, key: Hashable, delay: float) -> None:
        timers = self._timers
        if timers is None:
            timers = self._timers = {}
        old = timers.get(key)
        if old is not None:
            old.cancel()
        timer = timers[key] = Timer(max(0.0, delay))

        def expired(_result: Any, _error: BaseException | None) -> None:
            if timers.get(key) is timer:  # not cancelled or restarted since it expired
                del timers[key]
                self.logic.on_timer(key)

        self.interp.scheduled.append((self.index, timer, expired))

    def cancel_timer(self, key: Hashable) -> None:
        if self._timers:
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def timer_active(self, key: Hashable) -> bool:
        return bool(self._timers) and key in self._timers  # type: ignore[operator]

    def cancel_timers(self) -> None:
        """Cancel every timer of the stage (it stopped)."""
        timers = self._timers
        if timers:
            for timer in timers.values():
                timer.cancel()
            timers.clear()


@final
class Interpreter:
    """A linear chain of stage logics driven by explicit input and output demand.

    Drivers call :meth:`start`, then :meth:`demand` when they want an item and
    :meth:`feed`/:meth:`feed_end`/:meth:`feed_error` when the chain asked for input
    (``input_wanted``). Output appears in ``output``; the end in ``finished``/``error``.
    """

    __slots__ = (
        "_busy",
        "_events",
        "_ports",
        "error",
        "finished",
        "input_closed",
        "input_wanted",
        "last_ports",
        "on_input_cancel",
        "output",
        "scheduled",
        "stats",
        "stopped",
    )

    def __init__(self, logics: Sequence[LogicFactory], stats: Sequence[StageStats]) -> None:
        if not logics:
            raise ValueError("an interpreter needs at least one stage")
        self._events: deque[tuple[int, int, Any]] = deque()
        self._busy = False  # inside a logic callback: new events wait for the loop
        self.stats = stats
        self._ports = [Ports(self, i, st) for i, st in enumerate(stats)]
        for make, ports in zip(logics, self._ports, strict=True):
            ports.logic = make(ports)
            if ports.stats.timing is not None:  # an observed run: every callback is timed
                ports.logic = _Timed(ports.logic, ports.stats.timing)
        #: The last stage's ports: the kernel's step machine reads their state directly.
        self.last_ports = self._ports[-1]
        #: Called once when the first stage cancels its upstream: a channel driver closes the
        #: receiving end there, so upstream stops at its next send.
        self.on_input_cancel: Callable[[], None] = _ignore
        self.output: deque[Any] = deque()
        self.finished = False
        self.error: BaseException | None = None
        self.input_wanted = False
        self.input_closed = False
        self.stopped = False
        #: Work the stages asked for, not yet started by the driver: (stage, work, done).
        self.scheduled: deque[tuple[int, Callable[[], Awaitable[Any]], Done]] = deque()

    # -- driver side -----------------------------------------------------------------------
    def start(self) -> None:
        """Run every stage's ``pre_start``."""
        self._events.extend((_PRE_START, i, None) for i in range(len(self._ports)))
        self._run()

    def wants_output(self) -> bool:
        """Whether the chain was asked for an item it has not produced yet."""
        return self._ports[-1]._out_pulled

    @property
    def output_closed(self) -> bool:
        """Whether the chain can emit nothing more (it ended, or downstream cancelled)."""
        return self._ports[-1]._out_closed

    def held(self) -> int:
        """Items the chain holds now, its undelivered output included (lost if it stops)."""
        held = len(self.output)
        for ports in self._ports:
            held += ports.logic.held_items()
            if ports._item is not _EMPTY:
                held += 1
        return held

    def demand(self) -> None:
        """Downstream of the chain wants one more item."""
        last = self._ports[-1]
        if last._out_closed or last._out_pulled:
            return
        last._out_pulled = True
        if self._busy:  # called back from inside a callback (a publisher's subscriber)
            self._events.append((_ON_PULL, last.index, None))
            return
        # Idle: call the logic directly (the events it causes queue up as usual), which
        # spares the queue a round trip on the path every item takes.
        self._busy = True
        try:
            last.logic.on_pull()
        except Exception as exc:
            _count_error(last.stats, exc)
            last.fail(annotate(exc, last.stats.name))
        except BaseException as exc:  # KeyboardInterrupt...: counted, and it ends the run
            _count_interrupt(last.stats, exc)
            raise
        finally:
            self._busy = False
        if self._events:
            self._run()

    def feed(self, item: Any) -> None:
        """Deliver one input item (only after ``input_wanted`` became true)."""
        first = self._ports[0]
        self.input_wanted = False
        if first._in_closed:
            return
        first._in_pulled = False
        first._item = item
        if self._busy:
            self._events.append((_ON_PUSH, 0, None))
            return
        self._busy = True
        try:
            first.logic.on_push()
        except Exception as exc:
            _count_error(first.stats, exc)
            first.fail(annotate(exc, first.stats.name))
        except BaseException as exc:  # KeyboardInterrupt...: counted, and it ends the run
            _count_interrupt(first.stats, exc)
            raise
        finally:
            self._busy = False
        if self._events:
            self._run()

    def feed_end(self) -> None:
        """The input completed."""
        self._close_input((_ON_FINISH, 0, None))

    def feed_error(self, error: BaseException) -> None:
        """The input failed."""
        self._close_input((_ON_FAILURE, 0, error))

    def work_done(self, index: int, done: Done, result: Any, error: BaseException | None) -> None:
        """Deliver the end of scheduled work to the stage that asked for it."""
        if self._ports[index]._out_closed and self._ports[index]._in_closed:
            return  # the stage already stopped
        self._events.append((_ON_DONE, index, (done, result, error)))
        self._run()

    def cancel(self) -> None:
        """Downstream of the chain is gone: every stage stops, and what they held is lost."""
        last = self._ports[-1]
        if not last._out_closed:
            last._out_closed = True
            last._out_pulled = False
            self._events.append((_ON_CANCEL, last.index, None))
            self._run()

    def stop(self) -> None:
        """End of run: count what stages still hold as lost, call every ``post_stop`` (once)."""
        if self.stopped:
            return
        self.stopped = True
        self._ports[-1].stats.lost += len(self.output)  # produced, never delivered
        self.output.clear()
        for ports in self._ports:
            held = ports.logic.held_items()
            if ports._item is not _EMPTY:
                held += 1
            ports.stats.lost += held
            if ports._timers:
                ports.cancel_timers()
            ports.logic.post_stop()

    # -- port events -----------------------------------------------------------------------
    def _close_input(self, event: tuple[int, int, Any]) -> None:
        first = self._ports[0]
        self.input_wanted = False
        self.input_closed = True
        if not first._in_closed:
            first._in_closed = True
            first._in_pulled = False
            self._events.append(event)
            self._run()

    def _pulled(self, index: int) -> None:
        if index == 0:
            self.input_wanted = True
            return
        up = self._ports[index - 1]
        if up._out_closed:
            return  # its end is already on the way (ON_FINISH/ON_FAILURE queued)
        up._out_pulled = True
        self._events.append((_ON_PULL, index - 1, None))

    def _pushed(self, index: int, item: Any) -> None:
        if self._ports[index] is self.last_ports:
            self.output.append(item)
            return
        down = self._ports[index + 1]
        down._item = item
        self._events.append((_ON_PUSH, index + 1, None))

    def _completed(self, index: int) -> None:
        if index == len(self._ports) - 1:
            self.finished = True
            return
        down = self._ports[index + 1]
        if not down._in_closed:
            self._events.append((_ON_FINISH, index + 1, None))

    def _failed(self, index: int, error: BaseException) -> None:
        if index == len(self._ports) - 1:
            self.finished = True
            if self.error is None:
                self.error = error
            return
        down = self._ports[index + 1]
        if not down._in_closed:
            self._events.append((_ON_FAILURE, index + 1, error))

    def _cancelled(self, index: int) -> None:
        if index == 0:
            self.input_wanted = False
            if not self.input_closed:
                self.input_closed = True
                self.on_input_cancel()
            return
        up = self._ports[index - 1]
        if not up._out_closed:
            up._out_closed = True
            up._out_pulled = False
            self._events.append((_ON_CANCEL, index - 1, None))

    def _run(self) -> None:
        if self._busy:
            return  # the loop below, further up the stack, will get to the new events
        self._busy = True
        try:
            self._loop()
        finally:
            self._busy = False

    def _loop(self) -> None:
        """Deliver queued events to their stages until none is left."""
        events = self._events
        ports = self._ports
        while events:
            kind, index, arg = events.popleft()
            p = ports[index]
            logic = p.logic
            try:
                if kind == _ON_PUSH:
                    p._in_pulled = False  # the pull is answered when the item arrives
                    logic.on_push()
                elif kind == _ON_PULL:
                    logic.on_pull()
                elif kind in (_ON_FINISH, _ON_FAILURE):
                    if index:  # the chain's own input was closed by the driver already
                        if p._in_closed:
                            continue  # the stage cancelled its upstream meanwhile
                        p._in_closed = True
                        p._in_pulled = False
                    if kind == _ON_FINISH:
                        logic.on_upstream_finish()
                    else:
                        logic.on_upstream_failure(arg)
                elif kind == _ON_CANCEL:
                    logic.on_downstream_finish()
                elif kind == _ON_DONE:
                    done, result, error = arg
                    done(result, error)
                else:
                    logic.pre_start()
            except Exception as exc:
                # errors="raise": the exception fails this stage; the failure travels down and
                # the cancellation up, through the same event queue.
                p = ports[index]
                _count_error(p.stats, exc)
                p.fail(annotate(exc, p.stats.name))
            except BaseException as exc:  # KeyboardInterrupt...: counted, and it ends the run
                _count_interrupt(ports[index].stats, exc)
                raise


def _count_error(stats: StageStats, exc: Exception) -> None:
    """A stage's callback raised ``exc`` (errors="raise"): count it, by class if observed."""
    stats.errored += 1
    if stats.timing is not None:
        stats.timing.error(exc)


def _count_interrupt(stats: StageStats, exc: BaseException) -> None:
    """A ``BaseException`` that is not an ``Exception`` escaped a stage's callback: it ends the
    run, and the item is counted once, at the innermost stage it escaped (a ``parallel`` copy
    or a fragment runs an interpreter inside the outer one's callback)."""
    if getattr(exc, "_rxpipe_counted", False):
        return
    stats.errored += 1
    try:
        exc._rxpipe_counted = True  # type: ignore[attr-defined]
    except AttributeError:  # an exception class with __slots__: counted at each level
        pass


@final
class _Timed:
    """A stage's logic behind a stopwatch, in observed runs only (see
    :mod:`rxpipe._core.telemetry`): an ``on_push`` is one item's duration, every other
    callback busy time of the stage. Unobserved runs never see it, so they pay nothing."""

    __slots__ = ("_logic", "_timing")

    def __init__(self, logic: Logic, timing: StageTiming) -> None:
        self._logic = logic
        self._timing = timing

    def on_push(self) -> None:
        timing = self._timing
        if timing.skip:  # a fast stage: this item passes untimed (see StageTiming.item)
            timing.skip -= 1
            self._logic.on_push()
            return
        started = perf_counter()
        try:
            self._logic.on_push()
        finally:
            timing.item(perf_counter() - started)

    def _busy(self, callback: Callable[[], None]) -> None:
        started = perf_counter()
        try:
            callback()
        finally:
            self._timing.add_busy(perf_counter() - started)

    def pre_start(self) -> None:
        self._busy(self._logic.pre_start)

    def on_pull(self) -> None:
        if self._timing.skip:  # untimed with the item it asks for
            self._logic.on_pull()
            return
        self._busy(self._logic.on_pull)

    def on_upstream_finish(self) -> None:
        self._busy(self._logic.on_upstream_finish)

    def on_upstream_failure(self, error: BaseException) -> None:
        self._busy(lambda: self._logic.on_upstream_failure(error))

    def on_downstream_finish(self) -> None:
        self._busy(self._logic.on_downstream_finish)

    def on_timer(self, key: Hashable) -> None:
        self._busy(lambda: self._logic.on_timer(key))

    def post_stop(self) -> None:
        self._logic.post_stop()

    def held_items(self) -> int:
        return self._logic.held_items()
