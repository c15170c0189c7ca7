"""One-in, zero-or-more-out operators: map, filter, flat_map, take, skip, take_while, scan, chunk,
tap.

Each class is the blueprint of the Flow method of the same name; the full docstring (with the
Emits/Backpressures/Completes/Cancels contract) lives on that method in ``rxpipe.flow``.
These logic classes are the generic path that every engine can run; the pull engine also
fuses runs of them into one loop (``rxpipe.engines.pull.fused``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Final, TypeVar

from rxpipe.stages._base import LinearLogic, Ports, Stage, StageLogic
from rxpipe.stages.callables import check_sync_callable

__all__ = ("Chunk", "Filter", "FlatMap", "Map", "Scan", "Skip", "Take", "TakeWhile", "Tap")

T = TypeVar("T")
R = TypeVar("R")

#: What to do with an async function a sync stage was given.
_AWAIT_FIRST = "await it in a map_async(...) stage first"


def check_count(value: object, what: str, *, minimum: int) -> None:
    """Raise ``TypeError``/``ValueError`` for a count that is not an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")


def check_seconds(value: object, what: str, *, zero: bool = False) -> None:
    """Raise ``TypeError``/``ValueError`` for a duration that is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{what} must be a finite number of seconds {bound}, got {value!r}")


# --- map -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Map(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.map`."""

    fn: Callable[[T], R]
    operator: ClassVar[str] = "map"
    user_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.fn, "map(f): f", "use map_async(f)")

    def create_logic(self, ports: Ports[T, R]) -> StageLogic[T, R]:
        return _MapLogic(ports, self.fn)


class _MapLogic(StageLogic[T, R]):
    __slots__ = ("fn",)

    def __init__(self, ports: Ports[T, R], fn: Callable[[T], R]) -> None:
        super().__init__(ports)
        self.fn = fn

    def on_push(self) -> None:
        self.ports.push(self.fn(self.ports.grab()))

    def on_pull(self) -> None:
        self.ports.pull()


# --- filter ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.filter`."""

    pred: Callable[[T], object]
    operator: ClassVar[str] = "filter"
    user_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.pred, "filter(pred): pred", _AWAIT_FIRST)

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _FilterLogic(ports, self.pred)


class _FilterLogic(StageLogic[T, T]):
    __slots__ = ("pred",)

    def __init__(self, ports: Ports[T, T], pred: Callable[[T], object]) -> None:
        super().__init__(ports)
        self.pred = pred

    def on_push(self) -> None:
        item = self.ports.grab()
        if self.pred(item):
            self.ports.push(item)
        else:
            self.ports.stats.filtered += 1
            self.ports.pull()

    def on_pull(self) -> None:
        self.ports.pull()


# --- flat_map --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlatMap(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.flat_map`."""

    fn: Callable[[T], Iterable[R]]
    operator: ClassVar[str] = "flat_map"
    user_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.fn, "flat_map(f): f", _AWAIT_FIRST)

    def create_logic(self, ports: Ports[T, R]) -> StageLogic[T, R]:
        return _FlatMapLogic(ports, self.fn)


class _FlatMapLogic(LinearLogic[T, R]):
    __slots__ = ("fn",)

    def __init__(self, ports: Ports[T, R], fn: Callable[[T], Iterable[R]]) -> None:
        super().__init__(ports)
        self.fn = fn

    def on_item(self, item: T) -> Iterable[R]:
        return self.fn(item)


# --- take / skip / take_while ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Take(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.take`."""

    n: int
    operator: ClassVar[str] = "take"
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_count(self.n, "take(n): n", minimum=0)

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _TakeLogic(ports, self.n)


class _TakeLogic(StageLogic[T, T]):
    __slots__ = ("left",)

    def __init__(self, ports: Ports[T, T], n: int) -> None:
        super().__init__(ports)
        self.left = n

    def pre_start(self) -> None:
        if self.left == 0:  # take(0) completes without asking upstream for anything
            self.ports.complete()

    def on_push(self) -> None:
        self.left -= 1
        self.ports.push(self.ports.grab())
        if self.left == 0:
            self.ports.complete()

    def on_pull(self) -> None:
        self.ports.pull()


