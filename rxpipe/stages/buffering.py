"""Explicit buffers and what happens when they are full.

``buffer(n)`` decouples the stages around it by up to ``n`` items. On the push engine it is a
channel of ``n`` (Go's ``make(chan T, n)``); on the pull engine it is an asynchronous boundary
that requests items in batches. Under ``Overflow.BACKPRESSURE`` a full buffer slows its
upstream down; under the other policies the buffer never does: it keeps reading upstream while
downstream is busy, and drops (counted) or fails when one more item does not fit, on every
engine (Reactor's ``onBackpressureDrop``, Akka's ``buffer(n, OverflowStrategy)``).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from rxpipe.errors import MissingBackpressureError
from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.simple import check_count

__all__ = ("Buffer", "Overflow", "overflow_error")

T = TypeVar("T")


class Overflow(enum.Enum):
    """What a full buffer does with one more item."""

    #: Wait for room: the producer is slowed down (the default, and the only lossless one).
    BACKPRESSURE = "backpressure"
    #: Drop the item that does not fit (counted as dropped).
    DROP_NEWEST = "drop_newest"
    #: Drop the oldest buffered item to make room (counted as dropped).
    DROP_OLDEST = "drop_oldest"
    #: Fail the flow with ``MissingBackpressureError`` naming the stage.
    FAIL = "fail"


def overflow_error(stage_name: str, capacity: int) -> MissingBackpressureError:
    """The error of a full ``Overflow.FAIL`` buffer, the same on every engine."""
    return MissingBackpressureError(
        f"stage {stage_name!r}: buffer of {capacity} is full (overflow=Overflow.FAIL)"
    )


@dataclass(frozen=True, slots=True)
class Buffer(Stage[T, T]):
    """Blueprint of :meth:`rxpipe.Flow.buffer`."""

    n: int
    overflow: Overflow = Overflow.BACKPRESSURE
    operator: ClassVar[str] = "buffer"

    def __post_init__(self) -> None:
        check_count(self.n, "buffer(n): n", minimum=1)
        if not isinstance(self.overflow, Overflow):
            raise TypeError(f"overflow must be an rxpipe.Overflow, got {self.overflow!r}")

    def create_logic(self, ports: Ports[T, T]) -> StageLogic[T, T]:
        return _BufferLogic(ports, self.n)


class _BufferLogic(StageLogic[T, T]):
    """The generic path: pull eagerly while there is room, serve downstream from the queue."""

    __slots__ = ("items", "n")

    def __init__(self, ports: Ports[T, T], n: int) -> None:
        super().__init__(ports)
        self.n = n
        self.items: deque[T] = deque()

    def pre_start(self) -> None:
        self.ports.pull()

    def on_push(self) -> None:
        self.items.append(self.ports.grab())
        if self.ports.can_push():
            self.ports.push(self.items.popleft())
        if len(self.items) < self.n:
            self.ports.pull()

    def on_pull(self) -> None:
        if self.items:
            self.ports.push(self.items.popleft())
            if not self.ports.has_pulled() and not self.ports.is_upstream_closed():
                self.ports.pull()
        elif self.ports.is_upstream_closed():
            self.ports.complete()
        else:
            self.ports.pull()

    def on_upstream_finish(self) -> None:
        if not self.items:
            self.ports.complete()

    def held_items(self) -> int:
        return len(self.items)
