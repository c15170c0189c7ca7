"""What a push runner is made of, whichever runtime runs it: a step machine between two ends.

A stage is the kernel's interpreter (one node) with a channel on each side; a source is
:func:`rxpipe._core.steps.source_steps` reading its iterator through the same receive protocol
as a channel. :class:`Part` bundles what a runtime's driver needs; the drivers live in
:mod:`rxpipe.engines.push.drivers`. The channels are typed by the two protocols below, which
both :class:`AsyncChannel` and :class:`ThreadChannel` (and the adapters here) satisfy.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, cast, final

from rxpipe._core.interpreter import Interpreter
from rxpipe._core.stats import StageStats
from rxpipe._core.steps import Steps, source_steps, stage_steps
from rxpipe._core.work import Work
from rxpipe.engines.lowerings import CHANNEL_BATCHES
from rxpipe.engines.push._channel_common import (
    ChannelStatistics,
    EndOfChannel,
    WouldBlock,
)
from rxpipe.engines.push.lowerings import iterator_source_steps, simple_steps
from rxpipe.stages._base import StageLogic
from rxpipe.stages.buffering import Buffer, Overflow, overflow_error
from rxpipe.stages.errors import Node, annotate, interpreter
from rxpipe.stages.simple import Filter, Map

__all__ = (
    "AsyncIteratorInbox",
    "IteratorInbox",
    "OfferOutbox",
    "Part",
    "PassThrough",
    "ReceiveChannel",
    "SendChannel",
    "iterator_source_part",
    "stage_part",
)


class SendChannel(Protocol):
    """The sending end of a channel, as a push driver uses it."""

    def send_nowait(self, item: Any) -> None: ...
    def close(self) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def statistics(self) -> ChannelStatistics: ...


class ReceiveChannel(Protocol):
    """The receiving end of a channel, as a push driver uses it."""

    def receive_nowait(self) -> Any: ...
    def close_receiving(self) -> None: ...
    def statistics(self) -> ChannelStatistics: ...


@final
class Part:
    """One runner: its step machine, the ends it moves items between, and how it stops.

    ``output`` is where the steps leave the item to send; ``scheduled`` the work its stages
    asked for; ``stop()`` counts what it still holds as lost and runs ``post_stop``;
    ``stats`` is the stage that counts an item received while it stopped.
    """

    __slots__ = (
        "inbox",
        "interrupt",
        "outbox",
        "output",
        "reads_channel",
        "scheduled",
        "stats",
        "steps",
        "stop",
        "work",
    )

    def __init__(
        self,
        steps: Steps,
        work: Work,
        output: deque[Any],
        scheduled: deque[Any],
        inbox: Any,
        outbox: Any,
        stats: StageStats,
        stop: Callable[[], None],
        *,
        reads_channel: bool,
    ) -> None:
        self.steps = steps
        self.work = work
        self.output = output
        self.scheduled = scheduled
        self.inbox = inbox
        self.outbox = outbox
        self.stats = stats
        self.stop = stop
        #: Set when the run stops: ends a blocking runner's wait for its next timer (the
        #: threads runtime gives each blocking runner one; channels end its other waits).
        self.interrupt: threading.Event | None = None
        #: A stage reads a channel; a source reads its iterator through an inbox adapter.
        self.reads_channel = reads_channel

    def inbox_closed(self) -> bool:
        """Whether this runner's receiving end was closed (a source's iterator never is)."""
        return self.reads_channel and bool(self.inbox.statistics().receiving_closed)

    @classmethod
    def stage(cls, interp: Interpreter, inbox: Any, outbox: Any) -> Part:
        """A stage: ``interp`` between two channels. It cancels upstream by closing its inbox."""
        interp.on_input_cancel = inbox.close_receiving
        work = Work()
        steps = stage_steps(interp, work.finished)
        return cls(
            steps,
            work,
            interp.output,
            interp.scheduled,
            inbox,
            outbox,
            interp.stats[0],
            interp.stop,
            reads_channel=True,
        )

    @classmethod
    def lowered(
        cls,
        steps: Steps,
        output: deque[Any],
        inbox: Any,
        outbox: Any,
        stats: StageStats,
        *,
        reads_channel: bool = True,
    ) -> Part:
        """A runner on a step machine of its own (a source, or a stage on a lowering: see
        :mod:`rxpipe.engines.lowerings`), which leaves what it sends in ``output``; what is
        still there at the stop is lost."""

        def stop() -> None:
            stats.lost += len(output)
            output.clear()

        return cls(
            steps, Work(), output, deque(), inbox, outbox, stats, stop, reads_channel=reads_channel
        )

    @classmethod
    def source(cls, stats: StageStats, inbox: Any, outbox: Any) -> Part:
        """A source: ``inbox`` reads its iterator (see :class:`IteratorInbox`)."""
        output: deque[Any] = deque()
        return cls.lowered(
            source_steps(stats, output), output, inbox, outbox, stats, reads_channel=False
        )


@final
class IteratorInbox:
    """A source's iterator seen as a channel's receiving end (items are always ready)."""

    __slots__ = ("_next", "items")

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = items
        self._next = items.__next__

    def receive_nowait(self) -> Any:
        try:
            return self._next()
        except StopIteration:
            raise EndOfChannel from None

    receive = receive_nowait  # the threads driver's blocking receive

    def close_receiving(self) -> None:
        """Nothing to close here: the runner closes the iterator when it ends."""

    def close(self) -> None:
        """Close the iterator (on the thread that iterates it)."""
        close = getattr(self.items, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        self.close()


@final
class AsyncIteratorInbox:
    """An async source seen as a channel's receiving end: every item is awaited."""

    __slots__ = ("_anext", "_items")

    def __init__(self, items: AsyncIterator[Any]) -> None:
        self._items = items
        self._anext = items.__anext__

    def receive_nowait(self) -> Any:
        raise WouldBlock

    async def receive(self) -> Any:
        try:
            return await self._anext()
        except StopAsyncIteration:
            raise EndOfChannel from None

    def close_receiving(self) -> None:
        """Nothing to close here: the runner closes the iterator when it ends."""

    async def aclose(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()


class PassThrough(StageLogic[Any, Any]):
    """A ``buffer(n)`` stage on the push engine: the buffer is its output channel."""

    __slots__ = ()

    def on_push(self) -> None:
        self.ports.push(self.ports.grab())

    def on_pull(self) -> None:
        self.ports.pull()


@final
class OfferOutbox:
    """The channel of a buffer that never blocks its upstream: when full, apply the policy.

    ``DROP_NEWEST`` drops the item offered, ``DROP_OLDEST`` the oldest buffered one, ``FAIL``
    fails downstream with an overflow error and stops the stage (its inbox closes). Drops are
    counted on the stage (``dropped``, and not ``emitted``).
    """

    __slots__ = ("_ch", "_inbox", "_policy", "_stats")

    def __init__(self, ch: Any, inbox: Any, policy: Overflow, stats: StageStats) -> None:
        self._ch = ch
        self._inbox = inbox
        self._policy = policy
        self._stats = stats

    def send_nowait(self, item: Any) -> None:
        ch, stats = self._ch, self._stats
        try:
            ch.send_nowait(item)
            return
        except WouldBlock:
            pass
        if self._policy is Overflow.DROP_NEWEST:
            stats.emitted -= 1
            stats.dropped += 1
        elif self._policy is Overflow.DROP_OLDEST:
            try:
                ch.receive_nowait()  # make room: the oldest buffered item goes
            except WouldBlock:
                pass  # downstream took it meanwhile (threads): there is room now
            else:
                stats.emitted -= 1
                stats.dropped += 1
            ch.send_nowait(item)
        else:  # Overflow.FAIL
            stats.emitted -= 1
            stats.dropped += 1
            ch.fail(annotate(overflow_error(stats.name, ch.statistics().capacity), stats.name))
            self._inbox.close_receiving()  # the stage ends at its next receive

    send = send_nowait  # never waits, on any runtime

    def close(self) -> None:
        self._ch.close()

    def fail(self, exc: BaseException) -> None:
        self._ch.fail(exc)

    def statistics(self) -> ChannelStatistics:
        stats: ChannelStatistics = self._ch.statistics()
        return stats


def iterator_source_part(
    inbox: IteratorInbox, stats: StageStats, outbox: Any, *, batch: bool
) -> Part:
    """The runner of a source that is a plain iterator, on its lowering (see
    :mod:`rxpipe.engines.lowerings`): in batches on a loop, item by item on a thread. The
    caller closes ``inbox`` at the end."""
    output: deque[Any] = deque()
    steps = iterator_source_steps(inbox.items, outbox, stats, output, batch=batch)
    return Part.lowered(steps, output, inbox, outbox, stats, reads_channel=False)


def stage_part(node: Node, stats: StageStats, inbox: Any, outbox: Any) -> Part:
    """The generic runner of one stage: the kernel's interpreter between two channels.

    A ``buffer(n)`` stage only passes items on (its buffer is its output channel); one that
    must not block its upstream offers them (:class:`OfferOutbox` applies the policy).
    """
    stage = node.stage
    if CHANNEL_BATCHES.applies(node):
        output: deque[Any] = deque()
        keep = isinstance(stage, Filter)
        fn = cast("Filter[Any]", stage).pred if keep else cast("Map[Any, Any]", stage).fn
        return Part.lowered(
            simple_steps(inbox, outbox, stats, output, fn, keep), output, inbox, outbox, stats
        )
    if not isinstance(stage, Buffer):
        return Part.stage(interpreter([node], [stats]), inbox, outbox)
    interp = Interpreter([PassThrough], [stats])
    if stage.overflow is not Overflow.BACKPRESSURE:
        outbox = OfferOutbox(outbox, inbox, stage.overflow, stats)
    return Part.stage(interp, inbox, outbox)
