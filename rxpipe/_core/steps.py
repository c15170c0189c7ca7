"""The one loop that runs an interpreter between two boundaries, written once as a step machine.

Python cannot share one function between ``await`` and blocking code, so the loop is a
generator: it decides, and yields what it needs done next; a driver (one per way of waiting:
asyncio, a thread, an async generator feeding a consumer) does it and sends back the outcome.

- ``SEND``: deliver ``output.popleft()`` downstream; resume with ``None``, or ``GONE`` when
  downstream is gone (the item is lost);
- ``RECEIVE``: get one input item; resume with the item, ``END`` (upstream completed),
  a :class:`Failure` (upstream failed), or ``NOTHING`` (no item yet: work ended meanwhile);
- ``WAIT``: nothing to do but wait for running work; resume with anything;
- ``YIELD``: let the other runners go first (a lowering that found room all the time);
  resume with anything.

The loop asks the chain for output as soon as the last item went out (``demand``), feeds it
input only when it asked (``input_wanted``), and hands back the ends of work between steps.
It returns how the chain ended: ``COMPLETE``, the exception it failed with, or ``GONE``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any, Final, final

from rxpipe._core.interpreter import Interpreter
from rxpipe._core.notes import annotate
from rxpipe._core.stats import StageStats
from rxpipe._core.work import NOT_YET, STALL, Ended

__all__ = (
    "COMPLETE",
    "END",
    "GONE",
    "NOTHING",
    "RECEIVE",
    "SEND",
    "STALL",
    "WAIT",
    "YIELD",
    "Failure",
    "Steps",
    "source_steps",
    "stage_steps",
)

SEND: Final = 0
RECEIVE: Final = 1
WAIT: Final = 2
YIELD: Final = 3


@final
class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END: Final[Any] = _Signal("END")
GONE: Final[Any] = _Signal("GONE")
#: No item yet (a piece of work ended first): the same value as :data:`Work.awaiting`'s.
NOTHING: Final[Any] = NOT_YET
COMPLETE: Final[Any] = _Signal("COMPLETE")


#: A step machine: yields op codes, is sent outcomes, returns how it ended.
Steps = Generator[int, Any, Any]


@final
class Failure:
    """An upstream failure, as sent to a ``RECEIVE`` step (items may be exceptions)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def stage_steps(interp: Interpreter, finished: deque[Ended]) -> Steps:
    """Run ``interp`` until it ends: the loop of every stage that is not a lowering."""
    output = interp.output
    demand, feed = interp.demand, interp.feed
    last = interp.last_ports  # read directly: this loop runs for every item
    interp.start()
    while True:
        if finished:
            while finished:
                interp.work_done(*finished.popleft())
        if output:
            if (yield SEND) is GONE:
                interp.stats[-1].lost += 1  # the item on its way out
                interp.cancel()  # downstream is gone: the stages stop, upstream is cancelled
            continue
        if last._out_closed:  # it ended, or downstream cancelled it
            if not interp.finished:
                return GONE
            return COMPLETE if interp.error is None else interp.error
        if not last._out_pulled:
            demand()
            if output or finished or last._out_closed:
                continue
        if interp.input_wanted:
            got = yield RECEIVE
            if got is NOTHING:
                continue
            if got is END:
                interp.feed_end()
            elif type(got) is Failure:
                interp.feed_error(got.error)
            else:
                feed(got)
            continue
        yield WAIT  # the driver raises RuntimeError(STALL) if no work is running


def source_steps(stats: StageStats, output: deque[Any]) -> Steps:
    """Move a source's items (``RECEIVE`` from the source) downstream, one at a time."""
    while True:
        got = yield RECEIVE
        if got is END:
            return COMPLETE
        if type(got) is Failure:
            return annotate(got.error, stats.name)
        output.append(got)
        del got
        stats.emitted += 1
        if (yield SEND) is GONE:
            stats.lost += 1
            return GONE
