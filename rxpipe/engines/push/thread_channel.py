"""A bounded channel between threads, with the same Go semantics as ``AsyncChannel``.

``ThreadChannel(buffer)`` behaves exactly like
:class:`~rxpipe.engines.push.channel.AsyncChannel` (see that module for the rules on
rendezvous counting, closing either side, and discarded items); only the waiting differs:
operations block the calling thread, and each blocking one takes ``timeout`` (seconds, or
``None`` to wait forever) and raises the builtin :class:`TimeoutError` when it runs out. A
rendezvous ``send`` that times out withdraws its item: a send that raised never sent.

Safe from any number of threads: one lock guards the state, with three conditions on it
(space, items, rendezvous hand-over). Waiters are counted so the fast paths skip ``notify``
when nobody waits. The state and every operation that never waits are
:class:`~rxpipe.engines.push._channel_common.ChannelState`, shared with the asyncio channel
(this class runs them under its lock); this module is the waiting strategy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from time import monotonic
from typing import TypeVar, final

from rxpipe.engines.push._channel_common import (
    SEQUENCES,
    BrokenChannelError,
    ChannelState,
    ChannelStatistics,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
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


@final
class _Handoff:
    """One rendezvous send (one at a time: the slot holds one item).

    ``taken`` is None while pending, True once a receiver took the item, False if withdrawn.
    """

    __slots__ = ("taken",)

    def __init__(self) -> None:
        self.taken: bool | None = None


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


# The lock-free operations of the shared state, which the public ones here run under the lock.
_send_nowait = ChannelState.send_nowait
_send_available = ChannelState.send_available
_receive_nowait = ChannelState.receive_nowait
_receive_available = ChannelState.receive_available
_close_receiving = ChannelState.close_receiving
_statistics = ChannelState.statistics


@final
class ThreadChannel(ChannelState[T, _Handoff]):
    """A bounded FIFO between threads; ``buffer=0`` is a rendezvous.

    Blocking operations take ``timeout: float | None`` and raise :class:`TimeoutError`.
    ``_senders``/``_receivers`` count the threads waiting for space and for items.
    """

    __slots__ = ("_lock", "_not_empty", "_not_full", "_taken")

    _senders: int
    _receivers: int

    def __init__(self, buffer: int = 0) -> None:
        """Create a channel holding up to ``buffer`` items (0: rendezvous)."""
        super().__init__(buffer)
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._taken = threading.Condition(self._lock)
        self._senders = 0  # waiting for space (the hand-over is _handoff)
        self._receivers = 0

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
            if len(buf) < self._fast_cap:  # _put inlined: a call more per item shows here
                buf.append(item)
                n = len(buf)
                if n > self._peak:
                    self._peak = n
                if self._receivers:
                    self._not_empty.notify()
                return
            self._send_slow(item, _deadline(timeout))

    def send_nowait(self, item: T) -> None:
        """As :meth:`ChannelState.send_nowait`: a rendezvous needs a blocked receiver."""
        with self._lock:
            _send_nowait(self, item)

    def send_available(self, items: list[T]) -> None:
        """As :meth:`ChannelState.send_available` (check :meth:`space` first)."""
        with self._lock:
            _send_available(self, items)

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
            while True:
                remaining = self._put_many(it, remaining)
                if not remaining:
                    return
                self._wait_for_space(deadline)

    def close(self) -> None:
        """As :meth:`ChannelState.close`: drain, then :class:`EndOfChannel`; idempotent."""
        with self._lock:
            self._end(None)

    def fail(self, exc: BaseException) -> None:
        """As :meth:`ChannelState.fail`: drain, then ``exc``; the first ending wins."""
        with self._lock:
            self._end(exc)

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
            item = buf.popleft()  # _take_one inlined, as in send
            self._received += 1
            if self._handoff is not None or self._senders:
                self._after_take(1)
            return item

    def receive_nowait(self) -> T:
        """As :meth:`ChannelState.receive_nowait`."""
        with self._lock:
            return _receive_nowait(self)

    def receive_available(self, max_n: int) -> list[T]:
        """As :meth:`ChannelState.receive_available` (maybe no items)."""
        with self._lock:
            return _receive_available(self, max_n)

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
                self._receivers += 1  # a rendezvous sender hands its item over
                try:
                    self._not_empty.wait(left)
                finally:
                    self._receivers -= 1

    def receive_batch(self, max_n: int, timeout: float | None = None) -> list[T]:
        """Receive every item ready now, at most ``max_n`` (at least one: blocks for the first).

        Raises the same as :meth:`receive` when nothing is left.
        """
        if max_n < 1:
            check_max_n(max_n)  # raises
        with self._lock:
            if not self._buf:
                self._wait_for_items(_deadline(timeout))
            return self._take_batch(max_n)

    def close_receiving(self) -> None:
        """As :meth:`ChannelState.close_receiving`: break senders, discard and count."""
        with self._lock:
            _close_receiving(self)

    # -- observation ------------------------------------------------------------------------
    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel's state and counters (taken under the lock)."""
        with self._lock:
            return _statistics(self)

    # -- the waiting strategy (all called with the lock held) ----------------------------------
    def _send_slow(self, item: T, deadline: float | None) -> None:
        self._wait_for_space(deadline)
        self._put(item)
        if self._buffer_size:
            return
        # Rendezvous: the item waits in the slot until a receiver takes it.
        h = _Handoff()
        self._handoff = h
        while h.taken is None:
            try:
                left = _left(deadline)
            except TimeoutError:
                self._withdraw_handoff()  # a send that raised never sent
                raise
            self._taken.wait(left)
        if not h.taken:
            self._check_send_open()  # withdrawn by a close: raise what that side means

    def _wait_for_space(self, deadline: float | None) -> None:
        buf = self._buf
        while True:
            self._check_send_open()
            if len(buf) < self._cap:
                return
            left = _left(deadline)
            self._senders += 1
            try:
                self._not_full.wait(left)
            finally:
                self._senders -= 1

    def _wait_for_items(self, deadline: float | None) -> None:
        while not self._receivable():
            left = _left(deadline)
            self._receivers += 1
            try:
                self._not_empty.wait(left)
            finally:
                self._receivers -= 1

    def _wake_senders(self, n: int) -> None:
        self._not_full.notify(n)

    def _wake_receivers(self, n: int) -> int:
        if not self._receivers:
            return 0
        self._not_empty.notify(n)
        return n

    def _wake_all(self) -> None:
        self._not_full.notify_all()
        self._not_empty.notify_all()
        self._taken.notify_all()

    def _settle(self, handoff: _Handoff, taken: bool) -> None:
        handoff.taken = taken
        self._taken.notify()

    def _blocked(self) -> tuple[int, int]:
        return self._senders + (self._handoff is not None), self._receivers
