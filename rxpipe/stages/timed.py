"""Operators that keep time: ``throttle`` (a token bucket) and ``idle_timeout`` (a stall alarm).

Both use the kernel's timers (:meth:`~rxpipe.stages.Ports.start_timer`), so they are async
stages: the engine gives them its event loop, and their timers are ``call_later`` handles on
it, never a task or a thread. They read the time from that loop's clock
(:func:`rxpipe._core.work.now`), which is what a test on virtual time controls.
``chunk(n, within=)`` lives with ``chunk`` in :mod:`rxpipe.stages.simple`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar

from rxpipe._core.clock import now
from rxpipe.errors import IdleTimeoutError
from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.simple import check_count, check_seconds

__all__ = ("IdleTimeout", "Throttle")

T = TypeVar("T")

_NONE: Final[Any] = object()
_TOKEN: Final = "token"
_IDLE: Final = "idle"
#: A token counts as whole when this close to 1 (the clock's floats round).
_EPSILON: Final = 1e-9


# --- throttle --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Throttle(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.throttle`."""

    rate: float
    per: float = 1.0
    burst: int = 1
    operator: ClassVar[str] = "throttle"

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise TypeError(f"throttle(rate) must be a number, got {self.rate!r}")
        if not 0 < self.rate < float("inf"):
            raise ValueError(f"throttle(rate) must be a finite number > 0, got {self.rate!r}")
        check_seconds(self.per, "throttle(per=)")
        check_count(self.burst, "throttle(burst=)", minimum=1)

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _ThrottleLogic(ports, self)


class _ThrottleLogic(StageLogic[T, T]):
    """A token bucket of ``burst`` tokens, refilled at ``rate / per`` tokens a second.

    Each item takes a token; an item that finds none is held (and nothing more is pulled)
    until the timer says the next token is there. It pulls only for downstream's pulls, so
    an item it holds always has a pull to answer.
    """

    __slots__ = ("burst", "held", "last", "refill", "tokens", "upstream_done")

    def __init__(self, ports: Ports[T, T], spec: Throttle[T]) -> None:
        super().__init__(ports)
        self.burst = spec.burst
        self.refill = spec.rate / spec.per  # tokens per second
        self.tokens = float(spec.burst)
        self.last = 0.0
        self.held: Any = _NONE
        self.upstream_done = False

    def pre_start(self) -> None:
        self.last = now()

    def on_pull(self) -> None:
        self.ports.pull()

    def on_push(self) -> None:
        item = self.ports.grab()
        if self._take():
            self.ports.push(item)
        else:
            self.held = item
            self._wait()

    def on_timer(self, key: Hashable) -> None:
        if not self._take():
            self._wait()
            return
        item, self.held = self.held, _NONE
        self.ports.push(item)
        if self.upstream_done:
            self.ports.complete()

    def on_upstream_finish(self) -> None:
        if self.held is _NONE:
            self.ports.complete()
        else:
            self.upstream_done = True  # complete once the held item went out

    def held_items(self) -> int:
        return 0 if self.held is _NONE else 1

    def _take(self) -> bool:
        t = now()
        self.tokens = min(float(self.burst), self.tokens + (t - self.last) * self.refill)
        self.last = t
        if self.tokens >= 1.0 - _EPSILON:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def _wait(self) -> None:
        self.ports.start_timer(_TOKEN, (1.0 - self.tokens) / self.refill)


# --- idle_timeout ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdleTimeout(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.idle_timeout`."""

    seconds: float
    operator: ClassVar[str] = "idle_timeout"

    def __post_init__(self) -> None:
        check_seconds(self.seconds, "idle_timeout(seconds)")

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _IdleTimeoutLogic(ports, self.seconds)


class _IdleTimeoutLogic(StageLogic[T, T]):
    """Passes items through; fails when none passed for ``seconds``.

    One timer per idle period, not one per item: an item only notes the time, and a timer
    that expires early (items passed since it started) is started again for the rest.
    """

    __slots__ = ("last", "seconds")

    def __init__(self, ports: Ports[T, T], seconds: float) -> None:
        super().__init__(ports)
        self.seconds = seconds
        self.last = 0.0

    def pre_start(self) -> None:
        self.last = now()
        self.ports.start_timer(_IDLE, self.seconds)

    def on_pull(self) -> None:
        self.ports.pull()

    def on_push(self) -> None:
        self.last = now()
        self.ports.push(self.ports.grab())

    def on_timer(self, key: Hashable) -> None:
        idle = now() - self.last
        if idle >= self.seconds - _EPSILON:
            self.ports.fail(
                IdleTimeoutError(f"no item passed for {self.seconds:g} s (idle_timeout)")
            )
        else:
            self.ports.start_timer(_IDLE, self.seconds - idle)
