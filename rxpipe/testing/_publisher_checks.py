"""The publisher checks: rules 1.x, 2.13 (the publisher's side) and 3.x.

Each check is a function ``rule_X_Y_description(t)`` taking a :class:`PublisherContext`;
:data:`PUBLISHER_CHECKS` lists them in run order. ``rxpipe.testing.tck`` re-exports them.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, cast

from rxpipe.spec import MAX_DEMAND, Publisher, Subscriber, Subscription
from rxpipe.testing._common import RuleViolation, short
from rxpipe.testing._harness import (
    EXTENSIONS_DOC,
    Check,
    CheckContext,
    CheckSkipped,
    ExtensionFailure,
    Timing,
    run_guarded,
)
from rxpipe.testing._subscriber_checks import DeliberateError
from rxpipe.testing.probes import ProbeSubscriber

__all__ = (
    "PUBLISHER_CHECKS",
    "PublisherContext",
    "rule_1_1_delivers_no_more_than_requested",
    "rule_1_2_may_deliver_fewer_than_requested_then_complete",
    "rule_1_3_signals_are_serial",
    "rule_1_4_failed_publisher_signals_on_error",
    "rule_1_5_completes_after_the_last_element",
    "rule_1_5_empty_stream_completes",
    "rule_1_6_requests_and_cancel_after_completion_are_no_ops",
    "rule_1_7_no_signal_after_on_complete",
    "rule_1_7_no_signal_after_on_error",
    "rule_1_8_no_terminal_signal_after_cancel",
    "rule_1_9_on_subscribe_comes_first_and_once",
    "rule_1_9_subscribe_none_raises_type_error",
    "rule_1_10_same_subscriber_twice_is_rejected",
    "rule_1_11_each_subscriber_gets_signals",
    "rule_2_13_raising_on_next_cancels_and_is_logged",
    "rule_2_13_raising_on_subscribe_is_contained",
    "rule_3_2_request_is_reentrant_from_on_subscribe_and_on_next",
    "rule_3_3_long_synchronous_request_chain_completes",
    "rule_3_3_recursion_depth_is_bounded",
    "rule_3_5_cancel_is_thread_safe",
    "rule_3_6_request_after_cancel_is_a_no_op",
    "rule_3_7_cancel_after_cancel_is_a_no_op",
    "rule_3_8_requests_add_up",
    "rule_3_9_request_negative_signals_value_error",
    "rule_3_9_request_non_int_signals_value_error",
    "rule_3_9_request_zero_signals_value_error",
    "rule_3_12_cancel_makes_the_publisher_stop",
    "rule_3_13_cancel_drops_the_subscriber",
    "rule_3_17_cumulative_demand_up_to_max_demand_is_supported",
    "rule_3_17_demand_beyond_max_demand_is_unbounded",
    "rule_3_17_demand_up_to_max_demand_is_supported",
)


class PublisherContext(CheckContext):
    """The context of one publisher check: the factories plus the configuration."""

    def __init__(
        self,
        make_publisher: Callable[[int], Publisher[Any]],
        make_failed: Callable[[], Publisher[Any]] | None,
        *,
        timing: Timing,
        max_elements: int,
        recursion_elements: int,
        recursion_bound: int,
        stochastic_runs: int,
        max_subscribers: int | None,
        rxpipe_extensions: bool,
    ) -> None:
        super().__init__(timing, rxpipe_extensions=rxpipe_extensions)
        self.make_publisher = make_publisher
        self.make_failed = make_failed
        self.max_elements = max_elements
        self.recursion_elements = recursion_elements
        self.recursion_bound = recursion_bound
        self.stochastic_runs = stochastic_runs
        self.max_subscribers = max_subscribers

    def publisher(self, n: int) -> Publisher[Any]:
        """A fresh publisher of exactly ``n`` elements, or a skip if that is too many."""
        if n > self.max_elements:
            raise CheckSkipped(f"needs a stream of {n} elements; max_elements={self.max_elements}")
        try:
            return self.make_publisher(n)
        except Exception as exc:
            raise AssertionError(f"make_publisher({n}) raised {exc!r}") from exc

    def failed(self) -> Publisher[Any]:
        """A fresh publisher that fails at once, or a skip without ``make_failed``."""
        if self.make_failed is None:
            raise CheckSkipped("needs make_failed= (a publisher that fails at once)")
        try:
            return self.make_failed()
        except Exception as exc:
            raise AssertionError(f"make_failed() raised {exc!r}") from exc

    def subscribed(
        self,
        n: int,
        *,
        on_subscribe_hook: Callable[[ProbeSubscriber[Any]], None] | None = None,
        on_next_hook: Callable[[ProbeSubscriber[Any], Any], None] | None = None,
    ) -> ProbeSubscriber[Any]:
        """A probe subscribed to a fresh ``n``-element publisher, ``on_subscribe`` received."""
        probe = self.probe(on_subscribe_hook=on_subscribe_hook, on_next_hook=on_next_hook)
        self.subscribe(self.publisher(n), probe)
        probe.expect_subscribed()
        return probe

    def require_extensions(self) -> None:
        """Skip rxpipe's own additions to the rules when they are turned off.

        (Checks registered with ``Check(f, extension=True)`` are skipped before they run.)
        """
        if not self.rxpipe_extensions:
            raise CheckSkipped(
                f"an rxpipe extension (see {EXTENSIONS_DOC}); pass rxpipe_extensions=True to run it"
            )


# -- helpers -------------------------------------------------------------------------------


def _cancel_at_first(probe: ProbeSubscriber[Any], item: object) -> None:
    if len(probe.items) == 1:
        probe.cancel()


def _request_one(probe: ProbeSubscriber[Any], item: object = None) -> None:
    probe.request(1)


def _got_a_signal(probe: ProbeSubscriber[Any]) -> Callable[[], bool]:
    return lambda: bool(probe.items) or probe.terminal is not None


def _quiet_count(
    t: CheckContext, count: Callable[[], int], *, window: float, deadline: float
) -> tuple[int, bool]:
    """Wait until ``count()`` stops growing for ``window`` seconds; return (count, quiet)."""
    last = count()
    quiet_since = time.monotonic()
    while True:
        time.sleep(min(window / 5, 0.01))
        now = time.monotonic()
        current = count()
        if current != last:
            last, quiet_since = current, now
        elif now - quiet_since >= window:
            return last, True
        if now >= deadline:
            return last, False


@contextmanager
def _error_log(logger_name: str = "rxpipe") -> Iterator[list[logging.LogRecord]]:
    """Collect the ERROR records of ``logger_name`` (a handler, not a test framework)."""
    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(logger_name)
    handler = _Collect(logging.ERROR)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.ERROR:
        logger.setLevel(logging.ERROR)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _logged(records: list[logging.LogRecord], error: BaseException) -> bool:
    for record in list(records):
        if record.levelno < logging.ERROR:
            continue
        if record.exc_info and record.exc_info[1] is error:
            return True
        if str(error) in record.getMessage():
            return True
    return False


# -- rule 1.x: publishers ----------------------------------------------------------------------


def rule_1_9_subscribe_none_raises_type_error(t: PublisherContext) -> None:
    """``subscribe(None)`` is the one call that raises, and it raises ``TypeError``."""
    publisher = t.publisher(0)
    try:
        publisher.subscribe(cast(Subscriber[Any], None))
    except TypeError:
        return
    except Exception as exc:
        raise AssertionError(f"subscribe(None) raised {exc!r}; expected TypeError") from None
    raise AssertionError("subscribe(None) returned normally; it must raise TypeError")


def rule_1_9_on_subscribe_comes_first_and_once(t: PublisherContext) -> None:
    """``on_subscribe`` arrives before any other signal, exactly once (the probe records it)."""
    probe = t.probe()
    t.subscribe(t.publisher(0), probe)
    probe.expect_subscribed()
    t.wait_until(
        lambda: sum(s.kind == "on_subscribe" for s in probe.signals) > 1,
        t.timing.no_signal_window,
    )


def rule_3_2_request_is_reentrant_from_on_subscribe_and_on_next(t: PublisherContext) -> None:
    """``request`` called from inside ``on_subscribe`` and ``on_next`` works (no deadlock)."""

    def three(probe: ProbeSubscriber[Any]) -> None:
        for _ in range(3):
            probe.request(1)

    probe = t.probe(on_subscribe_hook=three, on_next_hook=_request_one)
    publisher = t.publisher(6)
    stuck = run_guarded(lambda: t.subscribe(publisher, probe), t.timing.timeout * 10, "3.2")
    if stuck is not None:
        t.reentrancy_broken = "request() from inside a signal deadlocked (see rule 3.2)"
        raise AssertionError(f"subscribe() with request() called inside on_subscribe {stuck}")
    probe.expect_next_n(6)
    t.expect_complete(probe, items=6)


def rule_1_1_delivers_no_more_than_requested(t: PublisherContext) -> None:
    """Never more ``on_next`` than requested: 0, then 1, then 1 + 2."""
    probe = t.subscribed(5)
    probe.expect_no_signal()
    probe.request(1)
    probe.expect_next()
    probe.expect_no_signal()
    probe.request(1)
    probe.request(2)
    try:
        probe.expect_next_n(3)
    except AssertionError as exc:
        raise RuleViolation("3.8", f"request(1) + request(2) must add up to 3: {exc}") from None
    probe.expect_no_signal()
    probe.cancel()


def rule_1_2_may_deliver_fewer_than_requested_then_complete(t: PublisherContext) -> None:
    """Asked for 10 of a 3-element stream: 3 elements, then ``on_complete``."""
    probe = t.subscribed(3)
    probe.request(10)
    probe.expect_next_n(3)
    t.expect_complete(probe, items=3)


def rule_1_3_signals_are_serial(t: PublisherContext) -> None:
    """Signals never overlap across threads (stochastic: many short runs, 1 by 1 requests)."""
    t.require_reentrancy()
    for _ in range(t.stochastic_runs):
        probe = t.probe(on_subscribe_hook=_request_one, on_next_hook=_request_one)
        t.subscribe(t.publisher(10), probe)
        probe.expect_next_n(10, timeout=t.timing.timeout * 10)
        t.expect_complete(probe, items=10)
        if probe.violations:
            return  # reported by the harness; one run is enough


def rule_1_4_failed_publisher_signals_on_error(t: PublisherContext) -> None:
    """A failed publisher answers ``subscribe`` with ``on_subscribe`` then one ``on_error``."""
    probe = t.probe()
    t.subscribe(t.failed(), probe)
    probe.expect_subscribed()
    probe.expect_error(BaseException)
    probe.expect_no_signal()


def rule_1_5_completes_after_the_last_element(t: PublisherContext) -> None:
    """Three elements one by one; the next request finds ``on_complete``."""
    probe = t.subscribed(3)
    for _ in range(3):
        probe.request(1)
        probe.expect_next()
    probe.request(1)
    t.expect_complete(probe, items=3)
    probe.expect_no_signal()


def rule_1_5_empty_stream_completes(t: PublisherContext) -> None:
    """An empty stream signals ``on_complete`` (with or without a request)."""
    probe = t.subscribed(0)
    probe.request(1)
    t.expect_complete(probe, items=0)
    probe.expect_no_signal()


def rule_1_6_requests_and_cancel_after_completion_are_no_ops(t: PublisherContext) -> None:
    """After ``on_complete`` the subscription counts as cancelled: no errors, no signals."""
    probe = t.subscribed(1)
    probe.request(10)
    probe.expect_next()
    t.expect_complete(probe, items=1)
    probe.request(5)
    probe.request(0)  # no rule 3.9 error: the subscription is over
    probe.request(-1)
    probe.cancel()
    probe.expect_no_signal()


def rule_1_7_no_signal_after_on_complete(t: PublisherContext) -> None:
    """More requests after ``on_complete`` produce nothing."""
    probe = t.subscribed(1)
    probe.request(10)
    probe.expect_next()
    t.expect_complete(probe, items=1)
    probe.request(10)
    probe.expect_no_signal()


def rule_1_7_no_signal_after_on_error(t: PublisherContext) -> None:
    """More requests after ``on_error`` produce nothing."""
    probe = t.probe()
    t.subscribe(t.failed(), probe)
    probe.expect_subscribed()
    probe.expect_error(BaseException)
    probe.request(10)
    probe.expect_no_signal()


def rule_1_8_no_terminal_signal_after_cancel(t: PublisherContext) -> None:
    """Cancelled from inside ``on_next``: no ``on_complete``/``on_error`` may follow."""
    t.require_reentrancy()
    probe = t.subscribed(3, on_next_hook=_cancel_at_first)
    probe.request(10)
    probe.expect_next()
    if t.wait_until(lambda: probe.terminal is not None, t.timing.no_signal_window):
        raise AssertionError(
            f"{probe.terminal} arrived after cancel() (called from inside on_next, so the "
            "publisher knew before its next signal)"
        )


def rule_1_10_same_subscriber_twice_is_rejected(t: PublisherContext) -> None:
    """rxpipe extension: subscribing the same subscriber again is answered with ``on_error``.

    Rule 1.10 itself constrains callers (do not do it), not publishers.
    """
    log = _SignalLog()
    publisher = t.publisher(1)
    try:
        t.subscribe(publisher, log)
        if not t.wait_until(lambda: bool(log.subscriptions)):
            raise RuleViolation("1.9", "no on_subscribe after subscribe()")
        t.subscribe(publisher, log)
        if not t.wait_until(lambda: bool(log.errors)):
            raise AssertionError(
                "a second subscribe() of the same subscriber was not answered with on_error"
            )
    finally:
        log.cancel_all()


def rule_1_11_each_subscriber_gets_signals(t: PublisherContext) -> None:
    """Two subscribers of one publisher each get ``on_next`` or ``on_complete``."""
    if t.max_subscribers is not None and t.max_subscribers < 2:
        raise CheckSkipped(f"max_subscribers={t.max_subscribers}")
    publisher = t.publisher(1)
    probes = [t.probe(name="first"), t.probe(name="second")]
    for probe in probes:
        t.subscribe(publisher, probe)
    for probe in probes:
        probe.expect_subscribed()
        probe.request(1)
    for probe in probes:
        t.wait_until(_got_a_signal(probe))
        if not probe.items and (probe.terminal is None or probe.terminal.kind != "on_complete"):
            got = probe.terminal or "nothing"
            raise AssertionError(
                f"{probe.name} subscriber: expected on_next or on_complete, got {got}"
            )


# -- rule 2.13 from the publisher's side ------------------------------------------------------


def rule_2_13_raising_on_next_cancels_and_is_logged(t: PublisherContext) -> None:
    """A subscriber whose ``on_next`` raises is cancelled; (rxpipe extension) the error is
    logged on the ``"rxpipe"`` logger."""
    error = DeliberateError("raised on purpose by the conformance kit from on_next")

    def boom(probe: ProbeSubscriber[Any], item: object) -> None:
        raise error

    with _error_log() as records:
        probe = t.subscribed(5, on_next_hook=boom)
        probe.request(5)
        probe.expect_next()
        if t.wait_until(lambda: len(probe.signals) > 2, t.timing.no_signal_window):
            later = ", ".join(str(s) for s in probe.signals[2:])
            raise AssertionError(
                f"after on_next raised, the subscription must count as cancelled, but got {later}"
            )
        if t.rxpipe_extensions and not t.wait_until(lambda: _logged(records, error)):
            raise ExtensionFailure(
                "the exception raised by on_next was not logged at ERROR on the 'rxpipe' logger"
            )


def rule_2_13_raising_on_subscribe_is_contained(t: PublisherContext) -> None:
    """A subscriber whose ``on_subscribe`` raises: ``subscribe`` returns, nothing follows;
    (rxpipe extension) the error is logged on the ``"rxpipe"`` logger."""
    error = DeliberateError("raised on purpose by the conformance kit from on_subscribe")

    def boom(probe: ProbeSubscriber[Any]) -> None:
        raise error

    with _error_log() as records:
        probe = t.probe(on_subscribe_hook=boom)
        publisher = t.publisher(3)
        try:
            publisher.subscribe(probe)
        except Exception as exc:
            raise AssertionError(
                f"subscribe() propagated the exception raised by on_subscribe: {exc!r}"
            ) from None
        probe.expect_subscribed()
        probe.request(3)
        probe.expect_no_signal()
        if t.rxpipe_extensions and not t.wait_until(lambda: _logged(records, error)):
            raise ExtensionFailure(
                "the exception raised by on_subscribe was not logged at ERROR on the "
                "'rxpipe' logger"
            )


# -- rule 3.x: subscriptions -------------------------------------------------------------------


def rule_3_3_recursion_depth_is_bounded(t: PublisherContext) -> None:
    """``request`` inside ``on_next`` must not call ``on_next`` again on the same stack."""
    t.require_reentrancy()
    bound = t.recursion_bound
    n = max(10, bound + 1)
    local = threading.local()
    deepest = [0]

    def hook(probe: ProbeSubscriber[Any], item: object) -> None:
        depth = getattr(local, "depth", 0) + 1
        local.depth = depth
        deepest[0] = max(deepest[0], depth)
        try:
            if depth <= bound:
                probe.request(1)
        finally:
            local.depth = depth - 1

    probe = t.subscribed(n, on_next_hook=hook)
    probe.request(1)
    t.wait_until(lambda: len(probe.items) >= n or deepest[0] > bound)
    if deepest[0] > bound:
        raise AssertionError(
            f"on_next was called from inside request() made in on_next: recursion depth "
            f"{deepest[0]}, expected at most {bound}"
        )
    if len(probe.items) < n:
        raise AssertionError(f"requested one by one from on_next: {len(probe.items)} of {n}")


def rule_3_3_long_synchronous_request_chain_completes(t: PublisherContext) -> None:
    """100,000 elements requested one at a time from ``on_next``: no ``RecursionError``."""
    t.require_reentrancy()
    n = t.recursion_elements
    if n > t.max_elements:
        raise CheckSkipped(
            f"needs {n} elements and max_elements={t.max_elements}; "
            "lower recursion_elements= to run it"
        )
    chain = _ChainSubscriber()
    try:
        t.subscribe(t.publisher(n), chain)
    except RecursionError:
        raise AssertionError(f"RecursionError after {chain.count} of {n} elements") from None
    last = -1
    while not chain.finished.wait(t.timing.timeout) and chain.count != last:
        last = chain.count  # still moving: an asynchronous publisher may take a while
    if chain.recursion is not None:
        raise AssertionError(
            f"RecursionError after {chain.count} of {n} elements: re-entrant request() "
            "grows the stack"
        )
    if chain.error is not None:
        raise AssertionError(f"on_error({chain.error!r}) after {chain.count} of {n} elements")
    if chain.count < n:
        raise AssertionError(f"stalled after {chain.count} of {n} elements")
    if not chain.finished.is_set():
        raise RuleViolation("1.5", f"no on_complete after all {n} elements")


def rule_3_5_cancel_is_thread_safe(t: PublisherContext) -> None:
    """``cancel`` from 8 threads at once, 10 times each: no exception, no signal."""
    probe = t.subscribed(3)
    threads = 8
    barrier = threading.Barrier(threads)

    def cancel_many() -> None:
        barrier.wait()
        for _ in range(10):
            probe.cancel()

    workers = [threading.Thread(target=cancel_many, name=f"tck-3.5-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    probe.expect_no_signal()


def rule_3_6_request_after_cancel_is_a_no_op(t: PublisherContext) -> None:
    """After ``cancel``, requests (even illegal ones) produce no signal."""
    probe = t.subscribed(3)
    probe.cancel()
    for n in (1, 1, 1, 0, -1):
        probe.request(n)
    probe.expect_no_signal()


def rule_3_7_cancel_after_cancel_is_a_no_op(t: PublisherContext) -> None:
    """Repeated ``cancel`` calls return normally and produce no signal."""
    probe = t.subscribed(1)
    for _ in range(3):
        probe.cancel()
    probe.expect_no_signal()


def rule_3_8_requests_add_up(t: PublisherContext) -> None:
    """``request(2)`` then ``request(3)``: exactly 5 elements."""
    probe = t.subscribed(10)
    probe.request(2)
    probe.request(3)
    probe.expect_next_n(5)
    probe.expect_no_signal()
    probe.cancel()


def _bad_requests(t: PublisherContext, values: tuple[object, ...]) -> None:
    probes: list[ProbeSubscriber[Any]] = []
    for value in values:
        probe = t.subscribed(10)
        probe.request(cast(int, value))
        try:
            error = probe.expect_error(BaseException)
        except AssertionError as exc:
            raise AssertionError(f"request({short(value)}) must signal on_error: {exc}") from None
        if not isinstance(error, ValueError):
            raise AssertionError(
                f"request({short(value)}) signalled on_error({error!r}); expected a ValueError"
            )
        if t.rxpipe_extensions and "3.9" not in str(error):
            raise ExtensionFailure(
                f"request({short(value)}): the ValueError should name rule 3.9: {error!r}"
            )
        probes.append(probe)
    time.sleep(t.timing.no_signal_window)
    for probe in probes:
        probe.expect_no_signal(0)


def rule_3_9_request_zero_signals_value_error(t: PublisherContext) -> None:
    """``request(0)`` signals ``on_error(ValueError)``; ``request`` itself does not raise."""
    _bad_requests(t, (0,))


def rule_3_9_request_negative_signals_value_error(t: PublisherContext) -> None:
    """``request(-1)`` and ``request(-2**63)`` signal ``on_error(ValueError)``."""
    _bad_requests(t, (-1, -(2**63)))


def rule_3_9_request_non_int_signals_value_error(t: PublisherContext) -> None:
    """rxpipe extension: ``True``, ``1.5`` and ``"3"`` are not counts: ``on_error(ValueError)``.

    The rules speak of a ``long n``; a plain Python publisher may well count ``True`` as 1.
    """
    _bad_requests(t, (True, 1.5, "3"))


def rule_3_12_cancel_makes_the_publisher_stop(t: PublisherContext) -> None:
    """Cancelled from inside the first ``on_next`` of 10 requested: the stream stops."""
    t.require_reentrancy()
    demand = 10
    probe = t.subscribed(20, on_next_hook=_cancel_at_first)
    probe.request(demand)
    probe.expect_next()
    window = t.timing.no_signal_window
    count, quiet = _quiet_count(
        t,
        lambda: len(probe.items),
        window=window,
        deadline=time.monotonic() + t.timing.timeout * 10,
    )
    if count >= demand:
        raise AssertionError(
            f"cancel() had no effect: all {count - 1} remaining requested elements were "
            "still delivered"
        )
    if not quiet:
        raise AssertionError(f"signals did not stop after cancel(): {count} elements so far")


def _take_one_and_cancel(
    t: PublisherContext, publisher: Publisher[Any]
) -> weakref.ref[ProbeSubscriber[Any]]:
    """Subscribe, take one element, cancel; return only a weak reference to the subscriber."""
    probe = t.probe(register=False, name="rule 3.13 probe")
    try:
        t.subscribe(publisher, probe)
        probe.expect_subscribed()
        probe.request(1)
        probe.expect_next()
        probe.cancel()
    finally:
        t.adopt(probe.violations)
    return weakref.ref(probe)


def rule_3_13_cancel_drops_the_subscriber(t: PublisherContext) -> None:
    """After ``cancel`` the publisher lets go of the subscriber (``gc.collect`` retried)."""
    publisher = t.publisher(3)
    ref = _take_one_and_cancel(t, publisher)
    deadline = time.monotonic() + t.timing.gc_timeout
    while ref() is not None:
        gc.collect()
        if ref() is None:
            return
        if time.monotonic() >= deadline:
            held = ref()
            holders = sorted({type(r).__name__ for r in gc.get_referrers(held)} - {"frame"})
            del held
            raise AssertionError(
                f"the subscriber was still referenced {t.timing.gc_timeout:.3g} s after "
                f"cancel() (referrers: {', '.join(holders) or 'unknown'})"
            )
        time.sleep(0.01)


def rule_3_17_demand_up_to_max_demand_is_supported(t: PublisherContext) -> None:
    """``request(MAX_DEMAND)`` on 3 elements: 3, then ``on_complete``, no error."""
    probe = t.subscribed(3)
    probe.request(MAX_DEMAND)
    probe.expect_next_n(3)
    t.expect_complete(probe, items=3)


def rule_3_17_cumulative_demand_up_to_max_demand_is_supported(t: PublisherContext) -> None:
    """``MAX_DEMAND // 2`` twice plus 1: the same."""
    probe = t.subscribed(3)
    half = MAX_DEMAND // 2
    for n in (half, half, 1):
        probe.request(n)
    probe.expect_next_n(3)
    t.expect_complete(probe, items=3)


