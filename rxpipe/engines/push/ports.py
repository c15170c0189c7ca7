"""The push engine's ports: a stage's logic, mapped onto two channel ends.

``push(x)`` cannot block inside a synchronous callback, so it parks ``x`` in a one-item slot
and the stage's runner sends it (a blocking send: the backpressure). ``pull()`` marks that the
runner should receive next. The runner gives the logic a fresh ``on_pull`` as soon as the slot
is empty, so a stage holds at most one item of its own (and, while its function builds a new
object from that item, the output too): the in-flight bound of a push pipeline is
``sum(buffers) + 2 * stages``. ``complete()``/``fail()`` take
effect after the parked item was sent, so ``take`` can push its last item and complete in one
callback.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, final

from rxpipe.stages._base import Done, StageLogic, StageStats
from rxpipe.stages.errors import annotate

__all__ = ("COMPLETE", "NOTHING", "PushPorts")

#: Marks an empty slot (``None`` is a valid item).
NOTHING: Final[Any] = object()
#: The value of ``PushPorts.end`` for a normal completion (otherwise it holds the exception).
COMPLETE: Final[Any] = object()


@final
class PushPorts:
    """The port state of one stage on the push engine; the runner does the channel I/O."""

    __slots__ = (
        "end",
        "in_closed",
        "in_pulled",
        "inbox",
        "item",
        "logic",
        "out_closed",
        "out_item",
        "out_pulled",
        "scheduled",
        "stats",
    )

    def __init__(self, stats: StageStats, inbox: Any) -> None:
        self.stats = stats
        self.inbox = inbox
        self.logic: StageLogic[Any, Any]
        self.item: Any = NOTHING
        self.in_pulled = False
        self.in_closed = False
        self.out_item: Any = NOTHING
        self.out_pulled = False
        self.out_closed = False
        self.end: Any = NOTHING
        #: Work the logic asked for, not yet started by the runner.
        self.scheduled: deque[tuple[Callable[[], Awaitable[Any]], Done]] = deque()

    def pull(self) -> None:
        if not self.in_closed:
            self.in_pulled = True

    def grab(self) -> Any:
        item = self.item
        if item is NOTHING:
            raise RuntimeError(f"stage {self.stats.name!r} grabbed with no item pushed")
        self.item = NOTHING
        self.stats.received += 1
        return item

    def push(self, item: Any) -> None:
        if not self.out_pulled:
            raise RuntimeError(f"stage {self.stats.name!r} pushed without a pull from downstream")
        self.out_pulled = False
        self.out_item = item
        self.stats.emitted += 1

    def complete(self) -> None:
        self.cancel()
        if not self.out_closed:
            self.out_closed = True
            self.out_pulled = False
            self.end = COMPLETE

    def fail(self, error: BaseException) -> None:
        self.cancel()
        if not self.out_closed:
            self.out_closed = True
            self.out_pulled = False
            self.end = error

    def cancel(self) -> None:
        if not self.in_closed:
            self.in_closed = True
            self.in_pulled = False
            self.inbox.close_receiving()  # senders upstream see a broken channel and stop

    def can_push(self) -> bool:
        return self.out_pulled

    def has_pulled(self) -> bool:
        return self.in_pulled

    def is_upstream_closed(self) -> bool:
        return self.in_closed

    def schedule(self, work: Callable[[], Awaitable[Any]], done: Done) -> None:
        self.scheduled.append((work, done))

    def call(self, callback: Any, *args: Any) -> None:
        """Run a logic callback; what it raises fails the stage (``errors="raise"``)."""
        try:
            callback(*args)
        except Exception as exc:
            self.stats.errored += 1
            self.fail(annotate(exc, self.stats.name))

    def held(self) -> int:
        """Items this stage holds now (lost if the run is cancelled)."""
        held = self.logic.held_items()
        if self.item is not NOTHING:
            held += 1
        if self.out_item is not NOTHING:
            held += 1
        return held
