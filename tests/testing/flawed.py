"""A publisher of ``0 .. n-1`` with switchable flaws, each breaking one rule.

Without flaws it is correct (a test checks that), so a check that fails on a flawed variant
fails because of that flaw and nothing else.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from rxpipe.spec import (
    MAX_DEMAND,
    DrainLoop,
    Subscriber,
    add_demand,
    check_request,
    report_subscriber_error,
)

FLAWS = frozenset(
    {
        "accept_none_subscriber",  # 1.9: subscribe(None) returns normally
        "accept_same_subscriber",  # 1.10 (rxpipe): a second subscribe of one subscriber is served
        "complete_before_subscribe",  # 1.9: an empty stream completes before on_subscribe
        "complete_twice",  # 1.7: on_complete is signalled twice
        "error_before_subscribe",  # 1.9: a failed publisher signals on_error first
        "fail",  # not a flaw: fails at once, for make_failed
        "ignore_cancel",  # 1.8, 3.6, 3.12: cancel() drops the subscriber but not the stream
        "ignore_demand",  # 1.1: any request delivers everything
        "keep_subscriber",  # 3.13: the publisher remembers every subscriber
        "lenient_request",  # 3.9 (rxpipe): True, 1.5 and "3" count as demand
        "lock_while_signalling",  # 3.2: a plain Lock held around signals deadlocks re-entry
        "never_complete",  # 1.5: the end of the stream is never signalled
        "overflow_error",  # 3.17: demand above MAX_DEMAND is an error
        "raise_on_bad_request",  # 3.9: request(n <= 0) raises instead of signalling
        "recursive",  # 3.3: request -> on_next -> request recursion, no drain loop
        "silent_subscriber_errors",  # 2.13 (rxpipe): a raising on_next is not logged
    }
)


class Boom(Exception):
    """The failure of a publisher made with ``fail=True``."""


class FlawedPublisher:
    """A cold publisher of ``range(n)``; keyword flags switch on the flaws in :data:`FLAWS`."""

    def __init__(self, n: int, **flaws: bool) -> None:
        unknown = set(flaws) - FLAWS
        if unknown:
            raise ValueError(f"unknown flaws: {sorted(unknown)}")
        self.n = n
        self.flaws = frozenset(name for name, on in flaws.items() if on)
        self.lock = threading.Lock()
        self.active: set[int] = set()
        self.kept: list[Subscriber[Any]] = []
        self.subscriptions: list[_FlawedSubscription] = []  # lock_while_signalling only

    def __repr__(self) -> str:
        return f"FlawedPublisher({self.n}, {sorted(self.flaws)})"

    def has(self, flaw: str) -> bool:
        return flaw in self.flaws

    def subscribe(self, subscriber: Subscriber[Any] | None) -> None:
        if subscriber is None:
            if self.has("accept_none_subscriber"):
                return
            raise TypeError("subscribe(None)")
        key = id(subscriber)
        with self.lock:
            duplicate = key in self.active and not self.has("accept_same_subscriber")
            self.active.add(key)
            if self.has("keep_subscriber"):
                self.kept.append(subscriber)
        if duplicate:
            subscriber.on_subscribe(_Nothing())
            subscriber.on_error(ValueError("already subscribed"))
            return
        subscription = _FlawedSubscription(self, subscriber, key)
        if self.has("lock_while_signalling"):
            self.subscriptions.append(subscription)
        if self.has("recursive") or self.has("lock_while_signalling"):
            subscription.subscribe_directly()
        else:
            subscription.loop.schedule()


class _Nothing:
    def request(self, n: int) -> None:
        pass

    def cancel(self) -> None:
        pass


class _FlawedSubscription:
    def __init__(self, publisher: FlawedPublisher, subscriber: Subscriber[Any], key: int) -> None:
        self.publisher: FlawedPublisher | None = publisher
        self.has = publisher.has
        self.n = publisher.n
        self.key = key
        self.strong: Subscriber[Any] | None = subscriber
        self.weak = weakref.ref(subscriber)
        self.lock = threading.Lock()
        self.big_lock = threading.Lock()  # lock_while_signalling only
        self.loop = DrainLoop(self.drain)
        self.position = 0
        self.demand = 0
        self.requested = False
        self.announced = False
        self.cancelled = False
        self.done = False
        self.error: BaseException | None = Boom("failed at once") if self.has("fail") else None

    def target(self) -> Subscriber[Any] | None:
        if self.has("ignore_cancel"):
            return self.weak()  # cancel dropped the strong reference, not the stream
        return self.strong

    # -- Subscription ------------------------------------------------------------------------

    def request(self, n: int) -> None:
        error = check_request(n)
        if self.has("lenient_request") and error is not None:
            try:
                value = int(n)
            except (TypeError, ValueError):
                value = 0
            if value > 0:
                n, error = value, None
        with self.lock:
            over = self.cancelled and not self.has("ignore_cancel")
            if over or self.done:
                return
            if error is not None:
                if self.has("raise_on_bad_request"):
                    raise error
                self.error = self.error or error
            elif self.has("overflow_error") and self.demand + n > MAX_DEMAND:
                self.error = OverflowError("demand overflow")
            else:
                self.demand = add_demand(self.demand, n)
                self.requested = True
        if self.has("recursive"):
            self.emit_recursively()
        elif self.has("lock_while_signalling"):
            with self.big_lock:
                self.emit_recursively()
        else:
            self.loop.schedule()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
        if self.has("ignore_cancel"):
            self.strong = None
            return
        self.loop.schedule()

    # -- the correct path: a drain loop --------------------------------------------------------

    def drain(self) -> None:
        subscriber = self.target()
        if subscriber is None:
            return
        if not self.announced:
            self.announced = True
            if self.has("error_before_subscribe") and self.error is not None:
                self.finish()
                subscriber.on_error(self.error)
                subscriber.on_subscribe(self)
                return
            if self.has("complete_before_subscribe") and self.n == 0:
                self.finish()
                subscriber.on_complete()
                subscriber.on_subscribe(self)
                return
            if not self.call(subscriber, "on_subscribe", self):
                return
        self.emit(subscriber)

    def emit(self, subscriber: Subscriber[Any]) -> None:
        while True:
            with self.lock:
                if self.done:
                    return
                if self.cancelled and not self.has("ignore_cancel"):
                    action = "finish"
                elif self.error is not None:
                    action = "error"
                elif self.position >= self.n:
                    action = "wait" if self.has("never_complete") else "complete"
                elif self.demand > 0 or (self.has("ignore_demand") and self.requested):
                    action = "next"
                    item = self.position
                    self.position += 1
                    if 0 < self.demand < MAX_DEMAND:
                        self.demand -= 1
                else:
                    action = "wait"
            if action == "wait":
                return
            if action == "finish":
                self.finish()
                return
            if action == "error":
                error = self.error
                self.finish()
                self.call(subscriber, "on_error", error)
                return
            if action == "complete":
                self.finish()
                self.call(subscriber, "on_complete")
                if self.has("complete_twice"):
                    self.call(subscriber, "on_complete")
                return
            if not self.call(subscriber, "on_next", item):
                return

    def call(self, subscriber: Subscriber[Any], method: str, *args: object) -> bool:
        try:
            getattr(subscriber, method)(*args)
        except Exception as exc:
            self.finish()
            if not self.has("silent_subscriber_errors"):
                report_subscriber_error(subscriber, method, exc)
            return False
        return True

    def finish(self) -> None:
        with self.lock:
            self.done = True
            self.cancelled = True
        self.strong = None
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            with publisher.lock:
                publisher.active.discard(self.key)

    # -- the flawed paths: no drain loop -----------------------------------------------------

    def subscribe_directly(self) -> None:
        subscriber = self.target()
        assert subscriber is not None
        self.announced = True
        if self.has("lock_while_signalling"):
            with self.big_lock:
                self.call(subscriber, "on_subscribe", self)
        else:
            self.call(subscriber, "on_subscribe", self)
        if self.error is not None:
            self.emit_recursively()

    def emit_recursively(self) -> None:
        subscriber = self.target()
        if subscriber is not None:
            self.emit(subscriber)


def unblock(publishers: list[FlawedPublisher]) -> None:
    """Release the locks a ``lock_while_signalling`` publisher deadlocked on.

    The thread stuck on its own lock then finishes (with a RuntimeError when it releases the
    lock a second time, which nobody sees), so no thread outlives the test.
    """
    for publisher in publishers:
        for subscription in publisher.subscriptions:
            if subscription.big_lock.locked():
                subscription.big_lock.release()
