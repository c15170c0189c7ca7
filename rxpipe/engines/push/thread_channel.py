"""A bounded channel between threads, with the same Go semantics as ``AsyncChannel``.

``ThreadChannel(buffer)`` behaves exactly like
:class:`~rxpipe.engines.push.channel.AsyncChannel` (see that module for the rules on
rendezvous counting, closing either side, and discarded items); only the waiting differs:
operations block the calling thread, and each blocking one takes ``timeout`` (seconds, or
``None`` to wait forever) and raises the builtin :class:`TimeoutError` when it runs out. A
rendezvous ``send`` that times out withdraws its item: a send that raised never sent.

Safe from any number of threads: one lock guards a deque, with three conditions on it (space,
items, rendezvous hand-over). Waiters are counted so the fast paths skip ``notify`` when
nobody waits.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from itertools import islice
from time import monotonic
from typing import Final, Generic, TypeVar, final

from rxpipe.engines.push._channel_common import (
    SEQUENCES,
    BrokenChannelError,
    ChannelStatistics,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
    check_buffer,
    check_max_n,
)

__all__ = (
    "BrokenChannelError",
    "ChannelStatistics",
    "ClosedChannelError",
    "EndOfChannel",
    "ThreadChannel",
    "WouldBlock",
)

T = TypeVar("T")

_PENDING: Final = 0
_TAKEN: Final = 1
_WITHDRAWN: Final = 2


@final
class _Handoff:
    """The state of one rendezvous send (one at a time: the slot holds one item)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = _PENDING


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline``; raises :class:`TimeoutError` when none are."""
    if deadline is None:
        return None
    left = deadline - monotonic()
    if left <= 0:
        raise TimeoutError
    return left


@final
class ThreadChannel(Generic[T]):
    """A bounded FIFO between threads; ``buffer=0`` is a rendezvous.

    Blocking operations take ``timeout: float | None`` and raise :class:`TimeoutError`.
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
        "_lock",
        "_not_empty",
        "_not_full",
        "_peak",
        "_received",
        "_receiving_closed",
        "_taken",
        "_waiting_receivers",
        "_waiting_senders",
    )

    def __init__(self, buffer: int = 0) -> None:
        """Create a channel holding up to ``buffer`` items (0: rendezvous)."""
        self._buffer_size = check_buffer(buffer)
        self._cap = max(buffer, 1)
        self._fast_cap = buffer  # 0 for a rendezvous and once either side closed
        self._buf: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._taken = threading.Condition(self._lock)
        self._waiting_senders = 0  # waiting for space (the hand-over is _handoff)
        self._waiting_receivers = 0
        self._handoff: _Handoff | None = None
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
        return f"<ThreadChannel buffer={self._buffer_size} current={len(self._buf)} {state}>"

    # -- sending side -----------------------------------------------------------------------
    def send(self, item: T, timeout: float | None = None) -> None:
        """Send one item, blocking for space (or, for a rendezvous, until a receiver took it).

        Raises:
            BrokenChannelError: the receiving side closed.
            ClosedChannelError: this channel was closed by the sending side.
            TimeoutError: ``timeout`` ran out; the item was not sent.
        """
        with self._lock:
            buf = self._buf
            if len(buf) < self._fast_cap:
                buf.append(item)
                n = len(buf)
                if n > self._peak:
                    self._peak = n
                if self._waiting_receivers:
                    self._not_empty.notify()
                return
            self._send_slow(item, _deadline(timeout))

    def send_nowait(self, item: T) -> None:
        """Send one item if that needs no waiting, else raise :class:`WouldBlock`.

        On a rendezvous channel this succeeds only when a receiver is already blocked: the
        item is committed to the receivers and sits in the slot.
        """
        with self._lock:
            buf = self._buf
            if len(buf) < self._fast_cap:
                buf.append(item)
                n = len(buf)
                if n > self._peak:
                    self._peak = n
                if self._waiting_receivers:
                    self._not_empty.notify()
                return
            self._check_send_open()
            if not self._buffer_size and not buf and self._waiting_receivers:
                buf.append(item)
                if self._peak == 0:
                    self._peak = 1
                self._not_empty.notify()
                return
            raise WouldBlock

    def send_many(self, items: Iterable[T], timeout: float | None = None) -> None:
        """Send items in order, as many per step as the free space allows.

        Never holds more than the buffer allows; on a rendezvous channel each item is handed
        over on its own. ``items`` is read eagerly (all but a list, tuple or range is copied);
        ``timeout`` bounds the whole call. If this raises, a prefix of the items was sent and
        the rest was not; ``statistics().sent`` tells how many.
        """
        seq = items if isinstance(items, SEQUENCES) else list(items)
        remaining = len(seq)
        if not remaining:
            with self._lock:
                self._check_send_open()  # an empty batch still may not go to a closed channel
            return
        deadline = _deadline(timeout)
        if not self._buffer_size:
            for item in seq:
                with self._lock:
                    self._send_slow(item, deadline)
            return
        it = iter(seq)
        with self._lock:
            buf = self._buf
            while True:
                free = self._fast_cap - len(buf)
                if free > 0:
                    if remaining <= free:
                        buf.extend(it)
                        added, remaining = remaining, 0
                    else:
                        buf.extend(islice(it, free))
                        added = free
                        remaining -= free
                    n = len(buf)
                    if n > self._peak:
                        self._peak = n
                    if self._waiting_receivers:
                        self._not_empty.notify(added)
                    if not remaining:
                        return
                self._wait_for_space(deadline)

    def close(self) -> None:
        """End the stream: receivers drain what is buffered, then get :class:`EndOfChannel`.

        Idempotent. Blocked senders (other producers) get :class:`ClosedChannelError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fast_cap = 0
            self._withdraw_handoff()
            self._wake_all()

    def fail(self, exc: BaseException) -> None:
        """End the stream with an error: receivers drain what is buffered, then get ``exc``.

        A no-op once the sending side already closed (the first ending wins).
        """
        with self._lock:
            if self._closed:
                return
            self._failure = exc
            self._closed = True
            self._fast_cap = 0
            self._withdraw_handoff()
            self._wake_all()

    # -- receiving side ---------------------------------------------------------------------
    def receive(self, timeout: float | None = None) -> T:
        """Receive the next item, blocking for one.

        Raises:
            EndOfChannel: the sending side closed and everything buffered was received.
            BaseException: the exception given to :meth:`fail`, once drained.
            ClosedChannelError: the receiving side closed this channel.
            TimeoutError: ``timeout`` ran out.
        """
        with self._lock:
            buf = self._buf
            if not buf:
                self._wait_for_items(_deadline(timeout))
            item = buf.popleft()
            self._received += 1
            if self._handoff is not None:
                self._complete_handoff()
            if self._waiting_senders:
                self._not_full.notify()
            return item

    def receive_nowait(self) -> T:
        """Receive the next item if one is ready, else raise :class:`WouldBlock`.

        Raises :class:`EndOfChannel` (or the failure) once closed and drained.
        """
        with self._lock:
            if not self._receivable():
                raise WouldBlock
            item = self._buf.popleft()
            self._received += 1
            if self._handoff is not None:
                self._complete_handoff()
            if self._waiting_senders:
                self._not_full.notify()
            return item

    def wait_receivable(self, timeout: float | None = None) -> None:
        """Block until :meth:`receive_nowait` would not raise :class:`WouldBlock`: an item is
        ready, or the stream ended. Takes nothing, so a waiter that gives up (a consumer on
        an event loop that was cancelled while a helper thread waited here) loses no item.

        Raises:
            TimeoutError: ``timeout`` ran out.
        """
        deadline = _deadline(timeout)
        with self._lock:
            while not (self._buf or self._receiving_closed or self._closed):
                left = _left(deadline)
                self._waiting_receivers += 1  # a rendezvous sender hands its item over
                try:
                    self._not_empty.wait(left)
                finally:
                    self._waiting_receivers -= 1

    def receive_batch(self, max_n: int, timeout: float | None = None) -> list[T]:
        """Receive every item ready now, at most ``max_n`` (at least one: blocks for the first).

        Raises the same as :meth:`receive` when nothing is left.
        """
        if max_n < 1:
            check_max_n(max_n)  # raises
        with self._lock:
            buf = self._buf
            if not buf:
                self._wait_for_items(_deadline(timeout))
            if len(buf) <= max_n:
                items = list(buf)
                buf.clear()
            else:
                items = [buf.popleft() for _ in range(max_n)]
            k = len(items)
            self._received += k
            if self._handoff is not None:
                self._complete_handoff()
            if self._waiting_senders:
                self._not_full.notify(k)
            return items

    def close_receiving(self) -> None:
        """Stop receiving: senders get :class:`BrokenChannelError`; buffered items are discarded.

        Idempotent. The discarded items are counted in ``statistics().discarded`` so the
        engine can report them as lost. Blocked receivers get :class:`ClosedChannelError`.
        """
        with self._lock:
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
        """A snapshot of the channel's state and counters (taken under the lock)."""
        with self._lock:
            current = len(self._buf)
            return ChannelStatistics(
                current=current,
                peak=self._peak,
                capacity=self._buffer_size,
                blocked_senders=self._waiting_senders + (self._handoff is not None),
                blocked_receivers=self._waiting_receivers,
                sent=self._received + current + self._discarded,
                received=self._received,
                closed=self._closed,
                receiving_closed=self._receiving_closed,
                discarded=self._discarded,
            )

    # -- internals (all called with the lock held) --------------------------------------------
    def _check_send_open(self) -> None:
        if self._closed:
            raise ClosedChannelError("send on a closed channel")
        if self._receiving_closed:
            raise BrokenChannelError("the receiving side closed the channel")

    def _send_slow(self, item: T, deadline: float | None) -> None:
        self._wait_for_space(deadline)
        buf = self._buf
        buf.append(item)
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if self._waiting_receivers:
            self._not_empty.notify()
        if self._buffer_size:
            return
        # Rendezvous: the item waits in the slot until a receiver takes it.
        h = _Handoff()
        self._handoff = h
        while h.state == _PENDING:
            try:
                left = _left(deadline)
            except TimeoutError:
                self._withdraw_handoff()  # a send that raised never sent
                raise
            self._taken.wait(left)
        if h.state == _WITHDRAWN:
            self._check_send_open()  # withdrawn by a close: raise what that side means

    def _wait_for_space(self, deadline: float | None) -> None:
        buf = self._buf
        while True:
            self._check_send_open()
            if len(buf) < self._cap:
                return
            left = _left(deadline)
            self._waiting_senders += 1
            try:
                self._not_full.wait(left)
            finally:
                self._waiting_senders -= 1

    def _receivable(self) -> bool:
        """Whether an item can be taken now; raises at the end of the stream."""
        if self._buf:
            return True
        if self._receiving_closed:
            raise ClosedChannelError("receive on a channel whose receiving side was closed")
        if self._closed:
            if self._failure is not None:
                raise self._failure
            raise EndOfChannel
        return False

    def _wait_for_items(self, deadline: float | None) -> None:
        while not self._receivable():
            left = _left(deadline)
            self._waiting_receivers += 1
            try:
                self._not_empty.wait(left)
            finally:
                self._waiting_receivers -= 1

    def _complete_handoff(self) -> None:
        h = self._handoff
        assert h is not None
        self._handoff = None
        h.state = _TAKEN
        self._taken.notify()

    def _withdraw_handoff(self) -> None:
        """Take back the item of a rendezvous sender that will not complete."""
        h = self._handoff
        if h is None:
            return
        self._handoff = None
        self._buf.pop()  # the slot holds exactly that sender's item
        h.state = _WITHDRAWN
        self._taken.notify()
        if self._waiting_senders:
            self._not_full.notify()

    def _wake_all(self) -> None:
        self._not_full.notify_all()
        self._not_empty.notify_all()
        self._taken.notify_all()
