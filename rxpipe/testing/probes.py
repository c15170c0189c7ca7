"""Probes: a recording subscriber, a hand-driven publisher and a misbehaving publisher.

Assertions raised inside a callback on some other thread would be lost, so the probes never
assert there: they record a :class:`~rxpipe.testing.Violation` (tagged with the rule it breaks)
and keep going. The test then asks with ``expect_*`` methods, which wait with a timeout, and
with :meth:`ProbeSubscriber.assert_no_violations`.

Durations: the defaults and the constructor's ``timeout``/``no_signal_window`` are multiplied
by ``RXPIPE_TCK_TIMEOUT_SCALE``; a ``timeout=``/``within=`` given to one ``expect_*`` call is
taken as it is.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar, cast, final

from rxpipe.spec import MAX_DEMAND, Subscriber, Subscription, add_demand, check_request
from rxpipe.testing._common import (
    DEFAULT_NO_SIGNAL_WINDOW,
    DEFAULT_TIMEOUT,
    RuleViolation,
    Violation,
    scaled,
    short,
)
from rxpipe.testing._misbehaving import MisbehavingPublisher

__all__ = (
    "ANY",
    "MisbehavingPublisher",
    "ProbePublisher",
    "ProbeSubscriber",
    "ProbeSubscription",
    "Signal",
    "SignalKind",
)

T = TypeVar("T")

SignalKind = Literal["on_subscribe", "on_next", "on_error", "on_complete"]


@final
class _Any:
    """The type of :data:`ANY`; a private class so that ``None`` stays a real value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


#: ``expect_next()`` without a value accepts any element (``None`` is an element, not "any").
ANY: Final = _Any()


@final
@dataclass(frozen=True, slots=True)
class Signal:
    """One signal a :class:`ProbeSubscriber` received, with the thread it arrived on."""

    kind: SignalKind
    value: object
    thread: int

    def __str__(self) -> str:
        if self.kind in ("on_next", "on_error"):
            return f"{self.kind}({short(self.value)})"
        return f"{self.kind}()"


