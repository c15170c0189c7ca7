"""``map_async``: call an ``async def`` per item, at most ``concurrency`` at a time.

The logic never awaits: it asks its ports to :meth:`~rxpipe.stages.Ports.schedule` each call
and is called back with the outcome. In ordered mode a finished result that waits for an
earlier one does not hold a call slot (aiostream's ordered map does, which makes it 2x slower
than a worker pool under skewed latency); the window of running plus waiting items is capped
(by default at ``4 * concurrency``, the contract's bound) so memory stays bounded however skewed
the latencies are. The window is the one knob that trades memory for speed: a slow call at the
head stalls new calls once the window is full, so a wider window rides out longer tails.

Errors are applied here, in order, rather than by the generic error surface: a failure is
known only when its call ends, and ``errors="result"``/``"skip"`` must keep the output order.
``errors="raise"`` fails the stage as soon as any call fails (errgroup's fail-fast).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar

from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.callables import check_async_callable, is_async_callable
from rxpipe.stages.errors import ErrorMode, Result, annotate, check_errors
from rxpipe.stages.simple import check_count

__all__ = ("MapAsync",)

T = TypeVar("T")
R = TypeVar("R")

_RUNNING: Final[Any] = object()
_DROPPED: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class MapAsync(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.map_async`."""

    fn: Callable[[T], Awaitable[R]]
    concurrency: int = 1
    ordered: bool = True
    errors: ErrorMode = "raise"
    window: int | None = None
    operator: ClassVar[str] = "map_async"
    user_code: ClassVar[bool] = True
    is_async: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_async_callable(self.fn, "map_async(f): f", "use map(f) for synchronous work")
        check_count(self.concurrency, "map_async(concurrency=)", minimum=1)
        if not isinstance(self.ordered, bool):
            raise TypeError(f"map_async(ordered=) must be a bool, got {self.ordered!r}")
        check_errors(self.errors)
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
        return _MapAsyncLogic(ports, self)


class _Slot:
    """One item's call: its outcome once known."""

    __slots__ = ("item", "outcome")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.outcome: Any = _RUNNING


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
    __slots__ = ("call", "running", "spec", "upstream_done", "waiting")

    def __init__(self, ports: Ports[Any, Any], spec: MapAsync[Any, Any]) -> None:
        super().__init__(ports)
        self.spec = spec
        self.call = spec.fn if is_async_callable(spec.fn) else _checked(spec.fn)
        self.running = 0
        # ordered: every started slot, in input order; unordered: finished slots only
        self.waiting: deque[_Slot] = deque()
        self.upstream_done = False

    def held_items(self) -> int:
        return self.running + sum(1 for s in self.waiting if s.outcome is not _RUNNING)

    def pre_start(self) -> None:
        self.ports.pull()  # start filling the call slots before anyone asks

    def on_pull(self) -> None:
        self._emit()

    def on_push(self) -> None:
        slot = _Slot(self.ports.grab())
        self.running += 1
        if self.spec.ordered:
            self.waiting.append(slot)
        fn = self.call
        item = slot.item
        self.ports.schedule(lambda: fn(item), lambda r, e: self._finished(slot, r, e))
        self._emit()

    def on_upstream_finish(self) -> None:
        self.upstream_done = True
        self._emit()

    def _finished(self, slot: _Slot, result: Any, error: BaseException | None) -> None:
        self.running -= 1
        if error is None:
            slot.outcome = result
        else:
            self.ports.stats.errored += 1
            mode = self.spec.errors
            if mode == "raise" or not isinstance(error, Exception):  # SystemExit & co. stop
                if isinstance(error, Exception):
                    annotate(error, self.ports.stats.name)
                self.ports.fail(error)
                return
            if mode == "result":
                slot.outcome = Result.failure(error, slot.item)
            else:
                if callable(mode) and not isinstance(mode, str):
                    mode(error, slot.item)
                slot.outcome = _DROPPED
        if self.spec.errors == "result" and not isinstance(slot.outcome, Result):
            slot.outcome = Result.success(slot.outcome, slot.item)
        if not self.spec.ordered:
            self.waiting.append(slot)
        self._emit()

    def _emit(self) -> None:
        """Push the next result if downstream waits; keep the call slots busy; maybe finish."""
        ports, waiting = self.ports, self.waiting
        while waiting and waiting[0].outcome is not _RUNNING:
            if waiting[0].outcome is _DROPPED:
                waiting.popleft()
                continue
            if not ports.can_push():
                break
            ports.push(waiting.popleft().outcome)
            break
        while waiting and waiting[0].outcome is _DROPPED:
            waiting.popleft()
        if self.upstream_done or ports.is_upstream_closed():
            if self.running == 0 and not waiting:
                ports.complete()
            return
        in_window = len(waiting) if self.spec.ordered else self.running + len(waiting)
        if (
            self.running < self.spec.concurrency
            and in_window < self.spec.held_max
            and not ports.has_pulled()
        ):
            ports.pull()
