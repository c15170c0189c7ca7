"""``map_async``: call an ``async def`` per item, at most ``concurrency`` at a time.

The logic never awaits: it asks its ports to :meth:`~rxpipe.stages.Ports.schedule` each call
and is called back with the outcome. In ordered mode a finished result that waits for an
earlier one does not hold a call slot (aiostream's ordered map does, which makes it 2x slower
than a worker pool under skewed latency); the window of running plus waiting items is capped
(by default at ``4 * concurrency``, the contract's bound) so memory stays bounded however skewed
the latencies are. The window is the one knob that trades memory for speed: a slow call at the
head stalls new calls once the window is full, so a wider window rides out longer tails.

Ordered mode also asks ahead: up to ``2 * concurrency`` items (within the window) while at most
``concurrency`` calls run. The calls asked ahead wait in a :class:`~rxpipe._core.work.Lane`, and
a call that ends hands its slot to the next one at once, as a worker of a pool takes its next
item from the queue, without waiting for the driver to see the end. Unordered mode holds at
most ``concurrency`` items (its documented bound), so it cannot ask ahead: a freed slot is
filled once the driver has handed the end back, one more turn of the event loop per item.

Errors are applied here, in order, rather than by the generic error surface: a failure is
known only when its call ends, and ``errors="result"``/``"skip"`` must keep the output order.
``errors="raise"`` fails the stage as soon as any call fails (errgroup's fail-fast).

``timeout=`` and ``retry=`` wrap each call inside its piece of work
(:func:`rxpipe.stages.resilience.resilient`): a timed-out call is cancelled and is an error
like any other, once its retries are spent.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Final, TypeVar

from rxpipe._core.work import Lane, LaneCall
from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.callables import check_async_callable, is_async_callable
from rxpipe.stages.errors import ErrorMode, Result, annotate, check_errors
from rxpipe.stages.resilience import Retry, resilient
from rxpipe.stages.simple import check_count, check_seconds

__all__ = ("MapAsync",)

T = TypeVar("T")
R = TypeVar("R")

_RUNNING: Final[Any] = object()
_DROPPED: Final[Any] = object()
_FAILED: Final[Any] = object()  # the stage failed: nothing to emit


def _held(outcome: Any) -> bool:
    """Whether a slot's outcome is an item still to emit (compared by identity: an item's
    own ``==`` may be anything)."""
    return outcome is not _RUNNING and outcome is not _DROPPED and outcome is not _FAILED


@dataclass(frozen=True, slots=True)
class MapAsync(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.map_async`."""

    fn: Callable[[T], Awaitable[R]]
    concurrency: int = 1
    ordered: bool = True
    errors: ErrorMode = "raise"
    window: int | None = None
    timeout: float | None = None
    retry: Retry | None = None
    operator: ClassVar[str] = "map_async"
    user_code: ClassVar[bool] = True
    is_async: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_async_callable(self.fn, "map_async(f): f", "use map(f) for synchronous work")
        check_count(self.concurrency, "map_async(concurrency=)", minimum=1)
        if not isinstance(self.ordered, bool):
            raise TypeError(f"map_async(ordered=) must be a bool, got {self.ordered!r}")
        check_errors(self.errors)
        if self.timeout is not None:
            check_seconds(self.timeout, "map_async(timeout=)")
        if self.retry is not None and not isinstance(self.retry, Retry):
            raise TypeError(f"map_async(retry=) must be an rxpipe.Retry, got {self.retry!r}")
        if self.window is not None:
            check_count(self.window, "map_async(window=)", minimum=1)
            if not self.ordered:
                raise ValueError(
                    "map_async(window=) applies to ordered mode only: unordered mode emits each "
                    "result when it is ready and holds at most `concurrency` items"
                )
            if self.window < self.concurrency:
                raise ValueError(
                    f"map_async(window={self.window}) must be >= concurrency "
                    f"({self.concurrency}): the window holds every running call"
                )

    @property
    def held_max(self) -> int:
        """The most items running or waiting (for their turn in ordered mode)."""
        if not self.ordered:
            return self.concurrency
        return 4 * self.concurrency if self.window is None else self.window

    def create_logic(self, ports: Ports[T, R]) -> StageLogic[T, R]:
        if self.ordered:
            return _OrderedLogic(ports, self)
        return _UnorderedLogic(ports, self)


#: One item's call in ordered mode: ``[item, outcome]``, the outcome ``_RUNNING`` until known
#: (a list: cheaper to make, per item, than an object).
_Slot = list[Any]
_ITEM: Final = 0
_OUTCOME: Final = 1


