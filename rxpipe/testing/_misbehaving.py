"""A publisher that breaks the rules on purpose, for testing subscribers' defences."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar, final

from rxpipe.spec import MAX_DEMAND, Subscriber, add_demand, check_request

__all__ = ("MisbehavingPublisher",)

T = TypeVar("T")


@final
class MisbehavingPublisher(Generic[T]):
    """A publisher that breaks the rules on purpose, for testing subscribers' defences.

    Without flags it is a plain synchronous publisher of ``items``; a ``request`` made while
    it is emitting only adds demand (no recursion). Each flag breaks one rule:

    * ``ignore_demand``: every ``request`` delivers all remaining items (rule 1.1);
    * ``signal_after_cancel``: ``cancel()`` is ignored (rules 1.8, 3.6, 3.12);
    * ``signal_after_terminal``: ``on_complete`` is signalled twice (rule 1.7);
    * ``threads=k`` with ``k > 1``: each request's items are delivered by ``k`` threads at
      once (rule 1.3). ``request`` joins those threads before it returns, so none outlives it.
      Exceptions raised by the subscriber on those threads are re-raised from ``request``.
    """

    __slots__ = (
        "__weakref__",
        "_ignore_demand",
        "_items",
        "_signal_after_cancel",
        "_signal_twice",
        "_threads",
    )

    def __init__(
        self,
        items: Iterable[T],
        *,
        ignore_demand: bool = False,
        signal_after_cancel: bool = False,
        signal_after_terminal: bool = False,
        threads: int = 1,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self._items = tuple(items)
        self._ignore_demand = ignore_demand
        self._signal_after_cancel = signal_after_cancel
        self._signal_twice = signal_after_terminal
        self._threads = threads

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        """Start a new, independent pass over the items."""
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe() argument must not be None")
        subscriber.on_subscribe(_MisbehavingSubscription(self, subscriber))


@final
class _MisbehavingSubscription(Generic[T]):
    __slots__ = (
        "__weakref__",
        "_cancelled",
        "_demand",
        "_done",
        "_emitting",
        "_lock",
        "_owner",
        "_position",
        "_subscriber",
    )

    def __init__(self, owner: MisbehavingPublisher[T], subscriber: Subscriber[T]) -> None:
        self._owner = owner
        self._subscriber = subscriber
        self._lock = threading.Lock()
        self._position = 0
        self._demand = 0
        self._cancelled = False
        self._done = False
        self._emitting = False

    def request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._done or self._stopped():
                return
            if error is not None:
                self._done = True
            else:
                self._demand = add_demand(self._demand, n)
                if self._emitting:
                    return  # the running loop below picks the demand up: no recursion
                self._emitting = True
        if error is not None:
            self._subscriber.on_error(error)
            return
        self._emit()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True

    def _stopped(self) -> bool:
        return self._cancelled and not self._owner._signal_after_cancel

    def _emit(self) -> None:
        owner = self._owner
        while True:
            with self._lock:
                remaining = len(owner._items) - self._position
                count = remaining if owner._ignore_demand else min(self._demand, remaining)
                if self._demand < MAX_DEMAND:
                    self._demand = max(0, self._demand - count)
                batch = owner._items[self._position : self._position + count]
                self._position += count
                finished = self._position == len(owner._items)
                if self._stopped() or (not batch and not finished):
                    self._emitting = False
                    return
                self._done = finished
            if owner._threads > 1 and len(batch) > 1:
                self._emit_concurrently(batch)
            else:
                for item in batch:
                    if self._stopped():
                        break
                    self._subscriber.on_next(item)
            if finished:
                if not self._stopped():
                    self._subscriber.on_complete()
                    if owner._signal_twice:
                        self._subscriber.on_complete()
                return

    def _emit_concurrently(self, batch: tuple[T, ...]) -> None:
        count = min(self._owner._threads, len(batch))
        barrier = threading.Barrier(count)
        errors: list[BaseException] = []

        def emit(share: tuple[T, ...]) -> None:
            try:
                barrier.wait()
                for item in share:
                    self._subscriber.on_next(item)
            except BaseException as exc:
                errors.append(exc)

        workers = [
            threading.Thread(target=emit, args=(batch[i::count],), name=f"misbehaving-{i}")
            for i in range(count)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]
