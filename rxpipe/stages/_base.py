"""The engine-neutral stage model: blueprints, logic, and the ports an engine provides.

A :class:`Stage` is an immutable blueprint. Each run asks it for a fresh :class:`StageLogic`,
bound to a :class:`Ports` object that the engine implements. The logic reacts to callbacks
(``on_push``, ``on_pull``, ...) and acts only through its ports (``pull()``, ``grab()``,
``push(x)``, ...). That split, borrowed from Pekko's ``GraphStageLogic``, is what lets the
same operator run on the demand-pull engine and on the push-channel engine.

The protocol, for a stage with one input and one output:

- downstream asks for one item: ``on_pull`` is called; the logic may ``push`` exactly one item
  (now or later), or ``pull`` upstream to get material for it;
- after the logic called ``pull``, upstream delivers one item: ``on_push`` is called and the
  logic takes it with ``grab()``;
- ``complete()`` ends the stage: downstream completes, upstream is cancelled;
- ``fail(exc)`` ends the stage with an error: downstream fails, upstream is cancelled;
- ``cancel()`` cancels upstream only (the stage can still finish what it holds);
- ``start_timer(key, delay)`` arms a named one-shot timer: ``on_timer(key)`` is called when
  it expires, unless it was cancelled (``cancel_timer(key)``) or restarted first. Timers run
  on the engine's scheduler (no thread or task per timer; a run without an event loop keeps
  them as deadlines), so any stage may use them; they are cancelled when the stage stops.

Callbacks are synchronous and never concurrent, so logic state needs no locks.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar, final

from rxpipe._core.stats import Done, StageStats

__all__ = (
    "LinearLogic",
    "LinearStage",
    "Ports",
    "Stage",
    "StageLogic",
)

InT = TypeVar("InT")
OutT = TypeVar("OutT")
InT_co = TypeVar("InT_co", covariant=True)
OutT_contra = TypeVar("OutT_contra", contravariant=True)

_NOTHING: Any = object()


class Ports(Protocol[InT_co, OutT_contra]):
    """What an engine offers a stage's logic: one inlet, one outlet, and the stage's counters."""

    @property
    def stats(self) -> StageStats:
        """The stage's counters for this run."""
        ...

    def pull(self) -> None:
        """Ask upstream for one item; ``on_push`` follows (or a finish/failure callback)."""
        ...

    def grab(self) -> InT_co:
        """Take the item that ``on_push`` announced."""
        ...

    def push(self, item: OutT_contra) -> None:
        """Send one item downstream; allowed once per ``on_pull``."""
        ...

    def complete(self) -> None:
        """Finish the stage: complete downstream and cancel upstream."""
        ...

    def fail(self, error: BaseException) -> None:
        """Fail the stage: fail downstream with ``error`` and cancel upstream."""
        ...

    def cancel(self) -> None:
        """Cancel upstream only; the stage may still push what it holds."""
        ...

    def can_push(self) -> bool:
        """Whether downstream has pulled and the stage has not pushed since."""
        ...

    def has_pulled(self) -> bool:
        """Whether the stage pulled and upstream has not answered yet."""
        ...

    def is_upstream_closed(self) -> bool:
        """Whether upstream finished, failed or was cancelled."""
        ...

    def schedule(self, work: Callable[[], Awaitable[Any]], done: Done) -> None:
        """Run ``work()`` on the engine's event loop; call ``done(result, error)`` when it ends.

        The one hook for asynchronous work (``map_async``, executors, timers): a logic never
        awaits. ``done`` is called later, serially with the other callbacks, with ``error``
        set (and ``result`` ``None``) if the work raised. Only stages whose blueprint sets
        ``is_async = True`` may schedule: that is what makes engines give them a loop. When
        the run stops, work still running is cancelled and ``done`` is not called.
        """
        ...

    def start_timer(self, key: Hashable, delay: float) -> None:
        """Arm the one-shot timer ``key``: ``on_timer(key)`` is called ``delay`` seconds later.

        Starting a timer that is active restarts it (the earlier expiry is never delivered).
        The expiry is delivered serially with the other callbacks, like the end of scheduled
        work: on an event loop it is a ``call_later`` handle (no task); a run without a loop
        (a sync pull run, a blocking runner on the threads runtime) keeps it as a deadline,
        delivered before the next input that arrives after it, or when the stage waits for
        nothing else. Any stage may use timers (no ``is_async`` needed). A stage's timers are
        cancelled when it completes, fails or the run stops.
        """
        ...

    def cancel_timer(self, key: Hashable) -> None:
        """Cancel the timer ``key`` if it is active: its ``on_timer`` will not be called."""
        ...

    def timer_active(self, key: Hashable) -> bool:
        """Whether the timer ``key`` was started and has neither expired nor been cancelled."""
        ...


