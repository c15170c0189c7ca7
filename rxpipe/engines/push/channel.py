"""A bounded asyncio channel with Go semantics: the push engine's backpressure.

``AsyncChannel(buffer)`` lets a sender run ``buffer`` items ahead of its receivers; the next
send waits. ``buffer=0`` is a rendezvous (Go's unbuffered channel): ``send`` returns only once
a receiver took the item.

How items are counted: the item a rendezvous sender is handing over sits in the channel's one
slot while the sender waits, so ``statistics().current`` is 1 then; in every mode
``current <= max(buffer, 1)`` holds at every instant. A sender blocked on a full buffered
channel still holds its item itself (that is the "one item per stage" of the pipeline bound
``sum(B_i) + K``), and it is not counted by the channel.

Ending a channel, trio-style:

- ``close()`` (sending side): receivers drain what is buffered, then get :class:`EndOfChannel`.
- ``fail(exc)`` (sending side): receivers drain, then get ``exc`` raised.
- ``close_receiving()`` (receiving side): senders get :class:`BrokenChannelError`; buffered
  items are discarded and counted (``discarded``) so the engine reports them as lost.

Either side closing wakes every blocked party. A rendezvous item not yet taken is withdrawn
(its sender gets the error, the item counts as never sent), so no item is ever counted twice.

Cancellation: a task cancelled while blocked in ``send`` has not sent its item; one cancelled
in ``receive`` took nothing, and the wake-up it consumed is passed on, so no waiter is stuck.
One race cannot be undone: a receiver took a rendezvous item, then the sender was cancelled
before it resumed. Completion wins there (as in trio): ``send`` returns normally and the
cancellation is re-delivered at the task's next ``await``, so the item is neither lost nor
duplicated. (Caveat: if that cancellation came from an ``asyncio.timeout`` block that ends
right after the ``send``, it arrives after the block.)

One event loop: the channel uses no locks, only futures of the running loop. Use
:class:`~rxpipe.engines.push.thread_channel.ThreadChannel` across threads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from itertools import islice
from typing import Generic, TypeVar, final

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
    "AsyncChannel",
    "BrokenChannelError",
    "ChannelStatistics",
    "ClosedChannelError",
    "EndOfChannel",
    "WouldBlock",
)

T = TypeVar("T")


@final
class AsyncChannel(Generic[T]):
    """A bounded FIFO between tasks of one event loop; ``buffer=0`` is a rendezvous.

    The fast paths (space or items available) never suspend and allocate nothing but the
    coroutine; :meth:`send_many` and :meth:`receive_batch` move many items per wake-up.
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
        "_receive_waiters",
        "_received",
        "_receiving_closed",
        "_send_waiters",
    )

    def __init__(self, buffer: int = 0) -> None:
        """Create a channel holding up to ``buffer`` items (0: rendezvous)."""
        self._buffer_size = check_buffer(buffer)
        self._cap = max(buffer, 1)  # what the deque may hold: one slot for a rendezvous
        # Senders take the fast path while len(buf) < _fast_cap: 0 for a rendezvous (a
        # sender must wait for the taker) and 0 once either side closed (slow path raises).
        self._fast_cap = buffer
        self._buf: deque[T] = deque()
        self._send_waiters: deque[asyncio.Future[None]] = deque()
        self._receive_waiters: deque[asyncio.Future[None]] = deque()
        # Rendezvous only: the future of the sender whose item is in the slot; True when
        # taken, False when withdrawn by a close.
        self._handoff: asyncio.Future[bool] | None = None
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
        return f"<AsyncChannel buffer={self._buffer_size} current={len(self._buf)} {state}>"

    # -- sending side -----------------------------------------------------------------------
    async def send(self, item: T) -> None:
        """Send one item, waiting for space (or, for a rendezvous, for a receiver to take it).

        Raises:
            BrokenChannelError: the receiving side closed.
            ClosedChannelError: this channel was closed by the sending side.
        """
        buf = self._buf
        if len(buf) < self._fast_cap:
            buf.append(item)
            n = len(buf)
            if n > self._peak:
                self._peak = n
            if self._receive_waiters:
                self._wake(self._receive_waiters, 1)
            return
        await self._send_slow(item)

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
            if self._receive_waiters:
                self._wake(self._receive_waiters, 1)
            return
        self._check_send_open()
        if not self._buffer_size and not buf and self._wake(self._receive_waiters, 1):
            buf.append(item)
            if self._peak == 0:
                self._peak = 1
            return
        raise WouldBlock

    async def send_many(self, items: Iterable[T]) -> None:
        """Send items in order, as many per step as the free space allows.

        Never holds more than the buffer allows; on a rendezvous channel each item is handed
        over on its own. ``items`` is read eagerly (all but a list, tuple or range is copied). If
        this raises (broken, closed, cancelled), a prefix of the items was sent and the rest
        was not; ``statistics().sent`` tells how many.
        """
        seq = items if isinstance(items, SEQUENCES) else list(items)
        remaining = len(seq)
        if not remaining:
            if not self._fast_cap:
                self._check_send_open()  # an empty batch still may not go to a closed channel
            return
        if not self._buffer_size:
            for item in seq:
                await self.send(item)
            return
        buf = self._buf
        it = iter(seq)
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
                if self._receive_waiters:
                    self._wake(self._receive_waiters, added)
                if not remaining:
                    return
            await self._wait_for_space()

    def close(self) -> None:
        """End the stream: receivers drain what is buffered, then get :class:`EndOfChannel`.

        Idempotent. Blocked senders (other producers) get :class:`ClosedChannelError`.
        """
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
        if self._closed:
            return
        self._failure = exc
        self.close()

    # -- receiving side ---------------------------------------------------------------------
    async def receive(self) -> T:
        """Receive the next item, waiting for one.

        Raises:
            EndOfChannel: the sending side closed and everything buffered was received.
            BaseException: the exception given to :meth:`fail`, once drained.
            ClosedChannelError: the receiving side closed this channel.
        """
        buf = self._buf
        if buf and self._handoff is None:
            item = buf.popleft()
            self._received += 1
            if self._send_waiters:
                self._wake(self._send_waiters, 1)
            return item
        await self._wait_for_items()
        return self._take_one()

    def receive_nowait(self) -> T:
        """Receive the next item if one is ready, else raise :class:`WouldBlock`.

        Raises :class:`EndOfChannel` (or the failure) once closed and drained.
        """
        if self._receivable():
            return self._take_one()
        raise WouldBlock

    async def receive_batch(self, max_n: int) -> list[T]:
        """Receive every item ready now, at most ``max_n`` (at least one: waits for the first).

        Raises the same as :meth:`receive` when nothing is left.
        """
        if max_n < 1:
            check_max_n(max_n)  # raises
        buf = self._buf
        if not buf or self._handoff is not None:
            await self._wait_for_items()
        if len(buf) <= max_n:
            items = list(buf)
            buf.clear()
        else:
            items = [buf.popleft() for _ in range(max_n)]
        k = len(items)
        self._received += k
        self._after_take(k)
        return items

    def space(self) -> int:
        """How many items ``send_nowait`` would take right now (0: rendezvous, full or closed)."""
        return max(0, self._fast_cap - len(self._buf))

    def send_available(self, items: list[T]) -> None:
        """Append items that fit now, all at once (check :meth:`space` first).

        Raises:
            WouldBlock: they do not all fit (nothing is sent).
            BrokenChannelError, ClosedChannelError: as :meth:`send`.
        """
        buf = self._buf
        if len(buf) + len(items) > self._fast_cap:
            self._check_send_open()
            raise WouldBlock
        buf.extend(items)
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if self._receive_waiters:
            self._wake(self._receive_waiters, len(items))

    def receive_available(self, max_n: int) -> list[T]:
        """Take up to ``max_n`` items that are ready now, without waiting (maybe none).

        Raises what :meth:`receive_nowait` raises once the channel is closed and drained.
        """
        if not self._receivable():
            return []
        if not self._buffer_size:
            return [self._take_one()]  # a rendezvous holds one item
        buf = self._buf
        if len(buf) <= max_n:
            items = list(buf)
            buf.clear()
        else:
            items = [buf.popleft() for _ in range(max_n)]
        k = len(items)
        self._received += k
        self._after_take(k)
        return items

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
        blocked_senders = sum(1 for f in self._send_waiters if not f.done())
        if self._handoff is not None and not self._handoff.done():
            blocked_senders += 1
        return ChannelStatistics(
            current=current,
            peak=self._peak,
            capacity=self._buffer_size,
            blocked_senders=blocked_senders,
            blocked_receivers=sum(1 for f in self._receive_waiters if not f.done()),
            sent=self._received + current + self._discarded,
            received=self._received,
            closed=self._closed,
            receiving_closed=self._receiving_closed,
            discarded=self._discarded,
        )

    # -- internals --------------------------------------------------------------------------
    def _check_send_open(self) -> None:
        if self._closed:
            raise ClosedChannelError("send on a closed channel")
        if self._receiving_closed:
            raise BrokenChannelError("the receiving side closed the channel")

    async def _send_slow(self, item: T) -> None:
        await self._wait_for_space()
        buf = self._buf
        buf.append(item)
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if self._buffer_size:
            if self._receive_waiters:
                self._wake(self._receive_waiters, 1)
            return
        # Rendezvous: the item waits in the slot until a receiver takes it.
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._handoff = fut
        if self._receive_waiters:
            self._wake(self._receive_waiters, 1)
        try:
            taken = await fut
        except asyncio.CancelledError as exc:
            if fut.cancelled():
                # Not taken: withdraw the item (unless a receiver or a close already did).
                if self._handoff is fut:
                    self._withdraw_handoff()
                raise
            if fut.result():
                # Taken, then cancelled before we resumed: the send happened. Report it and
                # re-deliver the cancellation at the next await (completion wins, as in trio).
                _redeliver_cancellation(exc)
                return
            raise
        if not taken:
            self._check_send_open()  # withdrawn by a close: raise what that side means

    async def _wait_for_space(self) -> None:
        """Return once the channel is open and has a free slot (``_cap``)."""
        buf = self._buf
        while True:
            self._check_send_open()
            if len(buf) < self._cap:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._send_waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.cancelled():
                    _discard(self._send_waiters, fut)
                elif len(buf) < self._cap and self._send_waiters:
                    self._wake(self._send_waiters, 1)  # pass on the wake-up we consumed
                raise

    def _receivable(self) -> bool:
        """Whether an item can be taken now; raises at the end of the stream."""
        h = self._handoff
        if h is not None and h.cancelled():
            # The rendezvous sender was cancelled but has not run yet: its item is not ours.
            self._withdraw_handoff()
        if self._buf:
            return True
        if self._receiving_closed:
            raise ClosedChannelError("receive on a channel whose receiving side was closed")
        if self._closed:
            if self._failure is not None:
                raise self._failure
            raise EndOfChannel
        return False

    async def _wait_for_items(self) -> None:
        """Return once an item can be taken now (no await between this and the take)."""
        while not self._receivable():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._receive_waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.cancelled():
                    _discard(self._receive_waiters, fut)
                elif self._buf and self._receive_waiters:
                    self._wake(self._receive_waiters, 1)  # pass on the wake-up we consumed
                raise

    def _take_one(self) -> T:
        item = self._buf.popleft()
        self._received += 1
        self._after_take(1)
        return item

    def _after_take(self, k: int) -> None:
        """``k`` items left the buffer: complete a rendezvous hand-over, wake senders."""
        h = self._handoff
        if h is not None:
            self._handoff = None
            h.set_result(True)  # not cancelled: _receivable withdrew a cancelled one
        if self._send_waiters:
            self._wake(self._send_waiters, k)

    def _withdraw_handoff(self) -> None:
        """Take back the item of a rendezvous sender that will not complete."""
        h = self._handoff
        if h is None:
            return
        self._handoff = None
        self._buf.pop()  # the slot holds exactly that sender's item
        if not h.done():
            h.set_result(False)
        if self._send_waiters:
            self._wake(self._send_waiters, 1)

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]], n: int) -> int:
        """Wake up to ``n`` waiters, oldest first; returns how many were woken."""
        woken = 0
        while woken < n and waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                woken += 1
        return woken

    def _wake_all(self) -> None:
        for waiters in (self._send_waiters, self._receive_waiters):
            self._wake(waiters, len(waiters))


def _discard(waiters: deque[asyncio.Future[None]], fut: asyncio.Future[None]) -> None:
    try:
        waiters.remove(fut)
    except ValueError:
        pass  # already popped by a waker that skipped it


def _redeliver_cancellation(exc: asyncio.CancelledError) -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # keep cancelling() unchanged, so asyncio.timeout still recognises it
        task.cancel(exc.args[0] if exc.args else None)
