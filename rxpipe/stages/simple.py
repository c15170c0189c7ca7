"""One-in, zero-or-more-out operators: map, filter, flat_map, take, skip, take_while, scan, chunk.

Each class is the blueprint of the Flow method of the same name; the full docstring (with the
Emits/Backpressures/Completes/Cancels contract) lives on that method in ``rxpipe.flow``.
These logic classes are the generic path that every engine can run; the pull engine also
fuses runs of them into one loop (``rxpipe.engines.pull.fused``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from rxpipe.stages._base import LinearLogic, Ports, Stage, StageLogic
from rxpipe.stages.callables import check_sync_callable

__all__ = ("Chunk", "Filter", "FlatMap", "Map", "Scan", "Skip", "Take", "TakeWhile")

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
    operator: ClassVar[str] = "chunk"
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_count(self.n, "chunk(n): n", minimum=1)

    def create_logic(self, ports: Ports[T, list[T]]) -> StageLogic[T, list[T]]:
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
