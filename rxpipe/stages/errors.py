"""Error surfaces and supervision, wrapped around any stage's logic.

No operator implements ``errors=`` or ``restart=`` itself: the engine builds each node's logic
through :func:`create_logic`, which wraps it in a :class:`_Supervisor` when the node asks for
anything but the default (``errors="raise"``, no restart). In the default mode the engine
lets the exception escape the callback and calls :func:`annotate`, then fails the run.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar, final

from rxpipe._core.interpreter import Interpreter
from rxpipe._core.notes import annotate
from rxpipe._core.stats import Done, StageStats
from rxpipe._core.telemetry import Observed
from rxpipe.stages._base import Ports, Stage, StageLogic

__all__ = (
    "ErrorMode",
    "Node",
    "Result",
    "annotate",
    "check_errors",
    "create_logic",
    "interpreter",
)

T = TypeVar("T")
R = TypeVar("R")

#: ``"raise"`` (fail fast), ``"result"`` (emit Result values), ``"skip"`` (drop, count),
#: or a callback ``(exc, item) -> None`` (drop, count, tell the callback).
ErrorMode = Literal["raise", "result", "skip"] | Callable[[BaseException, Any], None]

_NO_ITEM: Final = object()


@final
@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """One outcome under ``errors="result"``: a value, or the error and the item that caused it.

    ``item`` is the input item when it is known (it is not for errors raised while the stage
    was asked for output rather than fed input).
    """

    ok: bool
    value: T | None = None
    error: BaseException | None = None
    item: Any = None

    @classmethod
    def success(cls, value: T, item: Any = None) -> Result[T]:
        """A successful outcome."""
        return cls(True, value, None, item)

    @classmethod
    def failure(cls, error: BaseException, item: Any = None) -> Result[T]:
        """A failed outcome."""
        return cls(False, None, error, item)


def check_errors(errors: object) -> None:
    """Reject a bad ``errors=`` argument when the flow is built.

    Raises:
        TypeError: ``errors`` is neither a str nor a callable (``errors=42``).
        ValueError: ``errors`` is a str other than ``"raise"``, ``"result"`` or ``"skip"``.
    """
    expected = "'raise', 'result', 'skip' or a callable (exc, item) -> None"
    if isinstance(errors, str):
        if errors in ("raise", "result", "skip"):
            return
        raise ValueError(f"errors= must be {expected}, got {errors!r}")
    if callable(errors):
        return
    raise TypeError(f"errors= must be {expected}, got {type(errors).__name__} {errors!r}")


@final
@dataclass(frozen=True, slots=True)
class Node:
    """A stage placed in a flow: its name, its blueprint, its error surface, and whether
    ``observe()`` marked it."""

    name: str
    stage: Stage[Any, Any]
    errors: ErrorMode = "raise"
    restart: bool = False
    observed: Observed | None = None

    @property
    def supervised(self) -> bool:
        """Whether the logic needs the supervision wrapper."""
        return self.restart or self.errors != "raise"


def create_logic(node: Node, ports: Ports[Any, Any]) -> StageLogic[Any, Any]:
    """Fresh logic for one run of ``node``, supervised if the node asks for it."""
    if not node.supervised:
        return node.stage.create_logic(ports)
    return _Supervisor(ports, node)


def interpreter(nodes: Sequence[Node], stats: Sequence[StageStats]) -> Interpreter:
    """The kernel's interpreter for a chain of placed stages, each logic built for this run."""
    return Interpreter([functools.partial(create_logic, node) for node in nodes], stats)


class _Supervisor(StageLogic[Any, Any]):
    """Runs a stage's logic and applies the node's error surface to what it raises.

    It stands between the engine and the inner logic: the engine sees the supervisor, the inner
    logic sees the supervisor as its ports, so the supervisor knows the current item.
    """

    __slots__ = ("_current", "_inner", "_node")

    def __init__(self, ports: Ports[Any, Any], node: Node) -> None:
        super().__init__(ports)
        self._node = node
        self._current: Any = _NO_ITEM
        self._inner = node.stage.create_logic(self)

    # -- ports offered to the inner logic --------------------------------------------------
    @property
    def stats(self) -> StageStats:
        return self.ports.stats

    def pull(self) -> None:
        self.ports.pull()

    def grab(self) -> Any:
        return self._current

    def push(self, item: Any) -> None:
        if self._node.errors == "result":
            item = Result.success(item, None if self._current is _NO_ITEM else self._current)
        self.ports.push(item)

    def complete(self) -> None:
        self.ports.complete()

    def fail(self, error: BaseException) -> None:
        self.ports.fail(error)

    def cancel(self) -> None:
        self.ports.cancel()

    def can_push(self) -> bool:
        return self.ports.can_push()

    def has_pulled(self) -> bool:
        return self.ports.has_pulled()

    def is_upstream_closed(self) -> bool:
        return self.ports.is_upstream_closed()

    def schedule(self, work: Callable[[], Awaitable[Any]], done: Done) -> None:
        item = self._current  # the item this work is for, for the error surface

        def guarded(result: Any, error: BaseException | None) -> None:
            self._current = item
            self._guard(lambda: done(result, error))

        self.ports.schedule(work, guarded)

    def start_timer(self, key: Hashable, delay: float) -> None:
        self.ports.start_timer(key, delay)

    def cancel_timer(self, key: Hashable) -> None:
        self.ports.cancel_timer(key)

    def timer_active(self, key: Hashable) -> bool:
        return self.ports.timer_active(key)

    # -- logic seen by the engine ----------------------------------------------------------
    def pre_start(self) -> None:
        self._guard(self._inner.pre_start)

    def on_push(self) -> None:
        self._current = self.ports.grab()
        self._guard(self._inner.on_push)

    def on_pull(self) -> None:
        self._guard(self._inner.on_pull)

    def on_upstream_finish(self) -> None:
        self._guard(self._inner.on_upstream_finish)

    def on_upstream_failure(self, error: BaseException) -> None:
        self._inner.on_upstream_failure(error)

    def on_downstream_finish(self) -> None:
        self._inner.on_downstream_finish()

    def on_timer(self, key: Hashable) -> None:
        self._current = _NO_ITEM
        self._guard(lambda: self._inner.on_timer(key))

    def post_stop(self) -> None:
        self._inner.post_stop()

    def held_items(self) -> int:
        return self._inner.held_items()

    def _guard(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception as exc:  # BaseExceptions (KeyboardInterrupt...) are never swallowed
            self._recover(exc)

    def _recover(self, exc: Exception) -> None:
        node = self._node
        item = None if self._current is _NO_ITEM else self._current
        stats = self.ports.stats
        stats.errored += 1
        if stats.timing is not None:  # an observed run counts errors by class
            stats.timing.error(exc)
        if node.restart:
            self._inner = node.stage.create_logic(self)
            self._inner.pre_start()
        mode = node.errors
        if mode == "raise" and not node.restart:
            self.ports.fail(annotate(exc, node.name))
            return
        if mode == "result":
            if self.ports.can_push():
                self.ports.push(Result.failure(exc, item))
                return
        elif callable(mode):
            mode(exc, item)
        # The failed call produced nothing: if downstream is still waiting, let the (possibly
        # fresh) logic answer that pull; it pulls upstream or emits what it holds.
        if self.ports.can_push() and not self.ports.has_pulled():
            if self.ports.is_upstream_closed():
                self.ports.complete()
            else:
                self._guard(self._inner.on_pull)