class ProbeSubscriber(Generic[T]):
    """A subscriber for testing publishers: it records every signal and checks the rules.

    Requests are made by the test (``request(n)``), optionally also from hooks that run
    inside ``on_subscribe`` / ``on_next``. Violations it notices, without failing on the
    publisher's thread: ``on_next`` beyond the outstanding demand (rule 1.1), two threads
    inside its callbacks at once (1.3; re-entry on one thread is allowed, rule 3.2), any
    signal before ``on_subscribe`` or a second ``on_subscribe`` (1.9), any signal after a
    terminal one (1.7), ``None`` passed as subscription or error (2.13), and ``request`` or
    ``cancel`` raising (3.16, 3.15, 3.9, 3.6). ``on_next`` after ``cancel()`` is *not* a
    violation (rule 2.8); the checks decide how long the publisher may take to stop.

    An exception raised by a hook propagates to the publisher on purpose: that is how the kit
    tests a publisher's handling of faulty subscribers (rule 2.13).
    """

    __slots__ = (
        "__weakref__",
        "_cancelled",
        "_cond",
        "_depth",
        "_history",
        "_hook_errors",
        "_invalid",
        "_items",
        "_on_next_hook",
        "_on_subscribe_hook",
        "_outstanding",
        "_owner",
        "_queue",
        "_subscription",
        "_terminal",
        "_timeout",
        "_violations",
        "_window",
        "name",
    )

    def __init__(
        self,
        *,
        timeout: float | None = None,
        no_signal_window: float | None = None,
        on_subscribe_hook: Callable[[ProbeSubscriber[T]], None] | None = None,
        on_next_hook: Callable[[ProbeSubscriber[T], T], None] | None = None,
        name: str = "probe",
    ) -> None:
        self.name = name
        # configured durations are scaled by RXPIPE_TCK_TIMEOUT_SCALE once, here
        self._timeout = scaled(timeout, DEFAULT_TIMEOUT)
        self._window = scaled(no_signal_window, DEFAULT_NO_SIGNAL_WINDOW)
        self._on_subscribe_hook = on_subscribe_hook
        self._on_next_hook = on_next_hook
        self._cond = threading.Condition(threading.Lock())
        self._subscription: Subscription | None = None
        self._queue: deque[Signal] = deque()
        self._history: list[Signal] = []
        self._items: list[T] = []
        self._violations: list[Violation] = []
        self._outstanding = 0
        self._terminal: Signal | None = None
        self._cancelled = False
        self._owner: int | None = None
        self._depth = 0
        self._hook_errors: list[BaseException] = []
        self._invalid: list[object] = []  # illegal request arguments, for rule 3.9 blame

    def __repr__(self) -> str:
        return f"<ProbeSubscriber {self.name!r}>"

    # -- Subscriber protocol -------------------------------------------------------------

    def on_subscribe(self, subscription: Subscription) -> None:
        """Keep the first subscription; cancel any later one (rule 2.5) and record it (1.9)."""
        if _is_none(subscription):
            self._violate("2.13", "on_subscribe(None): the subscription must not be None")
            raise TypeError("rule 2.13: on_subscribe() argument must not be None")
        owned = self._enter("on_subscribe")
        try:
            with self._cond:
                self._history.append(Signal("on_subscribe", subscription, threading.get_ident()))
                second = self._subscription is not None
                if second:
                    self._violations.append(
                        Violation("1.9", "on_subscribe was called a second time")
                    )
                else:
                    self._subscription = subscription
                    self._cond.notify_all()
            if second:
                try:
                    subscription.cancel()  # rule 2.5: cancel the newly offered subscription
                except Exception as exc:
                    self._violate("3.15", f"cancel() of a second subscription raised {exc!r}")
                return
            hook = self._on_subscribe_hook
            if hook is not None:
                self._run_hook(hook, self)
        finally:
            self._exit(owned)

    def on_next(self, item: T) -> None:
        """Record an element, checking demand (1.1), order (1.9) and terminal state (1.7)."""
        owned = self._enter("on_next")
        try:
            signal = Signal("on_next", item, threading.get_ident())
            with self._cond:
                self._history.append(signal)
                run_hook = self._check_signal_locked(signal)
                if self._subscription is None:
                    pass  # already a rule 1.9 violation; demand is meaningless before it
                elif self._outstanding == 0 and self._invalid:
                    self._violations.append(
                        Violation(
                            "3.9",
                            f"on_next({short(item)}) after request({short(self._invalid[-1])}):"
                            " an illegal request must not count as demand",
                        )
                    )
                elif self._outstanding == 0:
                    self._violations.append(
                        Violation(
                            "1.1",
                            f"on_next({short(item)}) without outstanding demand "
                            f"(element {len(self._items) + 1})",
                        )
                    )
                elif self._outstanding < MAX_DEMAND:
                    self._outstanding -= 1
                self._items.append(item)
                self._queue.append(signal)
                self._cond.notify_all()
            hook = self._on_next_hook
            if hook is not None and run_hook:
                self._run_hook(hook, self, item)
        finally:
            self._exit(owned)

    def on_error(self, error: BaseException) -> None:
        """Record the failure; ``None`` is refused (rule 2.13)."""
        if _is_none(error):
            self._violate("2.13", "on_error(None): the error must not be None")
            raise TypeError("rule 2.13: on_error() argument must not be None")
        self._terminate(Signal("on_error", error, threading.get_ident()))

    def on_complete(self) -> None:
        """Record completion."""
        self._terminate(Signal("on_complete", None, threading.get_ident()))

    # -- acting on the subscription ------------------------------------------------------

    def request(self, n: int) -> None:
        """Request ``n`` more elements; demand is counted *before* the call (rule 3.10)."""
        subscription = self._require_subscription()
        with self._cond:
            if check_request(n) is None:
                self._outstanding = add_demand(self._outstanding, n)
            else:
                self._invalid.append(n)
            cancelled = self._cancelled
            terminated = self._terminal is not None
        try:
            subscription.request(n)
        except Exception as exc:
            if any(exc is e for e in self._hook_errors):
                rule, why = "2.13", "propagated the subscriber's own exception"
            elif terminated:
                rule, why = "1.6", "after a terminal signal raised"
            elif cancelled:
                rule, why = "3.6", "after cancel() raised"
            elif check_request(n) is not None:
                rule, why = "3.9", "raised instead of signalling on_error(ValueError)"
            else:
                rule, why = "3.16", "raised"
            self._violate(rule, f"request({short(n)}) {why}: {exc!r}")

    def cancel(self) -> None:
        """Cancel the subscription; a raising ``cancel`` is recorded (rules 3.15, 3.7)."""
        subscription = self._require_subscription()
        with self._cond:
            again = self._cancelled
            self._cancelled = True
        try:
            subscription.cancel()
        except Exception as exc:
            rule = "3.7" if again else "3.15"
            self._violate(rule, f"cancel() raised {exc!r}")

    # -- expectations ----------------------------------------------------------------------

    def expect_subscribed(self, timeout: float | None = None) -> Subscription:
        """Wait for ``on_subscribe``; return the subscription."""
        wait = self._wait(timeout)
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscription is not None, wait):
                raise RuleViolation("1.9", f"no on_subscribe within {wait:.3g} s of subscribe()")
            return cast(Subscription, self._subscription)

    def expect_next(self, value: object = ANY, *, timeout: float | None = None) -> T:
        """Wait for the next signal; it must be ``on_next`` (of ``value``, if given)."""
        signal = self._next_signal(self._wait(timeout), f"on_next({_expected(value)})")
        if signal.kind != "on_next":
            raise AssertionError(f"expected on_next({_expected(value)}), got {signal}")
        if not isinstance(value, _Any) and signal.value != value:
            raise AssertionError(f"expected on_next({short(value)}), got {signal}")
        return cast(T, signal.value)

    def expect_next_n(self, k: int, *, timeout: float | None = None) -> list[T]:
        """Wait for ``k`` elements, with one deadline for all of them."""
        deadline = time.monotonic() + self._wait(timeout)
        items: list[T] = []
        for i in range(k):
            left = max(0.0, deadline - time.monotonic())
            signal = self._next_signal(left, f"on_next (element {i + 1} of {k})")
            if signal.kind != "on_next":
                raise AssertionError(f"expected element {i + 1} of {k}, got {signal}")
            items.append(cast(T, signal.value))
        return items

    def expect_complete(self, *, timeout: float | None = None) -> None:
        """Wait for the next signal; it must be ``on_complete``."""
        signal = self._next_signal(self._wait(timeout), "on_complete()")
        if signal.kind != "on_complete":
            raise AssertionError(f"expected on_complete(), got {signal}")

    def expect_error(
        self, cls: type[BaseException] = BaseException, *, timeout: float | None = None
    ) -> BaseException:
        """Wait for the next signal; it must be ``on_error`` with an instance of ``cls``."""
        signal = self._next_signal(self._wait(timeout), f"on_error({cls.__name__})")
        if signal.kind != "on_error":
            raise AssertionError(f"expected on_error({cls.__name__}), got {signal}")
        error = cast(BaseException, signal.value)
        if not isinstance(error, cls):
            raise AssertionError(f"expected on_error({cls.__name__}), got on_error({error!r})")
        return error

    def expect_no_signal(self, within: float | None = None) -> None:
        """Fail if any signal (other than ``on_subscribe``) arrives within the window."""
        window = within if within is not None else self._window
        with self._cond:
            if self._cond.wait_for(lambda: bool(self._queue), window):
                signal = self._queue.popleft()
                raise AssertionError(f"expected no signal within {window:.3g} s, got {signal}")

    def assert_no_violations(self) -> None:
        """Raise ``AssertionError`` listing every rule violation recorded so far."""
        violations = self.violations
        if violations:
            raise AssertionError("; ".join(str(v) for v in violations))

    # -- state -------------------------------------------------------------------------------

    @property
    def subscription(self) -> Subscription | None:
        """The subscription received in ``on_subscribe``, if any."""
        return self._subscription

    @property
    def items(self) -> list[T]:
        """Every element received so far, in order (a copy)."""
        with self._cond:
            return list(self._items)

    @property
    def signals(self) -> tuple[Signal, ...]:
        """Every signal received so far, ``on_subscribe`` included."""
        with self._cond:
            return tuple(self._history)

    @property
    def violations(self) -> tuple[Violation, ...]:
        """The rule violations noticed so far."""
        with self._cond:
            return tuple(self._violations)

    @property
    def outstanding(self) -> int:
        """Requested and not yet delivered (``MAX_DEMAND`` means unbounded)."""
        with self._cond:
            return self._outstanding

    @property
    def terminal(self) -> Signal | None:
        """The first ``on_complete``/``on_error`` signal received, if any."""
        with self._cond:
            return self._terminal

    @property
    def is_cancelled(self) -> bool:
        """Whether ``cancel()`` was called on this probe."""
        with self._cond:
            return self._cancelled

    # -- internals -----------------------------------------------------------------------------

    def _violate(self, rule: str, message: str) -> None:
        with self._cond:
            self._violations.append(Violation(rule, message))

    def _check_signal_locked(self, signal: Signal) -> bool:
        """Record order violations of ``signal``; return whether hooks should still run."""
        if self._subscription is None:
            self._violations.append(Violation("1.9", f"{signal} before on_subscribe"))
        if self._terminal is not None:
            self._violations.append(Violation("1.7", f"{signal} after {self._terminal}"))
            return False
        return True

    def _terminate(self, signal: Signal) -> None:
        owned = self._enter(signal.kind)
        try:
            with self._cond:
                self._history.append(signal)
                if self._check_signal_locked(signal):
                    self._terminal = signal
                self._queue.append(signal)
                self._cond.notify_all()
        finally:
            self._exit(owned)

    def _enter(self, method: str) -> bool:
        """Note a thread entering a callback; another thread already inside breaks rule 1.3."""
        ident = threading.get_ident()
        with self._cond:
            if self._owner is None:
                self._owner = ident
                self._depth = 1
                return True
            if self._owner == ident:
                self._depth += 1  # synchronous re-entry on one thread is allowed (rule 3.2)
                return True
            self._violations.append(
                Violation(
                    "1.3",
                    f"{method} entered on thread {ident} while thread {self._owner} "
                    "was still inside a signal: signals must be serial",
                )
            )
            return False

    def _exit(self, owned: bool) -> None:
        if owned:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None

    def _run_hook(self, hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except BaseException as exc:
            with self._cond:
                self._hook_errors.append(exc)
            raise

    def _require_subscription(self) -> Subscription:
        subscription = self._subscription
        if subscription is None:
            raise AssertionError(f"{self!r} has no subscription yet (no on_subscribe received)")
        return subscription

    def _wait(self, timeout: float | None) -> float:
        return timeout if timeout is not None else self._timeout

    def _next_signal(self, wait: float, what: str) -> Signal:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._queue), wait):
                raise AssertionError(
                    f"expected {what} within {wait:.3g} s, got nothing "
                    f"({len(self._items)} element(s) received so far)"
                )
            return self._queue.popleft()


