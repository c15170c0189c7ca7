"""The pull engine's publisher edge: a flow as a cold, spec-compliant ``Publisher``.

Each ``subscribe`` opens a fresh run. Items are produced on the thread that calls
``request`` (rule 3.10 allows it), inside a :class:`~rxpipe.spec.DrainLoop`, so signals stay
serial across threads (rule 1.3) and ``request`` from inside ``on_next`` never recurses
(rule 3.3).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any, Generic, TypeVar, final

from rxpipe.engines.base import Engine, Plan, Run
from rxpipe.spec import (
    MAX_DEMAND,
    DrainLoop,
    InertSubscription,
    Subscriber,
    Subscription,
    add_demand,
    check_request,
    report_subscriber_error,
    signal_safely,
)

__all__ = ("FlowPublisher",)

T = TypeVar("T")


@final
class FlowPublisher(Generic[T]):
    """A cold publisher over a flow: each subscriber gets its own run."""

    __slots__ = ("_engine", "_lock", "_plan", "_seen")

    def __init__(self, plan: Plan, engine: Engine) -> None:
        self._plan = plan
        self._engine = engine
        self._lock = threading.Lock()
        # Subscribers seen, weakly: a second subscribe of the same instance is refused
        # (rule 2.12), without keeping any subscriber alive (rule 3.13).
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<FlowPublisher {self._plan.source_name} on {self._engine.name}>"

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe(None): the subscriber must not be None")
        with self._lock:
            try:
                again = subscriber in self._seen
                if not again:
                    self._seen.add(subscriber)
            except TypeError:  # not weak-referenceable or not hashable: cannot track it
                again = False
        if again:
            signal_safely(subscriber, "on_subscribe", InertSubscription())
            signal_safely(
                subscriber,
                "on_error",
                ValueError("rule 2.12: this subscriber is already subscribed to this publisher"),
            )
            return
        try:
            run = self._engine.open(self._plan)
        except Exception as exc:  # rule 1.9: a refusal is signalled, never raised
            signal_safely(subscriber, "on_subscribe", InertSubscription())
            signal_safely(subscriber, "on_error", exc)
            return
        sub = _FlowSubscription(subscriber, run)
        if not signal_safely(subscriber, "on_subscribe", sub):
            sub.cancel()


@final
class _FlowSubscription(Subscription, Generic[T]):
    """One subscriber's run: demand in, signals out, through a drain loop."""

    __slots__ = (
        "_bad",
        "_cancelled",
        "_done",
        "_drain_loop",
        "_it",
        "_lock",
        "_requested",
        "_run",
        "_subscriber",
    )

    def __init__(self, subscriber: Subscriber[T], run: Run[T]) -> None:
        self._subscriber: Subscriber[T] | None = subscriber
        self._run = run
        self._it: Iterator[T] | None = None
        self._lock = threading.Lock()
        self._requested = 0
        self._cancelled = False
        self._done = False
        self._bad: ValueError | None = None
        self._drain_loop = DrainLoop(self._drain)

    def request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._done or self._cancelled:
                return  # rules 3.6 and 1.6: no-ops once cancelled or terminated
            if error is not None:
                if self._bad is None:
                    self._bad = error  # rule 3.9: signalled through on_error, never raised
            else:
                self._requested = add_demand(self._requested, n)
        self._drain_loop.schedule()

    def cancel(self) -> None:
        with self._lock:
            if self._done or self._cancelled:
                return  # rule 3.7: idempotent
            self._cancelled = True
        self._drain_loop.schedule()

    def _end(self) -> Subscriber[T] | None:
        """Terminal bookkeeping: stop the run and drop the subscriber (rule 3.13)."""
        with self._lock:
            self._done = True
            subscriber, self._subscriber = self._subscriber, None
        it, self._it = self._it, None
        if it is not None:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        try:
            self._run.close()
        except Exception as exc:  # rules 3.15/3.16: never out of request() or cancel()
            report_subscriber_error(self._run, "close", exc)
        return subscriber

    def _drain(self) -> None:
        if self._subscriber is None:
            return
        if self._cancelled:
            self._end()
            return
        if self._bad is not None:
            error = self._bad
            subscriber = self._end()
            if subscriber is not None:
                signal_safely(subscriber, "on_error", error)
            return
        if self._it is None:
            self._it = iter(self._run)
        it = self._it
        while self._emit_one(it):
            pass

    def _emit_one(self, it: Iterator[T]) -> bool:
        """Emit one item if there is demand; False when the pass is over."""
        with self._lock:
            if self._cancelled or self._bad is not None:
                stop = True
            elif self._requested == 0:
                return False
            else:
                stop = False
        if stop:  # woken for cancel or a bad request while emitting: handle it now
            self._drain()
            return False
        try:
            item = next(it)
        except StopIteration:
            subscriber = self._end()
            if subscriber is not None:
                signal_safely(subscriber, "on_complete")
            return False
        except Exception as exc:
            subscriber = self._end()
            if subscriber is not None:
                signal_safely(subscriber, "on_error", exc)
            return False
        with self._lock:
            if self._requested != MAX_DEMAND:
                self._requested -= 1
        subscriber = self._subscriber
        if subscriber is None:
            return False
        if not signal_safely(subscriber, "on_next", item):
            self._end()  # rule 2.13: a subscriber that raised is treated as cancelled
            return False
        return True