@dataclass(frozen=True, slots=True)
class Skip(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.skip`."""

    n: int
    operator: ClassVar[str] = "skip"
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_count(self.n, "skip(n): n", minimum=0)

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _SkipLogic(ports, self.n)


class _SkipLogic(StageLogic[T, T]):
    __slots__ = ("left",)

    def __init__(self, ports: Ports[T, T], n: int) -> None:
        super().__init__(ports)
        self.left = n

    def on_push(self) -> None:
        item = self.ports.grab()
        if self.left > 0:
            self.left -= 1
            self.ports.stats.filtered += 1
            self.ports.pull()
        else:
            self.ports.push(item)

    def on_pull(self) -> None:
        self.ports.pull()


@dataclass(frozen=True, slots=True)
class TakeWhile(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.take_while`."""

    pred: Callable[[T], object]
    operator: ClassVar[str] = "take_while"
    user_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.pred, "take_while(pred): pred", _AWAIT_FIRST)

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _TakeWhileLogic(ports, self.pred)


class _TakeWhileLogic(StageLogic[T, T]):
    __slots__ = ("pred",)

    def __init__(self, ports: Ports[T, T], pred: Callable[[T], object]) -> None:
        super().__init__(ports)
        self.pred = pred

    def on_push(self) -> None:
        item = self.ports.grab()
        if self.pred(item):
            self.ports.push(item)
        else:
            self.ports.stats.filtered += 1
            self.ports.complete()

    def on_pull(self) -> None:
        self.ports.pull()


# --- scan ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scan(Stage[T, R]):
    """Blueprint of :meth:`rxpipe.Flow.scan`."""

    fn: Callable[[R, T], R]
    initial: R
    operator: ClassVar[str] = "scan"
    user_code: ClassVar[bool] = True
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.fn, "scan(f, initial): f", "scan takes a sync function")

    def create_logic(self, ports: Ports[T, R]) -> StageLogic[T, R]:
        return _ScanLogic(ports, self.fn, self.initial)


class _ScanLogic(LinearLogic[T, R]):
    __slots__ = ("acc", "fn")

    def __init__(self, ports: Ports[T, R], fn: Callable[[R, T], R], initial: R) -> None:
        super().__init__(ports)
        self.fn = fn
        self.acc = initial
        self.emit_first((initial,))  # scan emits `initial` first, even for an empty stream

    def on_item(self, item: T) -> Iterable[R]:
        self.acc = self.fn(self.acc, item)
        return (self.acc,)


# --- chunk -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk(Stage[T, list[T]]):
    """Blueprint of :meth:`rxpipe.Flow.chunk`."""

    n: int
    within: float | None = None
    operator: ClassVar[str] = "chunk"
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_count(self.n, "chunk(n): n", minimum=1)
        if self.within is not None:
            check_seconds(self.within, "chunk(within=)")

    def create_logic(self, ports: Ports[T, list[T]]) -> StageLogic[T, list[T]]:
        if self.within is not None:
            return _ChunkWithinLogic(ports, self.n, self.within)
        return _ChunkLogic(ports, self.n)


class _ChunkLogic(LinearLogic[T, list[T]]):
    __slots__ = ("buf", "n")

    def __init__(self, ports: Ports[T, list[T]], n: int) -> None:
        super().__init__(ports)
        self.n = n
        self.buf: list[T] = []

    def on_item(self, item: T) -> Iterable[list[T]] | None:
        self.buf.append(item)
        if len(self.buf) >= self.n:
            out, self.buf = self.buf, []
            return (out,)
        return None

    def on_finish(self) -> Iterable[list[T]] | None:
        if self.buf:
            out, self.buf = self.buf, []
            return (out,)
        return None

    def held_items(self) -> int:
        return len(self.buf) + sum(len(c) for c in self._pending or ())


_WITHIN: Final = "within"


class _ChunkWithinLogic(StageLogic[T, list[T]]):
    """``chunk(n, within=s)``: a group closes at ``n`` items or ``s`` after its first item.

    It reads ahead while its group fills (a group closes on time only if items keep coming
    in while downstream is busy); a closed group waits for downstream's pull, and meanwhile
    nothing more is read: it holds at most one closed group and the item in flight.
    """

    __slots__ = ("group", "n", "ready", "upstream_done", "within")

    def __init__(self, ports: Ports[T, list[T]], n: int, within: float) -> None:
        super().__init__(ports)
        self.n = n
        self.within = within
        self.group: list[T] = []
        self.ready: list[T] | None = None  # a closed group, waiting for downstream
        self.upstream_done = False

    def pre_start(self) -> None:
        self.ports.pull()

    def on_push(self) -> None:
        ports, group = self.ports, self.group
        group.append(ports.grab())
        size = len(group)
        if size == 1:
            ports.start_timer(_WITHIN, self.within)
        if size >= self.n:
            self._close()
        elif self.ready is None:
            ports.pull()  # the group fills: what _advance does then, without the checks
            return
        self._advance()

    def on_timer(self, key: Hashable) -> None:
        if self.group and self.ready is None:
            self._close()
            self._advance()

    def on_pull(self) -> None:
        self._advance()

    def on_upstream_finish(self) -> None:
        self.upstream_done = True
        self._advance()

    def _close(self) -> None:
        self.ports.cancel_timer(_WITHIN)
        self.ready, self.group = self.group, []

    def _advance(self) -> None:
        ports, group = self.ports, self.group
        if self.upstream_done and self.ready is None and group:
            self._close()  # the last, partial group
        if self.ready is not None and ports.can_push():
            ready, self.ready = self.ready, None
            ports.push(ready)
            group = self.group
            # the item in flight when it closed started a group: full, last, or overdue
            if group and (
                len(group) >= self.n or self.upstream_done or not ports.timer_active(_WITHIN)
            ):
                self._close()
        if self.upstream_done:
            if self.ready is None and not self.group:
                ports.complete()
            return
        if self.ready is None and not ports.has_pulled():
            ports.pull()

    def held_items(self) -> int:
        return len(self.group) + (len(self.ready) if self.ready is not None else 0)


# --- tap ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tap(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.tap`."""

    fn: Callable[[T], object]
    operator: ClassVar[str] = "tap"
    user_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_sync_callable(self.fn, "tap(f): f", _AWAIT_FIRST)

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _TapLogic(ports, self.fn)


class _TapLogic(StageLogic[T, T]):
    __slots__ = ("fn",)

    def __init__(self, ports: Ports[T, T], fn: Callable[[T], object]) -> None:
        super().__init__(ports)
        self.fn = fn

    def on_push(self) -> None:
        item = self.ports.grab()
        self.fn(item)
        self.ports.push(item)

    def on_pull(self) -> None:
        self.ports.pull()