def rule_3_17_demand_beyond_max_demand_is_unbounded(t: PublisherContext) -> None:
    """Demand summing above ``MAX_DEMAND``, or ``request(2**64)``: unbounded, never an error."""
    t.require_reentrancy()

    def twice(probe: ProbeSubscriber[Any]) -> None:
        probe.request(MAX_DEMAND)
        probe.request(MAX_DEMAND)

    def more(probe: ProbeSubscriber[Any], item: object) -> None:
        if len(probe.items) <= 3:
            probe.request(MAX_DEMAND)

    probes = [t.subscribed(10, on_subscribe_hook=twice), t.subscribed(10, on_next_hook=more)]
    huge = t.subscribed(10)
    huge.request(2**64)
    probes[1].request(MAX_DEMAND)
    for probe in [*probes, huge]:
        probe.expect_next_n(10)
        t.expect_complete(probe, items=10)


# -- small subscribers the checks need -------------------------------------------------------


class _SignalLog:
    """Records signals without judging them: for checks where a probe would object."""

    __slots__ = ("__weakref__", "_lock", "errors", "subscriptions")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.subscriptions: list[Subscription] = []
        self.errors: list[BaseException] = []

    def on_subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self.subscriptions.append(subscription)

    def on_next(self, item: object) -> None:
        pass

    def on_error(self, error: BaseException) -> None:
        with self._lock:
            self.errors.append(error)

    def on_complete(self) -> None:
        pass

    def cancel_all(self) -> None:
        with self._lock:
            subscriptions = list(self.subscriptions)
        for subscription in subscriptions:
            try:
                subscription.cancel()
            except Exception:
                pass  # rule 3.15 is checked elsewhere


