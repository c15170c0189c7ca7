"""Small, correct reference implementations: what the conformance kit tests itself against.

They are deliberately plain (one lock, one :class:`~rxpipe.spec.DrainLoop` each) so that they
can be read as worked examples of the rules, and they are public so that third parties can
compare their own publishers with them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Final, Generic, TypeVar, final

from rxpipe.errors import MissingBackpressureError
from rxpipe.spec import (
    MAX_DEMAND,
    DrainLoop,
    Subscriber,
    Subscription,
    add_demand,
    check_request,
    report_subscriber_error,
)

__all__ = ("IdentityProcessor", "IterablePublisher", "ListSubscriber")

T = TypeVar("T")

#: The identity processor's default buffer, the TCK's ``TEST_BUFFER_SIZE``.
DEFAULT_BUFFER_SIZE: Final = 16


def _already_subscribed(subscriber: object) -> ValueError:
    return ValueError(
        f"rules 1.10/2.12: {subscriber!r} is already subscribed to this publisher; "
        "subscribe a new subscriber instead"
    )


@final
class _Rejected:
    """The subscription handed to a rejected subscriber: it ignores everything."""

    __slots__ = ("__weakref__",)

    def request(self, n: int) -> None:
        """Nothing will be delivered on a rejected subscription."""

    def cancel(self) -> None:
        """Already over."""


def _reject(subscriber: Subscriber[T], error: BaseException) -> None:
    """Rule 1.9: a rejection is ``on_subscribe`` followed by ``on_error``; never a raise."""
    try:
        subscriber.on_subscribe(_Rejected())
        subscriber.on_error(error)
    except Exception as exc:
        report_subscriber_error(subscriber, "on_subscribe/on_error", exc)


@final
class IterablePublisher(Generic[T]):
    """A cold publisher: each ``subscribe`` iterates ``factory()`` anew.

    Demand is counted with :func:`~rxpipe.spec.add_demand` (rule 3.17), ``request`` validates
    with :func:`~rxpipe.spec.check_request` and signals instead of raising (3.9, 3.16), and
    every signal goes through a :class:`~rxpipe.spec.DrainLoop` (serial signals, rule 1.3;
    no recursion, rule 3.3). ``on_subscribe`` also runs inside the loop, so a request made in
    ``on_subscribe`` is served after it returns. An exception from ``factory`` or from the
    iterator becomes ``on_error`` (rule 1.4). The iterator is pulled only when there is demand;
    it is closed on cancel, and the subscriber reference is dropped on cancel and after the
    terminal signal (rule 3.13).

    Example::

        IterablePublisher(lambda: range(3))
    """

    __slots__ = ("__weakref__", "_active", "_factory", "_lock")

    def __init__(self, factory: Callable[[], Iterable[T]]) -> None:
        if not callable(factory):
            raise TypeError(
                f"IterablePublisher needs a factory (e.g. lambda: items), got {factory!r}"
            )
        self._factory = factory
        self._lock = threading.Lock()
        # ids of subscribers with a live subscription; a live subscription holds its subscriber,
        # so an id cannot be reused while it is in here, and no strong reference is kept.
        self._active: set[int] = set()

    def __repr__(self) -> str:
        return f"IterablePublisher({self._factory!r})"

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        """Start a new pass for ``subscriber`` (rule 1.9: ``None`` raises ``TypeError``)."""
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe() argument must not be None")
        key = id(subscriber)
        with self._lock:
            duplicate = key in self._active
            if not duplicate:
                self._active.add(key)
        if duplicate:
            _reject(subscriber, _already_subscribed(subscriber))
            return
        _IterableSubscription(self, subscriber, key).start()

    def _release(self, key: int) -> None:
        with self._lock:
            self._active.discard(key)


@final
class _IterableSubscription(Generic[T]):
    __slots__ = (
        "__weakref__",
        "_announced",
        "_cancelled",
        "_demand",
        "_error",
        "_iterator",
        "_key",
        "_lock",
        "_loop",
        "_publisher",
        "_subscriber",
    )

    def __init__(
        self, publisher: IterablePublisher[T], subscriber: Subscriber[T], key: int
    ) -> None:
        self._publisher: IterablePublisher[T] | None = publisher
        self._subscriber: Subscriber[T] | None = subscriber
        self._key = key
        self._lock = threading.Lock()
        self._loop = DrainLoop(self._drain)
        self._iterator: Iterator[T] | None = None
        self._demand = 0
        self._announced = False
        self._cancelled = False
        self._error: BaseException | None = None

    def start(self) -> None:
        publisher = self._publisher
        assert publisher is not None
        try:
            self._iterator = iter(publisher._factory())
        except Exception as exc:
            self._error = exc  # rule 1.4: signalled right after on_subscribe
        self._loop.schedule()

    def request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._cancelled:
                return  # rule 3.6: a no-op after cancel, even for n <= 0
            if error is not None:
                if self._error is None:
                    self._error = error  # rule 3.9: signalled by the drain loop, never raised
            else:
                self._demand = add_demand(self._demand, n)
        self._loop.schedule()

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return  # rule 3.7
            self._cancelled = True
        self._loop.schedule()  # the loop closes the iterator and drops the references

    def _drain(self) -> None:
        subscriber = self._subscriber
        if subscriber is None:
            return  # finished earlier
        if not self._announced:
            self._announced = True
            if not self._call(subscriber, partial(subscriber.on_subscribe, self), "on_subscribe"):
                return
        while True:
            with self._lock:
                cancelled = self._cancelled
                error = self._error
                has_demand = self._demand > 0
            if cancelled:
                self._finish()
                return
            if error is not None:
                self._finish()
                self._call(subscriber, partial(subscriber.on_error, error), "on_error")
                return
            if not has_demand:
                return
            iterator = self._iterator
            assert iterator is not None
            try:
                item = next(iterator)
            except StopIteration:
                self._finish()
                self._call(subscriber, subscriber.on_complete, "on_complete")
                return
            except Exception as exc:
                self._finish()
                self._call(subscriber, partial(subscriber.on_error, exc), "on_error")
                return
            with self._lock:
                if self._demand < MAX_DEMAND:
                    self._demand -= 1
            if not self._call(subscriber, partial(subscriber.on_next, item), "on_next"):
                return

    def _call(self, subscriber: object, signal: Callable[[], None], name: str) -> bool:
        """Deliver one signal; a subscriber that raises is cancelled and logged (rule 2.13)."""
        try:
            signal()
        except Exception as exc:
            self._finish()
            report_subscriber_error(subscriber, name, exc)
            return False
        return True

    def _finish(self) -> None:
        """Cancelled or terminated: close the iterator, drop every reference (rule 3.13)."""
        with self._lock:
            self._cancelled = True
        iterator, self._iterator = self._iterator, None
        self._subscriber = None
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher._release(self._key)
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # a generator's cleanup failed; nobody is left to tell
                report_subscriber_error(iterator, "close", exc)


@final
class IdentityProcessor(Generic[T]):
    """A pass-through processor with a bounded buffer, for one downstream subscriber.

    Downstream demand is passed upstream, capped by the buffer (``buffer_size`` items), so the
    buffer can never overflow unless the upstream breaks rule 1.1, which is then signalled
    downstream as :class:`~rxpipe.errors.MissingBackpressureError`. A downstream ``cancel``
    is passed upstream (rule 2.6); an upstream error is passed downstream at once, without
    waiting for demand and dropping what is buffered (rule 4.2). A second subscriber is
    rejected with ``on_subscribe`` + ``on_error`` (it is unicast).
    """

    __slots__ = (
        "__weakref__",
        "_announced",
        "_buffer",
        "_cancel_pending",
        "_capacity",
        "_closed",
        "_completed",
        "_demand",
        "_done",
        "_downstream",
        "_downstream_claimed",
        "_lock",
        "_loop",
        "_request_error",
        "_upstream",
        "_upstream_error",
        "_upstream_outstanding",
    )

    def __init__(self, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive int, got {buffer_size!r}")
        self._capacity = buffer_size
        self._lock = threading.Lock()
        self._loop = DrainLoop(self._drain)
        self._buffer: deque[T] = deque()
        # upstream side
        self._upstream: Subscription | None = None
        self._upstream_outstanding = 0
        self._closed = False  # no upstream signal is wanted any more (terminated or cancelled)
        self._completed = False  # the upstream signalled on_complete
        self._upstream_error: BaseException | None = None
        self._cancel_pending = False  # upstream.cancel() is still to be called
        # downstream side
        self._downstream: Subscriber[T] | None = None
        self._downstream_claimed = False
        self._announced = False
        self._demand = 0
        self._request_error: ValueError | None = None
        self._done = False  # downstream is over: cancelled or terminal signal sent

    # -- upstream side (Subscriber) -----------------------------------------------------------

    def on_subscribe(self, subscription: Subscription) -> None:
        """Take the first upstream subscription; cancel any later one (rule 2.5)."""
        if subscription is None:
            raise TypeError("rule 2.13: on_subscribe() argument must not be None")
        with self._lock:
            duplicate = self._upstream is not None
            if not duplicate:
                self._upstream = subscription
        if duplicate:
            subscription.cancel()
            return
        self._loop.schedule()

    def on_next(self, item: T) -> None:
        """Buffer one element; more than was requested is the upstream's rule 1.1 breach."""
        with self._lock:
            if self._closed:
                return  # rule 2.8: late elements after a cancel are ignored
            if self._upstream_outstanding == 0:
                self._closed = True
                self._cancel_pending = True
                self._upstream_error = MissingBackpressureError(
                    "rule 1.1: the upstream signalled on_next beyond the requested demand"
                )
            else:
                self._upstream_outstanding -= 1
                self._buffer.append(item)
        self._loop.schedule()

    def on_error(self, error: BaseException) -> None:
        """Pass the error downstream at once (rule 4.2)."""
        if error is None:
            raise TypeError("rule 2.13: on_error() argument must not be None")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._upstream_error = error
        self._loop.schedule()

    def on_complete(self) -> None:
        """Complete downstream once the buffer is drained."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._completed = True
        self._loop.schedule()

    # -- downstream side (Publisher) ----------------------------------------------------------

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        """Accept the one downstream subscriber; reject any other with ``on_error``."""
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe() argument must not be None")
        with self._lock:
            taken = self._downstream_claimed
            if not taken:
                self._downstream_claimed = True
                self._downstream = subscriber
        if taken:
            _reject(
                subscriber,
                ValueError(f"rule 1.11: {type(self).__name__} supports a single subscriber"),
            )
            return
        self._loop.schedule()

    def _request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._done:
                return  # rule 3.6
            if error is not None:
                if self._request_error is None:
                    self._request_error = error
            else:
                self._demand = add_demand(self._demand, n)
        self._loop.schedule()

    def _cancel(self) -> None:
        with self._lock:
            if self._done:
                return  # rule 3.7
            self._done = True
            self._stop_upstream_locked()
        self._loop.schedule()

    def _stop_upstream_locked(self) -> None:
        if not self._closed:
            self._closed = True
            self._cancel_pending = True  # rule 2.6: downstream is gone, so is our interest

    # -- the drain loop: the only place that signals -------------------------------------------

    def _drain(self) -> None:
        while True:
            action = self._next_action()
            if action is None:
                return
            action()

    def _next_action(self) -> Callable[[], None] | None:
        """Decide, under the lock, the one thing to do next; it is done outside the lock."""
        with self._lock:
            upstream = self._upstream
            if self._cancel_pending and upstream is not None:
                self._cancel_pending = False
                self._buffer.clear()
                return upstream.cancel
            downstream = self._downstream
            if self._done:
                self._buffer.clear()
                self._downstream = None  # rule 3.13
                return None
            if downstream is None:
                return None
            if not self._announced:
                self._announced = True
                return lambda: self._signal(downstream.on_subscribe, _Downstream(self))
            error = self._request_error or self._upstream_error
            if error is not None:
                self._done = True
                self._stop_upstream_locked()
                return lambda: self._signal(downstream.on_error, error)
            if self._buffer and self._demand > 0:
                item = self._buffer.popleft()
                if self._demand < MAX_DEMAND:
                    self._demand -= 1
                return lambda: self._signal(downstream.on_next, item)
            if self._completed:
                if self._buffer:
                    return None  # waiting for downstream demand
                self._done = True
                return lambda: self._signal(downstream.on_complete)
            if self._closed or upstream is None:
                return None
            in_flight = len(self._buffer) + self._upstream_outstanding
            wanted = min(self._demand, self._capacity) - in_flight
            if wanted <= 0:
                return None
            self._upstream_outstanding += wanted
            return lambda: upstream.request(wanted)

    def _signal(self, method: Callable[..., None], *args: object) -> None:
        """Deliver one downstream signal; a raising subscriber is cancelled and logged."""
        try:
            method(*args)
        except Exception as exc:
            with self._lock:
                subscriber = self._downstream
                self._done = True
                self._stop_upstream_locked()
            report_subscriber_error(subscriber, getattr(method, "__name__", "signal"), exc)


@final
class _Downstream(Generic[T]):
    """The subscription the identity processor hands its downstream subscriber."""

    __slots__ = ("__weakref__", "_processor")

    def __init__(self, processor: IdentityProcessor[T]) -> None:
        self._processor = processor

    def request(self, n: int) -> None:
        self._processor._request(n)

    def cancel(self) -> None:
        self._processor._cancel()


@final
class ListSubscriber(Generic[T]):
    """A subscriber that collects every element into :attr:`items`, requesting in batches.

    It requests ``batch`` elements up front and again whenever the previous batch has
    arrived; it cancels any second subscription (rule 2.5) and refuses ``None`` for the
    subscription or the error (rule 2.13). Wait for the end with :meth:`wait`.
    """

    __slots__ = ("__weakref__", "_batch", "_done", "_left", "_subscription", "error", "items")

    def __init__(self, batch: int = 16) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        self._batch = batch
        self._left = 0
        self._subscription: Subscription | None = None
        self._done = threading.Event()
        self.items: list[T] = []
        self.error: BaseException | None = None

    def on_subscribe(self, subscription: Subscription) -> None:
        """Keep the first subscription and request the first batch."""
        if subscription is None:
            raise TypeError("rule 2.13: on_subscribe() argument must not be None")
        if self._subscription is not None:
            subscription.cancel()  # rule 2.5
            return
        self._subscription = subscription
        self._left = self._batch
        subscription.request(self._batch)  # last, after our state is ready (rule 2.1 advice)

    def on_next(self, item: T) -> None:
        """Collect; request the next batch once this one has arrived."""
        self.items.append(item)
        self._left -= 1
        if self._left == 0 and self._subscription is not None:
            self._left = self._batch
            self._subscription.request(self._batch)

    def on_error(self, error: BaseException) -> None:
        """Remember the error and finish."""
        if error is None:
            raise TypeError("rule 2.13: on_error() argument must not be None")
        self.error = error
        self._subscription = None
        self._done.set()

    def on_complete(self) -> None:
        """Finish."""
        self._subscription = None
        self._done.set()

    def wait(self, timeout: float | None = None) -> list[T]:
        """Wait for the end of the stream; return the items or raise the stream's error."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the stream did not end within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.items