def _is_none(value: object) -> bool:
    """``None`` where the types forbid it: a caller breaking rule 2.13, checked at run time."""
    return value is None


def _expected(value: object) -> str:
    return "" if isinstance(value, _Any) else short(value)


@final
class ProbeSubscription:
    """A subscription that records the calls a subscriber under test makes on it.

    It notices a request of ``n <= 0`` (the subscriber's bug; tagged rule 2.1) and any
    ``request``/``cancel`` made on the same thread while :meth:`terminal_guard` is active,
    that is from inside ``on_complete``/``on_error`` (rule 2.3).
    """

    __slots__ = (
        "__weakref__",
        "_cancels",
        "_cond",
        "_local",
        "_outstanding",
        "_pending",
        "_requests",
        "_violations",
        "name",
    )

    def __init__(self, name: str = "probe subscription") -> None:
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._requests: list[int] = []
        self._pending: deque[int] = deque()
        self._outstanding = 0
        self._cancels = 0
        self._violations: list[Violation] = []
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<ProbeSubscription {self.name!r}>"

    def request(self, n: int) -> None:
        """Record a request; never raises (rule 3.16)."""
        with self._cond:
            self._check_terminal_locked(f"request({short(n)})")
            if check_request(n) is not None:
                self._violations.append(
                    Violation("2.1", f"request({short(n)}): demand must be a positive int")
                )
            else:
                self._outstanding = add_demand(self._outstanding, n)
            self._requests.append(n)
            self._pending.append(n)
            self._cond.notify_all()

    def cancel(self) -> None:
        """Record a cancel; never raises (rule 3.15)."""
        with self._cond:
            self._check_terminal_locked("cancel()")
            self._cancels += 1
            self._cond.notify_all()

    @contextmanager
    def terminal_guard(self) -> Iterator[None]:
        """While active, calls on this subscription from this thread break rule 2.3."""
        self._local.in_terminal = True
        try:
            yield
        finally:
            self._local.in_terminal = False

    def expect_request(self, timeout: float | None = None) -> int:
        """Wait for the next request and return its ``n``; ``n <= 0`` fails."""
        wait = timeout if timeout is not None else scaled(None, DEFAULT_TIMEOUT)
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._pending), wait):
                raise AssertionError(f"expected a request(n) within {wait:.3g} s, got none")
            n = self._pending.popleft()
        if check_request(n) is not None:
            raise AssertionError(f"rule 2.1: request({short(n)}): demand must be a positive int")
        return n

    def expect_no_request(self, within: float | None = None) -> None:
        """Fail if a request arrives within the window."""
        window = within if within is not None else scaled(None, DEFAULT_NO_SIGNAL_WINDOW)
        with self._cond:
            if self._cond.wait_for(lambda: bool(self._pending), window):
                n = self._pending.popleft()
                raise AssertionError(f"expected no request within {window:.3g} s, got {n!r}")

    def expect_cancel(self, timeout: float | None = None) -> None:
        """Wait until ``cancel()`` has been called."""
        wait = timeout if timeout is not None else scaled(None, DEFAULT_TIMEOUT)
        with self._cond:
            if not self._cond.wait_for(lambda: self._cancels > 0, wait):
                raise AssertionError(f"expected cancel() within {wait:.3g} s, got none")

    @property
    def requests(self) -> tuple[int, ...]:
        """Every ``n`` requested so far, in order."""
        with self._cond:
            return tuple(self._requests)

    @property
    def outstanding(self) -> int:
        """Requested and not yet sent (``MAX_DEMAND`` means unbounded)."""
        with self._cond:
            return self._outstanding

    @property
    def is_cancelled(self) -> bool:
        """Whether ``cancel()`` was called at least once."""
        with self._cond:
            return self._cancels > 0

    @property
    def violations(self) -> tuple[Violation, ...]:
        """The rule violations noticed so far."""
        with self._cond:
            return tuple(self._violations)

    def _take(self) -> bool:
        """Consume one unit of demand for a ``send_next``; return whether there was any."""
        with self._cond:
            if self._outstanding == 0:
                return False
            if self._outstanding < MAX_DEMAND:
                self._outstanding -= 1
            return True

    def _check_terminal_locked(self, call: str) -> None:
        if getattr(self._local, "in_terminal", False):
            self._violations.append(
                Violation("2.3", f"{call} called from inside on_complete/on_error")
            )


