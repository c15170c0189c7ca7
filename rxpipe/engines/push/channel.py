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
:class:`~rxpipe.engines.push.thread_channel.ThreadChannel` across threads. The state and every
operation that never waits are :class:`~rxpipe.engines.push._channel_common.ChannelState`,
shared with it; this module is the waiting strategy.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
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
    "AsyncChannel",
    "BrokenChannelError",
    "ChannelStatistics",
    "ClosedChannelError",
    "EndOfChannel",
    "WouldBlock",
)

T = TypeVar("T")


@final
class AsyncChannel(ChannelState[T, "asyncio.Future[bool]"]):
    """A bounded FIFO between tasks of one event loop; ``buffer=0`` is a rendezvous.

    The fast paths (space or items available) never suspend and allocate nothing but the
    coroutine; :meth:`send_many` and :meth:`receive_batch` move many items per wake-up.
    Waiting parties wait on futures in ``_senders``/``_receivers``; a rendezvous sender on
    ``_handoff``, which resolves to True when its item was taken, False when withdrawn.
    """

    __slots__ = ()

    _senders: deque[asyncio.Future[None]]
    _receivers: deque[asyncio.Future[None]]

    def __init__(self, buffer: int = 0) -> None:
        """Create a channel holding up to ``buffer`` items (0: rendezvous)."""
        super().__init__(buffer)
        self._senders = deque()
        self._receivers = deque()

    # -- sending side -----------------------------------------------------------------------
    async def send(self, item: T) -> None:
        """Send one item, waiting for space (or, for a rendezvous, for a receiver to take it).

        Raises:
            BrokenChannelError: the receiving side closed.
            ClosedChannelError: this channel was closed by the sending side.
        """
        # The fast path of send_nowait, inlined: a call more per item shows on this path.
        buf = self._buf
        if len(buf) < self._fast_cap:
            buf.append(item)
            n = len(buf)
            if n > self._peak:
                self._peak = n
            if self._receivers:
                self._wake(self._receivers, 1)
            return
        await self._send_slow(item)

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
        it = iter(seq)
        while True:
            remaining = self._put_many(it, remaining)
            if not remaining:
                return
            await self._wait_for_space()

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
            if self._senders:
                self._wake(self._senders, 1)
            return item
        await self._wait_for_items()
        return self._take_one()

    async def receive_batch(self, max_n: int) -> list[T]:
        """Receive every item ready now, at most ``max_n`` (at least one: waits for the first).

        Raises the same as :meth:`receive` when nothing is left.
        """
        if max_n < 1:
            check_max_n(max_n)  # raises
        if not self._buf or self._handoff is not None:
            await self._wait_for_items()
        return self._take_batch(max_n)

    def wake_when_receivable(self, fut: asyncio.Future[None]) -> bool:
        """Set ``fut`` once an item can be taken (or the stream ended), taking nothing.

        A stage with work or timers running waits for its input and for them on one future
        (``Work.wait_beside``), with no task for the receive. Returns ``False``, registering
        nothing, if an item can be taken now (or the stream ended: ``receive_nowait`` says how).
        Pair it with :meth:`forget_receiver` once the wait is over.
        """
        try:
            if self._receivable():
                return False
        except Exception:
            return False
        self._receivers.append(fut)
        return True

    def forget_receiver(self, fut: asyncio.Future[None]) -> None:
        """Withdraw a future given to :meth:`wake_when_receivable` (woken or not)."""
        _discard(self._receivers, fut)

    # -- the waiting strategy ---------------------------------------------------------------
    async def _send_slow(self, item: T) -> None:
        await self._wait_for_space()
        self._put(item)
        if self._buffer_size:
            return
        # Rendezvous: the item waits in the slot until a receiver takes it.
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._handoff = fut
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
            self._senders.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.cancelled():
                    _discard(self._senders, fut)
                elif len(buf) < self._cap and self._senders:
                    self._wake(self._senders, 1)  # pass on the wake-up we consumed
                raise

    def _receivable(self) -> bool:
        """Whether an item can be taken now; raises at the end of the stream."""
        h = self._handoff
        if h is not None and h.cancelled():
            # The rendezvous sender was cancelled but has not run yet: its item is not ours.
            self._withdraw_handoff()
        if self._buf:
            return True
        self._check_not_ended()
        return False

    async def _wait_for_items(self) -> None:
        """Return once an item can be taken now (no await between this and the take)."""
        while not self._receivable():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._receivers.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.cancelled():
                    _discard(self._receivers, fut)
                elif self._buf and self._receivers:
                    self._wake(self._receivers, 1)  # pass on the wake-up we consumed
                raise

    def _wake_senders(self, n: int) -> None:
        self._wake(self._senders, n)

    def _wake_receivers(self, n: int) -> int:
        return self._wake(self._receivers, n)

    def _wake_all(self) -> None:
        for waiters in (self._senders, self._receivers):
            self._wake(waiters, len(waiters))

    def _settle(self, handoff: asyncio.Future[bool], taken: bool) -> None:
        if not handoff.done():  # done: cancelled, and _receivable or the sender withdraws it
            handoff.set_result(taken)

    def _blocked(self) -> tuple[int, int]:
        senders = sum(1 for f in self._senders if not f.done())
        if self._handoff is not None and not self._handoff.done():
            senders += 1
        return senders, sum(1 for f in self._receivers if not f.done())

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
