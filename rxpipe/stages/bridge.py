"""The subscriber edge of ``Flow.from_publisher``: a Reactive Streams publisher as an (async)
iterator, on any engine (it needs only a lock, and an event loop when read asynchronously).

The bridge requests ``prefetch`` items up front and tops the window up each time 75% of it
was consumed (as Reactor and RxJava do), so a fast publisher is never asked one item at a
time. It never buffers more than it requested: a publisher that signals beyond the demand
fails the flow with :class:`~rxpipe.errors.MissingBackpressureError`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, final

from rxpipe._core.loops import ensure_no_running_loop, threadsafe_setter
from rxpipe.errors import MissingBackpressureError
from rxpipe.spec import Publisher, Subscription

__all__ = ("PublisherBridge",)

_NOT_YET: Final = object()


@final
class PublisherBridge:
    """Subscribes to a publisher and hands its items to one consumer, in order."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_cond",
        "_done",
        "_error",
        "_label",
        "_limit",
        "_outstanding",
        "_prefetch",
        "_publisher",
        "_subscription",
        "_wake",
    )

    def __init__(self, publisher: Publisher[Any], prefetch: int, label: str) -> None:
        self._publisher = publisher
        self._prefetch = prefetch
        self._limit = max(1, prefetch - prefetch // 4)  # top up after 75% was consumed
        self._label = label
        self._buffer: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._done = False
        self._error: BaseException | None = None
        self._outstanding = 0
        self._subscription: Subscription | None = None
        self._wake: Any = None  # a callable that wakes an async consumer, when there is one

    # -- Subscriber side (any thread) --------------------------------------------------------
    def on_subscribe(self, subscription: Subscription) -> None:
        if subscription is None:
            raise TypeError("rule 2.13: on_subscribe(None)")
        with self._cond:
            if self._subscription is not None or self._done:
                second = True
            else:
                second = False
                self._subscription = subscription
                self._outstanding = self._prefetch
        if second:
            subscription.cancel()  # rule 2.5: cancel a second subscription
            return
        subscription.request(self._prefetch)

    def on_next(self, item: Any) -> None:
        with self._cond:
            if self._done:
                return  # rule 2.8: signals in flight after cancel are ignored
            if self._outstanding <= 0:
                self._fail_locked(
                    MissingBackpressureError(
                        f"stage {self._label!r}: the publisher signalled on_next beyond the "
                        f"requested demand (prefetch={self._prefetch}); rule 1.1"
                    )
                )
                subscription = self._subscription
            else:
                self._outstanding -= 1
                self._buffer.append(item)
                self._cond.notify()
                subscription = None
        if subscription is not None:
            subscription.cancel()
        self._notify_async()

    def on_error(self, error: BaseException) -> None:
        if error is None:
            raise TypeError("rule 2.13: on_error(None)")
        with self._cond:
            if not self._done:
                self._fail_locked(error)
        self._notify_async()

    def on_complete(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._notify_async()

    def _fail_locked(self, error: BaseException) -> None:
        self._error = error
        self._done = True
        self._cond.notify_all()

    def _notify_async(self) -> None:
        wake = self._wake
        if wake is not None:
            wake()

    # -- consumer side -----------------------------------------------------------------------
    def _take(self) -> Any:
        """An item from the buffer, or ``_NOT_YET``; raises the error / StopIteration at the end.

        Call with the lock held.
        """
        if self._buffer:
            return self._buffer.popleft()
        if self._done:
            if self._error is not None:
                raise self._error
            raise StopIteration
        return _NOT_YET

    def _consumed(self, consumed: int) -> int:
        """Top up demand once ``limit`` items were consumed since the last request."""
        if consumed < self._limit:
            return consumed
        subscription = self._subscription
        if subscription is not None and not self._done:
            with self._cond:
                self._outstanding += consumed
            subscription.request(consumed)
        return 0

    def _cancel(self) -> None:
        with self._cond:
            already = self._done
            self._done = True
            subscription = self._subscription
            self._subscription = None
        if subscription is not None and not already:
            subscription.cancel()

    def iterate(self) -> Iterator[Any]:
        """The items, blocking the calling thread while waiting for the publisher."""
        self._publisher.subscribe(self)
        consumed = 0
        try:
            while True:
                with self._cond:
                    item = self._take()
                    if item is _NOT_YET:
                        ensure_no_running_loop("waiting for a publisher's items in a sync terminal")
                        while item is _NOT_YET:
                            self._cond.wait()
                            item = self._take()
                consumed = self._consumed(consumed + 1)
                yield item
        except StopIteration:
            return
        finally:
            self._cancel()

    async def aiterate(self) -> AsyncIterator[Any]:
        """The items, awaiting the publisher without blocking the event loop."""
        ready = asyncio.Event()
        wake = threadsafe_setter(ready)

        self._wake = wake
        self._publisher.subscribe(self)
        consumed = 0
        try:
            while True:
                with self._cond:
                    ready.clear()
                    item = self._take()
                if item is _NOT_YET:
                    await ready.wait()
                    continue
                consumed = self._consumed(consumed + 1)
                yield item
        except StopIteration:
            return
        finally:
            self._wake = None
            self._cancel()