def _checked(fn: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """``fn`` (not declared async: a lambda, say) with a clear error for a plain result."""

    def call(item: Any) -> Awaitable[Any]:
        result = fn(item)
        if not inspect.isawaitable(result):
            raise TypeError(
                f"map_async(f): f returned {type(result).__name__} {result!r:.60}, not an "
                "awaitable: use map(f) for synchronous work"
            )
        return result

    return call


class _MapAsyncLogic(StageLogic[Any, Any]):
    """What both modes share: the settings read on every item, and the error surfaces."""

    __slots__ = ("call", "concurrency", "running", "spec", "waiting", "wrap")

    def __init__(self, ports: Ports[Any, Any], spec: MapAsync[Any, Any]) -> None:
        super().__init__(ports)
        self.spec = spec
        call = spec.fn if is_async_callable(spec.fn) else _checked(spec.fn)
        self.call = resilient(call, spec.timeout, spec.retry, ports.stats)
        self.concurrency = spec.concurrency
        self.wrap = spec.errors == "result"  # every outcome becomes a Result
        self.running = 0
        self.waiting: deque[Any] = deque()

    def pre_start(self) -> None:
        self.ports.pull()  # start filling the call slots before anyone asks

    def _settle(self, item: Any, result: Any, error: BaseException | None) -> Any:
        """The outcome to emit for a call that ended, ``_DROPPED``, or ``_FAILED``."""
        if error is None:
            return Result.success(result, item) if self.wrap else result
        self.ports.stats.errored += 1
        mode = self.spec.errors
        if mode == "raise" or not isinstance(error, Exception):  # SystemExit & co. stop
            if isinstance(error, Exception):
                annotate(error, self.ports.stats.name)
            self.ports.fail(error)
            return _FAILED
        if mode == "result":
            return Result.failure(error, item)
        if callable(mode) and not isinstance(mode, str):
            mode(error, item)
        return _DROPPED


class _OrderedLogic(_MapAsyncLogic):
    """Every started slot waits in ``waiting``, in input order, until it is emitted."""

    __slots__ = ("ahead", "lane", "window")

    def __init__(self, ports: Ports[Any, Any], spec: MapAsync[Any, Any]) -> None:
        super().__init__(ports, spec)
        self.window = spec.held_max
        # Calls asked for ahead wait in the lane (never more than `concurrency` run): a slot
        # that frees takes the next one at once, as a worker of a pool takes from its queue.
        # With one call at a time it asks for one item at a time, as a plain map does (so an
        # upstream failure finds nothing held that was read before it).
        c = spec.concurrency
        self.ahead = min(self.window, 2 * c) if c > 1 else 1
        self.lane = Lane(spec.concurrency)

    def held_items(self) -> int:
        # running calls, and finished outcomes not emitted yet; a failed or dropped call's item
        # was counted errored already, so it is not held (lost) as well
        return self.running + sum(1 for s in self.waiting if _held(s[_OUTCOME]))

    def on_pull(self) -> None:
        self._emit()

    def on_push(self) -> None:
        item = self.ports.grab()
        slot: _Slot = [item, _RUNNING]
        self.running += 1
        self.waiting.append(slot)
        self.ports.schedule(
            # a LaneCall is callable; mypy does not see a tuple subclass's __call__
            LaneCall((self.lane, self.call, item)),  # type: ignore[arg-type]
            partial(self._finished, slot),
        )
        if self.running < self.ahead and len(self.waiting) < self.window:
            self.ports.pull()

    def on_upstream_finish(self) -> None:
        self._emit()

    def _finished(self, slot: _Slot, result: Any, error: BaseException | None) -> None:
        self.running -= 1
        if error is None and not self.wrap:
            slot[_OUTCOME] = result
        else:
            outcome = slot[_OUTCOME] = self._settle(slot[_ITEM], result, error)
            if outcome is _FAILED:
                return
        if self.waiting[0] is slot:
            self._emit()
        elif self.running < self.ahead and len(self.waiting) < self.window:
            self.ports.pull()  # a call slot is free; the head still runs

    def _emit(self) -> None:
        """Push the head if it is ready and downstream waits; keep the slots busy; maybe end."""
        ports, waiting = self.ports, self.waiting
        while waiting:
            outcome = waiting[0][_OUTCOME]
            if outcome is _RUNNING:
                break
            if outcome is not _DROPPED:
                if not ports.can_push():
                    break
                ports.push(outcome)
            waiting.popleft()
        if self.running < self.ahead and len(waiting) < self.window:
            if self.running or waiting or not ports.is_upstream_closed():
                ports.pull()  # nothing when upstream is closed
            else:
                ports.complete()


class _UnorderedLogic(_MapAsyncLogic):
    """Finished outcomes wait in ``waiting`` for downstream, in the order they finished."""

    __slots__ = ()

    def held_items(self) -> int:
        return self.running + len(self.waiting)

    def on_pull(self) -> None:
        waiting = self.waiting
        if waiting:
            ports = self.ports
            ports.push(waiting.popleft())
            if self.running + len(waiting) < self.concurrency:
                if self.running or waiting or not ports.is_upstream_closed():
                    ports.pull()  # nothing when upstream is closed
                else:
                    ports.complete()

    def on_push(self) -> None:
        self.running += 1
        item = self.ports.grab()
        self.ports.schedule(partial(self.call, item), partial(self._finished, item))
        if self.running + len(self.waiting) < self.concurrency:
            self.ports.pull()

    def on_upstream_finish(self) -> None:
        if self.running == 0 and not self.waiting:
            self.ports.complete()

    def _finished(self, item: Any, result: Any, error: BaseException | None) -> None:
        self.running -= 1
        if error is not None or self.wrap:
            result = self._settle(item, result, error)
            if result is _FAILED:
                return
        waiting, ports = self.waiting, self.ports
        if result is not _DROPPED:
            if not waiting and ports.can_push():
                ports.push(result)
            else:
                waiting.append(result)
        if self.running + len(waiting) < self.concurrency:
            if self.running or waiting or not ports.is_upstream_closed():
                ports.pull()  # nothing when upstream is closed
            else:
                ports.complete()
