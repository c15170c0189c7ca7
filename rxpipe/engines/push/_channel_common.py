"""What both channel variants share: their state and non-waiting operations, the statistics
record and the exceptions.

The asyncio and threads channels behave identically; only their waiting differs. Keeping the
state, the counting and the vocabulary here means the two cannot drift apart, and an engine
(or a test) can handle either without knowing which one it holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from itertools import islice
from typing import Final, Generic, TypeVar, final

from rxpipe.errors import RxpipeError

__all__ = (
    "BrokenChannelError",
    "ChannelState",
    "ChannelStatistics",
    "ClosedChannelError",
    "EndOfChannel",
    "WouldBlock",
)

T = TypeVar("T")
H = TypeVar("H")


class WouldBlock(RxpipeError):
    """A ``*_nowait`` operation could not complete without waiting."""


class EndOfChannel(RxpipeError):
    """The sending side closed the channel and every buffered item was received."""


class BrokenChannelError(RxpipeError):
    """The receiving side closed the channel; nobody will ever take what is sent.

    The push engine's cancellation signal: a sender seeing it stops producing.
    """


class ClosedChannelError(RxpipeError):
    """A side used its own end after closing it (a bug in the caller, as in Go's panic).

    Raised by ``send`` after ``close()``/``fail()``, and by ``receive`` after
    ``close_receiving()``; also what parties of that side blocked at the time get.
    """


@final
@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of one channel, for the run's Report.

    ``sent == received + current + discarded`` always holds: an item whose send raised
    (cancelled, timed out, broken, closed) was never counted as sent.
    """

    #: Items held by the channel now (a rendezvous item being handed over counts: at most 1).
    current: int
    #: The largest ``current`` ever seen; never above ``max(capacity, 1)``.
    peak: int
    #: The ``buffer`` the channel was created with (0: rendezvous).
    capacity: int
    #: Senders waiting for space, or (rendezvous) for a receiver to take their item.
    blocked_senders: int
    #: Receivers waiting for an item.
    blocked_receivers: int
    #: Items accepted by the channel.
    sent: int
    #: Items handed to receivers.
    received: int
    #: The sending side called ``close()`` or ``fail()``.
    closed: bool
    #: The receiving side called ``close_receiving()``.
    receiving_closed: bool
    #: Buffered items thrown away by ``close_receiving()`` (the engine counts them as lost).
    discarded: int

    def depth(self) -> tuple[int, int]:
        """(items waiting, room) as a queue reads, for telemetry: a rendezvous channel is a
        queue of one, full while an item or a sender waits on it (``1/0`` would say nothing,
        and a fill of ``size / capacity`` would divide by zero)."""
        if self.capacity:
            return self.current, self.capacity
        return (1 if self.current or self.blocked_senders else 0), 1


#: Batches ``send_many`` uses as they are; anything else is copied into a list first. A
#: tuple of concrete types: ``isinstance`` against the ``Sequence`` ABC is ten times slower.
SEQUENCES: Final = (list, tuple, range)


def check_buffer(buffer: int) -> int:
    """Validate a ``buffer`` argument; booleans are rejected as a likely mistake."""
    if isinstance(buffer, bool) or not isinstance(buffer, int):
        raise TypeError(f"buffer must be an int, got {type(buffer).__name__}")
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    return buffer


def check_max_n(max_n: int) -> None:
    """Validate ``receive_batch``'s ``max_n``."""
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")


class ChannelState(Generic[T, H]):
    """What both channels are, minus the waiting: the state, the counters and every operation
    that never waits. :class:`AsyncChannel` and :class:`ThreadChannel` subclass it and add
    their waiting strategy (futures of one loop; conditions under one lock).

    The methods here take no lock: the asyncio channel uses them as they are, the threads
    channel calls them with its lock held (its public ones wrap these in ``with self._lock``).
    A subclass provides the waking: ``_wake_senders``/``_wake_receivers``/``_wake_all``,
    ``_settle`` (tell a rendezvous sender whether its item was taken) and ``_blocked``.
    ``_senders``/``_receivers`` are its waiting parties (futures, or a count): truthy when
    anyone waits, so the fast paths skip the wake-up call when nobody does.

    One class rather than a state object the channels hold: the fast paths read the state as
    ``self._buf``, not ``self._state._buf``.
    """

    __slots__ = (
        "_buf",
        "_buffer_size",
        "_cap",
        "_closed",
        "_discarded",
        "_failure",
        "_fast_cap",
        "_handoff",
        "_peak",
        "_received",
        "_receivers",
        "_receiving_closed",
        "_senders",
    )

    #: Who waits for space (or, for a rendezvous, for the slot): truthy when anyone does.
    _senders: Sized | int
    #: Who waits for an item: truthy when anyone does.
    _receivers: Sized | int
    #: The rendezvous sender whose item sits in the slot (its future, or its record).
    _handoff: H | None

    def __init__(self, buffer: int) -> None:
        self._buffer_size = check_buffer(buffer)
        self._cap = max(buffer, 1)  # what the deque may hold: one slot for a rendezvous
        # Senders take the fast path while len(buf) < _fast_cap: 0 for a rendezvous (a
        # sender must wait for the taker) and 0 once either side closed (slow path raises).
        self._fast_cap = buffer
        self._buf: deque[T] = deque()
        self._handoff = None
        self._closed = False
        self._failure: BaseException | None = None
        self._receiving_closed = False
        self._received = 0
        self._discarded = 0
        self._peak = 0

    def __repr__(self) -> str:
        state = (
            "receiving closed" if self._receiving_closed else "closed" if self._closed else "open"
        )
        name = type(self).__name__
        return f"<{name} buffer={self._buffer_size} current={len(self._buf)} {state}>"

    # -- sending side -----------------------------------------------------------------------
    def send_nowait(self, item: T) -> None:
        """Send one item if that needs no waiting, else raise :class:`WouldBlock`.

        On a rendezvous channel this succeeds only when a receiver is already waiting (Go's
        ``select`` with ``default``): the item is committed to it and sits in the slot.
        """
        buf = self._buf
        if len(buf) < self._fast_cap:
            buf.append(item)
            n = len(buf)
            if n > self._peak:
                self._peak = n
            if self._receivers:
                self._wake_receivers(1)
            return
        self._check_send_open()
        if not self._buffer_size and not buf and self._wake_receivers(1):
            buf.append(item)
            if self._peak == 0:
                self._peak = 1
            return
        raise WouldBlock

    def space(self) -> int:
        """How many items ``send_nowait`` would take right now (0: rendezvous, full or closed).

        Between threads a snapshot (no lock needed): another sender may take the space first.
        """
        return max(0, self._fast_cap - len(self._buf))

    def send_available(self, items: list[T]) -> None:
        """Append items that fit now, all at once (check :meth:`space` first).

        Raises:
            WouldBlock: they do not all fit (nothing is sent).
            BrokenChannelError, ClosedChannelError: the receiving side closed, or this one.
        """
        buf = self._buf
        if len(buf) + len(items) > self._fast_cap:
            self._check_send_open()
            raise WouldBlock
        buf.extend(items)
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if self._receivers:
            self._wake_receivers(len(items))

    def close(self) -> None:
        """End the stream: receivers drain what is buffered, then get :class:`EndOfChannel`.

        Idempotent. Blocked senders (other producers) get :class:`ClosedChannelError`.
        """
        self._end(None)

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error: receivers drain what is buffered, then get ``exc``.

        A no-op once the sending side already closed (the first ending wins).
        """
        self._end(exc)

    # -- receiving side ---------------------------------------------------------------------
    def receive_nowait(self) -> T:
        """Receive the next item if one is ready, else raise :class:`WouldBlock`.

        Raises :class:`EndOfChannel` (or the failure) once closed and drained.
        """
        buf = self._buf
        if buf and self._handoff is None:  # the fast path, inlined
            item = buf.popleft()
            self._received += 1
            if self._senders:
                self._wake_senders(1)
            return item
        if self._receivable():
            return self._take_one()
        raise WouldBlock

    def receive_available(self, max_n: int) -> list[T]:
        """Take up to ``max_n`` items that are ready now, without waiting (maybe none).

        Raises what :meth:`receive_nowait` raises once the channel is closed and drained.
        """
        if not self._receivable():
            return []
        if not self._buffer_size:
            return [self._take_one()]  # a rendezvous holds one item
        return self._take_batch(max_n)

    def close_receiving(self) -> None:
        """Stop receiving: senders get :class:`BrokenChannelError`; buffered items are discarded.

        Idempotent. The discarded items are counted in ``statistics().discarded`` so the
        engine can report them as lost. Blocked receivers get :class:`ClosedChannelError`.
        """
        if self._receiving_closed:
            return
        self._receiving_closed = True
        self._fast_cap = 0
        self._withdraw_handoff()
        self._discarded += len(self._buf)
        self._buf.clear()
        self._wake_all()

    # -- observation ------------------------------------------------------------------------
    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel's state and counters."""
        current = len(self._buf)
        blocked_senders, blocked_receivers = self._blocked()
        return ChannelStatistics(
            current=current,
            peak=self._peak,
            capacity=self._buffer_size,
            blocked_senders=blocked_senders,
            blocked_receivers=blocked_receivers,
            sent=self._received + current + self._discarded,
            received=self._received,
            closed=self._closed,
            receiving_closed=self._receiving_closed,
            discarded=self._discarded,
        )

    # -- internals for the waiting strategies -------------------------------------------------
    def _check_send_open(self) -> None:
        if self._closed:
            raise ClosedChannelError("send on a closed channel")
        if self._receiving_closed:
            raise BrokenChannelError("the receiving side closed the channel")

    def _put(self, item: T) -> None:
        """Append one item there is room for (``_cap``) and wake a receiver."""
        buf = self._buf
        buf.append(item)
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if self._receivers:
            self._wake_receivers(1)

    def _put_many(self, it: Iterator[T], remaining: int) -> int:
        """Append as many of the ``remaining`` items of ``it`` as fit now; return how many
        are left (buffered channels only: ``send_many``'s step)."""
        buf = self._buf
        free = self._fast_cap - len(buf)
        if free <= 0:
            return remaining
        if remaining <= free:
            buf.extend(it)
            added = remaining
        else:
            buf.extend(islice(it, free))
            added = free
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if self._receivers:
            self._wake_receivers(added)
        return remaining - added

    def _end(self, failure: BaseException | None) -> None:
        """The sending side ends the stream (``failure``: with that error); the first wins."""
        if self._closed:
            return
        self._failure = failure
        self._closed = True
        self._fast_cap = 0
        self._withdraw_handoff()
        self._wake_all()

    def _receivable(self) -> bool:
        """Whether an item can be taken now; raises at the end of the stream."""
        if self._buf:
            return True
        self._check_not_ended()
        return False

    def _check_not_ended(self) -> None:
        """Raise what a receiver gets once nothing is left (nothing while the stream is open)."""
        if self._receiving_closed:
            raise ClosedChannelError("receive on a channel whose receiving side was closed")
        if self._closed:
            if self._failure is not None:
                raise self._failure
            raise EndOfChannel

    def _take_one(self) -> T:
        item = self._buf.popleft()
        self._received += 1
        if self._handoff is not None or self._senders:
            self._after_take(1)
        return item

    def _take_batch(self, max_n: int) -> list[T]:
        """Take up to ``max_n`` buffered items (at least one must be there)."""
        buf = self._buf
        if len(buf) <= max_n:
            items = list(buf)
            buf.clear()
        else:
            items = [buf.popleft() for _ in range(max_n)]
        k = len(items)
        self._received += k
        if self._handoff is not None or self._senders:
            self._after_take(k)
        return items

    def _after_take(self, k: int) -> None:
        """``k`` items left the buffer: complete a rendezvous hand-over, wake senders."""
        h = self._handoff
        if h is not None:
            self._handoff = None
            self._settle(h, True)
        if self._senders:
            self._wake_senders(k)

    def _withdraw_handoff(self) -> None:
        """Take back the item of a rendezvous sender that will not complete."""
        h = self._handoff
        if h is None:
            return
        self._handoff = None
        self._buf.pop()  # the slot holds exactly that sender's item
        self._settle(h, False)
        if self._senders:
            self._wake_senders(1)

    # -- what a waiting strategy provides -------------------------------------------------------
    def _wake_senders(self, n: int) -> None:
        """Wake up to ``n`` senders waiting for space."""
        raise NotImplementedError

    def _wake_receivers(self, n: int) -> int:
        """Wake up to ``n`` receivers waiting for items; return how many (0: none waited)."""
        raise NotImplementedError

    def _wake_all(self) -> None:
        """Wake every waiting party (a side closed)."""
        raise NotImplementedError

    def _settle(self, handoff: H, taken: bool) -> None:
        """Tell the rendezvous sender of ``handoff`` whether its item was taken."""
        raise NotImplementedError

    def _blocked(self) -> tuple[int, int]:
        """How many senders (the rendezvous one included) and receivers wait now."""
        raise NotImplementedError