@final
class ProbePublisher(Generic[T]):
    """A publisher the test drives by hand, for testing subscribers.

    ``subscribe`` calls ``on_subscribe`` synchronously with a fresh :class:`ProbeSubscription`.
    The test waits for demand with :meth:`expect_request` and answers with :meth:`send_next`,
    :meth:`send_complete` and :meth:`send_error`. Exceptions the subscriber raises propagate
    to the test, which is usually what a subscriber test wants to see.
    """

    __slots__ = ("__weakref__", "_lock", "_subscriber", "_subscriptions")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriber: Subscriber[T] | None = None
        self._subscriptions: list[ProbeSubscription] = []

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        """Hand ``subscriber`` a new probe subscription (rule 1.9: ``None`` is a TypeError)."""
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe() argument must not be None")
        subscription = ProbeSubscription(f"subscription {len(self._subscriptions) + 1}")
        with self._lock:
            self._subscriber = subscriber
            self._subscriptions.append(subscription)
        subscriber.on_subscribe(subscription)

    @property
    def subscriber(self) -> Subscriber[T]:
        """The latest subscriber."""
        subscriber = self._subscriber
        if subscriber is None:
            raise AssertionError("nothing has subscribed to this ProbePublisher yet")
        return subscriber

    @property
    def subscription(self) -> ProbeSubscription:
        """The latest subscription handed out."""
        with self._lock:
            if not self._subscriptions:
                raise AssertionError("nothing has subscribed to this ProbePublisher yet")
            return self._subscriptions[-1]

    @property
    def violations(self) -> tuple[Violation, ...]:
        """The violations recorded by every subscription handed out."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        return tuple(v for s in subscriptions for v in s.violations)

    def expect_request(self, timeout: float | None = None) -> int:
        """Wait for the next request on the latest subscription."""
        return self.subscription.expect_request(timeout)

    def expect_no_request(self, within: float | None = None) -> None:
        """Fail if the latest subscription gets a request within the window."""
        self.subscription.expect_no_request(within)

    def expect_cancel(self, timeout: float | None = None) -> None:
        """Wait until the latest subscription is cancelled."""
        self.subscription.expect_cancel(timeout)

    @property
    def is_cancelled(self) -> bool:
        """Whether the latest subscription has been cancelled."""
        return self.subscription.is_cancelled

    def send_next(self, item: T, *, force: bool = False) -> None:
        """Deliver ``item``; without outstanding demand this would break rule 1.1.

        Pass ``force=True`` to break it on purpose.
        """
        if not self.subscription._take() and not force:
            raise AssertionError(
                "send_next() without outstanding demand would break rule 1.1; "
                "wait with expect_request() first, or pass force=True"
            )
        self.subscriber.on_next(item)

    def send_complete(self) -> None:
        """Deliver ``on_complete``; calls back into the subscription break rule 2.3."""
        with self.subscription.terminal_guard():
            self.subscriber.on_complete()

    def send_error(self, error: BaseException) -> None:
        """Deliver ``on_error``; calls back into the subscription break rule 2.3."""
        with self.subscription.terminal_guard():
            self.subscriber.on_error(error)