class StageLogic(Generic[InT, OutT]):
    """The run-time half of a stage: reacts to port events, acts through ``self.ports``.

    Defaults follow Pekko: upstream finish completes the stage, upstream failure fails it,
    downstream cancellation cancels upstream. Subclasses override ``on_push`` and ``on_pull``.
    """

    __slots__ = ("ports",)

    def __init__(self, ports: Ports[InT, OutT]) -> None:
        self.ports = ports

    def pre_start(self) -> None:
        """Called once before any other callback."""

    def on_push(self) -> None:
        """An item is ready on the inlet: take it with ``self.ports.grab()``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle on_push")

    def on_pull(self) -> None:
        """Downstream wants one item."""
        raise NotImplementedError(f"{type(self).__name__} does not handle on_pull")

    def on_upstream_finish(self) -> None:
        """Upstream completed; by default the stage completes too."""
        self.ports.complete()

    def on_upstream_failure(self, error: BaseException) -> None:
        """Upstream failed; by default the failure travels downstream."""
        self.ports.fail(error)

    def on_downstream_finish(self) -> None:
        """Downstream cancelled; by default the stage stops and cancels upstream."""
        self.ports.complete()

    def on_timer(self, key: Hashable) -> None:
        """The timer ``key`` (see :meth:`Ports.start_timer`) expired."""
        raise NotImplementedError(f"{type(self).__name__} started a timer but has no on_timer")

    def post_stop(self) -> None:
        """Called once after the stage stopped, whatever the reason; release resources here."""

    def held_items(self) -> int:
        """How many items this logic holds (lost if the run is cancelled now)."""
        return 0


class Stage(ABC, Generic[InT, OutT]):
    """An immutable stage blueprint: it holds configuration, never run state.

    Subclasses are frozen dataclasses. ``operator`` names the stage by default (``"map"``,
    ``"map#2"`` for the second map of a flow). ``user_code`` marks stages that run user
    functions, which accept an ``errors=`` surface; ``stateful`` ones accept ``restart=True``;
    ``is_async`` ones may use :meth:`Ports.schedule`.
    """

    operator: ClassVar[str] = "stage"
    user_code: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    #: True for stages that schedule asynchronous work: the flow then runs on an event loop.
    is_async: ClassVar[bool] = False

    @abstractmethod
    def create_logic(self, ports: Ports[InT, OutT]) -> StageLogic[InT, OutT]:
        """Make fresh logic for one run, bound to the engine's ports."""


@final
class _Concat(Iterator[OutT]):
    """``itertools.chain`` that knows how many items it still holds (``length_hint``): what a
    logic holds when the run stops is counted lost, and a chain would say 0."""

    __slots__ = ("_parts",)

    def __init__(self, *parts: Iterable[OutT]) -> None:
        self._parts = deque(iter(p) for p in parts)

    def __next__(self) -> OutT:
        parts = self._parts
        while parts:
            try:
                return next(parts[0])
            except StopIteration:
                parts.popleft()
        raise StopIteration

    def __length_hint__(self) -> int:
        return sum(operator.length_hint(p) for p in self._parts)


class LinearLogic(StageLogic[InT, OutT]):
    """Logic for the common case: each item becomes zero or more outputs; a flush at the end.

    Override :meth:`on_item` (return an iterable of outputs, or ``None`` for none) and,
    if the stage buffers, :meth:`on_finish`. The returned iterable is consumed lazily, one
    item per downstream pull, so it may be long or infinite. Call :meth:`finish` from
    ``on_item`` to end the stream early: what was already returned is still emitted, then the
    stage completes and upstream is cancelled. The pull/push handshake is handled here.
    """

    __slots__ = ("_finishing", "_pending", "_upstream_done")

    def __init__(self, ports: Ports[InT, OutT]) -> None:
        super().__init__(ports)
        self._pending: Iterator[OutT] | None = None
        self._finishing = False
        self._upstream_done = False

    def on_item(self, item: InT) -> Iterable[OutT] | None:
        """Turn one input into outputs."""
        raise NotImplementedError

    def on_finish(self) -> Iterable[OutT] | None:
        """Upstream ended: return what is left to flush (``chunk`` flushes its last list)."""
        return None

    def finish(self) -> None:
        """End the stream after the outputs produced so far."""
        if not self._finishing:
            self._finishing = True
            self.ports.cancel()

    def emit_first(self, items: Iterable[OutT]) -> None:
        """Queue outputs before any input (``scan`` emits its initial value this way)."""
        self._pending = iter(items)

    def held_items(self) -> int:
        return operator.length_hint(self._pending) if self._pending is not None else 0

    def _emit_or_continue(self) -> None:
        """Push the next pending output, or complete, or pull for more input."""
        pending = self._pending
        if pending is not None:
            item = next(pending, _NOTHING)
            if item is not _NOTHING:
                self.ports.push(item)
                return
            self._pending = None
        if self._finishing or self._upstream_done:
            self.ports.complete()
        else:
            self.ports.pull()

    def on_pull(self) -> None:
        self._emit_or_continue()

    def on_push(self) -> None:
        out = self.on_item(self.ports.grab())
        if out is not None:
            self._pending = iter(out)
        self._emit_or_continue()

    def on_upstream_finish(self) -> None:
        if self._upstream_done or self._finishing:
            return
        self._upstream_done = True
        rest = self.on_finish()
        if rest is not None:
            self._pending = _Concat(self._pending or (), rest)
        if self._pending is not None and not self.ports.can_push():
            # Look ahead: completion must not wait for demand when nothing is left to emit.
            item = next(self._pending, _NOTHING)
            self._pending = None if item is _NOTHING else _Concat((item,), self._pending)
        if self._pending is None:
            self.ports.complete()
        elif self.ports.can_push():
            self._emit_or_continue()


class LinearStage(Stage[InT, OutT]):
    """A stage whose logic is a :class:`LinearLogic`; the base for users' own stages.

    Subclass it as a frozen dataclass and return your ``LinearLogic`` from ``create_logic``.
    See the user guide for a complete example.
    """

    operator: ClassVar[str] = "linear"
