"""A correct Reactive Streams publisher as a third party would write it, without rxpipe.

It obeys the Reactive Streams rules, and does three things rxpipe's own publishers do not
(none of them breaks a rule): it logs a subscriber's exceptions on its own logger, not on
``"rxpipe"``; it serves a second ``subscribe`` of the same subscriber as a new subscription
(rule 1.10 constrains callers, not publishers); and, ``bool`` being an ``int`` in Python, it
counts ``request(True)`` as a request of 1. Its rule 3.9 error does not name the rule.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

LOGGER = "thirdparty.publisher"
MAX_DEMAND = 2**63 - 1

_log = logging.getLogger(LOGGER)


class Boom(Exception):
    """The failure of a publisher made with ``fail=True``."""


class RangePublisher:
    """A cold publisher of ``range(n)``; ``fail=True``: one that fails at once."""

    def __init__(self, n: int, *, fail: bool = False) -> None:
        self.n = n
        self.fail = fail

    def subscribe(self, subscriber: Any) -> None:
        if subscriber is None:
            raise TypeError("subscribe(None)")
        _Subscription(subscriber, self.n, self.fail).start()


class _Subscription:
    """Demand counting and a trampolined drain loop: one thread signals at a time."""

    def __init__(self, subscriber: Any, n: int, fail: bool) -> None:
        self._lock = threading.Lock()
        self._subscriber: Any = subscriber
        self._n = n
        self._fail = fail
        self._next = 0
        self._demand = 0
        self._error: Exception | None = None
        self._announced = False
        self._done = False  # cancelled, completed or failed: nothing more is signalled
        self._draining = False
        self._again = False

    def start(self) -> None:
        self._drain()

    def request(self, n: int) -> None:
        with self._lock:
            if self._done:
                return
            if not isinstance(n, int) or n <= 0:
                self._error = ValueError(f"request({n!r}): demand must be a positive count")
            else:
                self._demand = min(self._demand + n, MAX_DEMAND)
        self._drain()

    def cancel(self) -> None:
        with self._lock:
            self._done = True
            self._subscriber = None

    def _drain(self) -> None:
        with self._lock:
            if self._draining:
                self._again = True
                return
            self._draining = True
        while True:
            with self._lock:
                self._again = False
            self._pass()
            with self._lock:
                if not self._again:
                    self._draining = False
                    return

    def _finish(self) -> Any:
        """Mark the end; return the subscriber to signal it to (``None``: already over)."""
        with self._lock:
            subscriber, self._subscriber = self._subscriber, None
            self._done = True
            return subscriber

    def _signal(self, subscriber: Any, name: str, *args: Any) -> bool:
        try:
            getattr(subscriber, name)(*args)
        except Exception:
            _log.exception("%s raised in %s; its subscription is cancelled", subscriber, name)
            self.cancel()
            return False
        return True

    def _pass(self) -> None:
        if not self._announced:
            self._announced = True
            if not self._signal(self._subscriber, "on_subscribe", self):
                return
        while True:
            with self._lock:
                if self._done:
                    return
                subscriber = self._subscriber
                if self._error is not None or self._fail:
                    error: Exception = self._error or Boom("fails at once")
                    failing = True
                elif self._next >= self._n:
                    failing = False
                else:
                    if self._demand == 0:
                        return
                    if self._demand < MAX_DEMAND:
                        self._demand -= 1
                    item = self._next
                    self._next += 1
                    failing = None
            if failing is None:
                if not self._signal(subscriber, "on_next", item):
                    return
                continue
            if self._finish() is not None:
                if failing:
                    self._signal(subscriber, "on_error", error)
                else:
                    self._signal(subscriber, "on_complete")
            return
