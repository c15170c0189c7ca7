"""The Reactive Streams core: the four protocols and the helpers that keep the rules.

The protocols mirror ``org.reactivestreams`` 1.0.4 in snake_case. The helpers exist so that
no implementer has to re-derive the fiddly rules: demand that saturates at unbounded
(rule 3.17), ``request`` validation that signals instead of raising (rule 3.9), and a drain
loop that keeps signals serial across threads and turns re-entrant
``request -> on_next -> request`` into iteration instead of recursion (rules 1.3 and 3.3).

One deliberate deviation from the JVM rules: ``None`` is a valid element (rule 2.13 forbids
``null``). ``on_subscribe(None)``, ``on_error(None)`` and ``subscribe(None)`` are still errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, final, runtime_checkable

__all__ = (
    "MAX_DEMAND",
    "DrainLoop",
    "InertSubscription",
    "Processor",
    "Publisher",
    "Subscriber",
    "Subscription",
    "add_demand",
    "check_request",
    "report_subscriber_error",
    "signal_safely",
)

#: Demand at or above this value means "unbounded" (Java's ``Long.MAX_VALUE``, rule 3.17).
MAX_DEMAND = 2**63 - 1

T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

_log = logging.getLogger("rxpipe")


@runtime_checkable
class Subscription(Protocol):
    """The link between one publisher and one subscriber: demand goes up, cancel goes up."""

    def request(self, n: int) -> None:
        """Add ``n`` to the outstanding demand; ``n <= 0`` signals ``on_error`` (rule 3.9)."""
        ...

    def cancel(self) -> None:
        """Ask the publisher to stop signalling, eventually (rules 3.5, 3.7, 3.12)."""
        ...


@runtime_checkable
class Subscriber(Protocol[T_contra]):
    """Receives signals, serially: ``on_subscribe`` once, ``on_next`` per demand, one terminal."""

    def on_subscribe(self, subscription: Subscription) -> None:
        """Called first and once; nothing flows until the subscriber requests."""
        ...

    def on_next(self, item: T_contra) -> None:
        """One element, never more than requested (rule 1.1). ``None`` is a valid element."""
        ...

    def on_error(self, error: BaseException) -> None:
        """The stream failed; no signal follows."""
        ...

    def on_complete(self) -> None:
        """The stream ended normally; no signal follows."""
        ...


@runtime_checkable
class Publisher(Protocol[T_co]):
    """A source of elements that respects its subscribers' demand."""

    def subscribe(self, subscriber: Subscriber[T_co]) -> None:
        """Start a subscription; always answers with ``on_subscribe`` first (rule 1.9)."""
        ...


@runtime_checkable
class Processor(Subscriber[T_contra], Publisher[R_co], Protocol[T_contra, R_co]):
    """A stage that is both a subscriber (upstream side) and a publisher (downstream side)."""


def add_demand(current: int, n: int) -> int:
    """Add ``n`` to ``current``, saturating at :data:`MAX_DEMAND` (rule 3.17)."""
    total = current + n
    return MAX_DEMAND if total >= MAX_DEMAND else total


def check_request(n: object) -> ValueError | None:
    """Return the error rule 3.9 demands for an illegal ``request(n)``, or ``None`` if legal.

    ``request`` must never raise (rule 3.16), so callers signal the returned error through
    ``on_error`` and cancel upstream. A ``bool`` is not a count, and neither is a float.
    """
    if isinstance(n, int) and not isinstance(n, bool):
        if n > 0:
            return None
        return ValueError(
            f"rule 3.9: non-positive subscription request: request({n}); demand must be >= 1"
        )
    return ValueError(
        f"rule 3.9: subscription request must be a positive int, got {type(n).__name__} {n!r}"
    )


def report_subscriber_error(subscriber: object, signal: str, error: BaseException) -> None:
    """Log an exception a subscriber raised from a signal method (rule 2.13).

    The caller treats the subscription as cancelled; logging makes sure the error is never
    swallowed silently.
    """
    _log.error(
        "subscriber %r raised from %s; its subscription is cancelled",
        subscriber,
        signal,
        exc_info=(type(error), error, error.__traceback__),
    )


def signal_safely(subscriber: Any, method: str, *args: Any) -> bool:
    """Call a subscriber's signal method; report what it raises (rule 2.13).

    Returns whether it returned normally: when it did not, the caller treats the subscription
    as cancelled.
    """
    try:
        getattr(subscriber, method)(*args)
    except Exception as exc:
        report_subscriber_error(subscriber, method, exc)
        return False
    return True


@final
class InertSubscription:
    """A subscription that does nothing: handed to a subscriber that is refused (rule 1.9)."""

    __slots__ = ("__weakref__",)

    def request(self, n: int) -> None:
        """Ignored."""

    def cancel(self) -> None:
        """Ignored."""


class DrainLoop:
    """Run a drain function serially, however many threads or re-entrant calls ask for it.

    ``schedule()`` either runs ``drain`` now or, if a drain is already running (on this thread,
    further up the stack, or on another thread), records that another pass is needed and returns
    at once. The running caller loops until no pass is missed. This is the "work in progress"
    counter of RxJava/Reactor: it gives serial signals (rule 1.3) and bounded recursion
    (rule 3.3), because a ``request`` made from inside ``on_next`` only bumps the counter.

    ``drain`` must be written to do all the work that is possible at the time it runs (emit
    while there is demand, deliver a pending terminal signal, and so on).
    """

    __slots__ = ("_drain", "_lock", "_missed")

    def __init__(self, drain: Callable[[], None]) -> None:
        self._drain = drain
        self._lock = threading.Lock()
        self._missed = 0

    def schedule(self) -> None:
        """Run the drain function now, or make the running drain pass once more."""
        with self._lock:
            self._missed += 1
            if self._missed > 1:
                return
        done = 1
        while True:
            try:
                self._drain()
            except BaseException:
                with self._lock:
                    self._missed = 0
                raise
            with self._lock:
                self._missed -= done
                done = self._missed
                if done == 0:
                    return

    @property
    def busy(self) -> bool:
        """Whether a drain pass is running or pending (for tests and assertions)."""
        return self._missed > 0