class _ChainSubscriber:
    """Requests one element at a time from inside ``on_next``; counts, stores nothing."""

    __slots__ = ("__weakref__", "count", "error", "finished", "recursion", "subscription")

    def __init__(self) -> None:
        self.subscription: Subscription | None = None
        self.count = 0
        self.error: BaseException | None = None
        self.recursion: RecursionError | None = None
        self.finished = threading.Event()

    def on_subscribe(self, subscription: Subscription) -> None:
        self.subscription = subscription
        subscription.request(1)

    def on_next(self, item: object) -> None:
        self.count += 1
        subscription = self.subscription
        if self.recursion is not None or subscription is None:
            return
        try:
            subscription.request(1)
        except RecursionError as exc:
            self.recursion = exc  # no calls here: the stack is exhausted

    def on_error(self, error: BaseException) -> None:
        self.error = error
        self.finished.set()

    def on_complete(self) -> None:
        self.finished.set()


# -- the entry points --------------------------------------------------------------------------

#: The checks that test only rxpipe's additions to the rules (``rxpipe_extensions=True``).
_EXTENSION_CHECKS: Final = frozenset(
    {rule_1_10_same_subscriber_twice_is_rejected, rule_3_9_request_non_int_signals_value_error}
)

PUBLISHER_CHECKS: Final[tuple[Check[PublisherContext], ...]] = tuple(
    Check(f, extension=f in _EXTENSION_CHECKS)
    for f in (
        rule_1_9_subscribe_none_raises_type_error,
        rule_1_9_on_subscribe_comes_first_and_once,
        rule_3_2_request_is_reentrant_from_on_subscribe_and_on_next,
        rule_1_1_delivers_no_more_than_requested,
        rule_1_2_may_deliver_fewer_than_requested_then_complete,
        rule_1_3_signals_are_serial,
        rule_1_4_failed_publisher_signals_on_error,
        rule_1_5_completes_after_the_last_element,
        rule_1_5_empty_stream_completes,
        rule_1_6_requests_and_cancel_after_completion_are_no_ops,
        rule_1_7_no_signal_after_on_complete,
        rule_1_7_no_signal_after_on_error,
        rule_1_8_no_terminal_signal_after_cancel,
        rule_1_10_same_subscriber_twice_is_rejected,
        rule_1_11_each_subscriber_gets_signals,
        rule_2_13_raising_on_next_cancels_and_is_logged,
        rule_2_13_raising_on_subscribe_is_contained,
        rule_3_3_recursion_depth_is_bounded,
        rule_3_3_long_synchronous_request_chain_completes,
        rule_3_5_cancel_is_thread_safe,
        rule_3_6_request_after_cancel_is_a_no_op,
        rule_3_7_cancel_after_cancel_is_a_no_op,
        rule_3_8_requests_add_up,
        rule_3_9_request_zero_signals_value_error,
        rule_3_9_request_negative_signals_value_error,
        rule_3_9_request_non_int_signals_value_error,
        rule_3_12_cancel_makes_the_publisher_stop,
        rule_3_13_cancel_drops_the_subscriber,
        rule_3_17_demand_up_to_max_demand_is_supported,
        rule_3_17_cumulative_demand_up_to_max_demand_is_supported,
        rule_3_17_demand_beyond_max_demand_is_unbounded,
    )
)
