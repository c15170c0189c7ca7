"""Rule checks for subscribers (2.x, 3.8) and for the subscriber side of processors (4.2).

The subscriber under test is driven by a :class:`~rxpipe.testing.ProbePublisher`. A
:class:`Stage` bundles it with optional "puppet" hooks: ``trigger_request(n)`` and
``trigger_cancel()`` make the subscriber request or cancel, and for a processor they act on
a :class:`~rxpipe.testing.ProbeSubscriber` subscribed downstream, which also lets the checks
see what the processor passes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast, final

from rxpipe.spec import Subscriber, Subscription
from rxpipe.testing._common import RuleViolation
from rxpipe.testing._harness import Check, CheckContext, CheckSkipped, Timing
from rxpipe.testing.probes import ProbePublisher, ProbeSubscriber

__all__ = (
    "PROCESSOR_ONLY_CHECKS",
    "SUBSCRIBER_CHECKS",
    "DeliberateError",
    "Stage",
    "SubscriberContext",
    "rule_2_1_subscriber_requests_before_receiving",
    "rule_2_3_on_complete_does_not_call_the_subscription",
    "rule_2_3_on_error_does_not_call_the_subscription",
    "rule_2_5_second_subscription_is_cancelled",
    "rule_2_6_cancel_reaches_the_subscription",
    "rule_2_8_accepts_on_next_after_cancel",
    "rule_2_9_accepts_on_complete_after_request",
    "rule_2_9_accepts_on_complete_without_request",
    "rule_2_10_accepts_on_error_after_request",
    "rule_2_10_accepts_on_error_without_request",
    "rule_2_13_on_error_none_raises_type_error",
    "rule_2_13_on_subscribe_none_raises_type_error",
    "rule_3_8_subscriber_accepts_what_it_requested",
    "rule_4_2_upstream_error_reaches_downstream_at_once",
)


class DeliberateError(Exception):
    """The exception the kit raises or sends on purpose; seeing it in a log is expected."""


@final
@dataclass(slots=True)
class Stage:
    """A subscriber under test with its optional puppet hooks and downstream probe."""

    subscriber: Subscriber[Any]
    trigger_request: Callable[[int], None] | None
    trigger_cancel: Callable[[], None] | None
    downstream: ProbeSubscriber[Any] | None


class SubscriberContext(CheckContext):
    """The context of one subscriber check."""

    def __init__(
        self,
        make_stage: Callable[[SubscriberContext], Stage],
        make_element: Callable[[int], object],
        elements: int,
        *,
        timing: Timing,
        rxpipe_extensions: bool = False,
    ) -> None:
        super().__init__(timing, rxpipe_extensions=rxpipe_extensions)
        self._make_stage = make_stage
        self.make_element = make_element
        self.elements = elements

    def stage(self) -> Stage:
        """A fresh subscriber under test (and its puppet)."""
        return self._make_stage(self)

    def subscribed_stage(self) -> tuple[Stage, ProbePublisher[Any]]:
        """A fresh stage subscribed to a fresh probe publisher."""
        stage = self.stage()
        publisher = self.probe_publisher()
        self.deliver("on_subscribe", lambda: publisher.subscribe(stage.subscriber))
        return stage, publisher

    def deliver(self, signal: str, call: Callable[[], None]) -> None:
        """Call a signal method; it must return normally (rule 2.13)."""
        try:
            call()
        except Exception as exc:
            raise RuleViolation(
                "2.13", f"{signal} raised {exc!r}; signal methods must return normally"
            ) from exc

    def send_next(self, publisher: ProbePublisher[Any], index: int) -> None:
        """Send the ``index``-th element (within the subscriber's demand)."""
        item = self.make_element(index)
        self.deliver("on_next", lambda: publisher.send_next(item))

    def require(self, stage: Stage, *hooks: str) -> None:
        """Skip unless the stage has these puppet hooks."""
        missing = [h for h in hooks if getattr(stage, h) is None]
        if missing:
            raise CheckSkipped(f"needs {' and '.join(f'{h}=' for h in missing)}")


def _wait_for_request(t: SubscriberContext, publisher: ProbePublisher[Any], wait: float) -> bool:
    try:
        publisher.expect_request(wait)
    except AssertionError as exc:
        if "got none" in str(exc):
            return False
        raise
    return True


# -- the checks --------------------------------------------------------------------------------


def rule_2_1_subscriber_requests_before_receiving(t: SubscriberContext) -> None:
    """The subscriber signals demand; it gets elements within it, then completion."""
    stage, publisher = t.subscribed_stage()
    if stage.trigger_request is not None:
        stage.trigger_request(t.elements)
    if not _wait_for_request(t, publisher, t.timing.timeout):
        raise AssertionError("the subscriber never called request(n), so it can receive nothing")
    sent = 0
    while sent < t.elements and not publisher.is_cancelled:
        if publisher.subscription.outstanding == 0:
            if not _wait_for_request(t, publisher, t.timing.no_signal_window):
                break
            continue
        t.send_next(publisher, sent)
        sent += 1
    if publisher.is_cancelled:
        return
    t.deliver("on_complete", publisher.send_complete)
    if stage.downstream is not None:
        stage.downstream.expect_next_n(sent)
        stage.downstream.expect_complete()


def rule_2_3_on_complete_does_not_call_the_subscription(t: SubscriberContext) -> None:
    """No ``request``/``cancel`` from inside ``on_complete`` (same call stack)."""
    stage = t.stage()
    subscription = t.probe_subscription("rule 2.3")
    t.deliver("on_subscribe", lambda: stage.subscriber.on_subscribe(subscription))
    with subscription.terminal_guard():
        t.deliver("on_complete", stage.subscriber.on_complete)


def rule_2_3_on_error_does_not_call_the_subscription(t: SubscriberContext) -> None:
    """No ``request``/``cancel`` from inside ``on_error`` (same call stack)."""
    stage = t.stage()
    subscription = t.probe_subscription("rule 2.3")
    error = DeliberateError("sent on purpose by the conformance kit")
    t.deliver("on_subscribe", lambda: stage.subscriber.on_subscribe(subscription))
    with subscription.terminal_guard():
        t.deliver("on_error", lambda: stage.subscriber.on_error(error))


def rule_2_5_second_subscription_is_cancelled(t: SubscriberContext) -> None:
    """A second ``on_subscribe`` while subscribed: the new subscription is cancelled."""
    stage, publisher = t.subscribed_stage()
    second = t.probe_subscription("second")
    t.deliver("on_subscribe", lambda: stage.subscriber.on_subscribe(second))
    try:
        second.expect_cancel(t.timing.timeout)
    except AssertionError:
        raise AssertionError(
            "a second on_subscribe must be answered by cancel() on the new subscription"
        ) from None
    if second.requests:
        raise AssertionError(f"requested {second.requests} on the rejected second subscription")
    t.deliver("on_complete", publisher.send_complete)


def rule_2_6_cancel_reaches_the_subscription(t: SubscriberContext) -> None:
    """A subscriber told to stop cancels its subscription (for processors: upstream)."""
    stage, publisher = t.subscribed_stage()
    t.require(stage, "trigger_cancel")
    assert stage.trigger_cancel is not None
    stage.trigger_cancel()
    try:
        publisher.expect_cancel(t.timing.timeout)
    except AssertionError:
        raise AssertionError(
            "the subscriber was told to cancel, but its subscription never was"
        ) from None


def rule_2_8_accepts_on_next_after_cancel(t: SubscriberContext) -> None:
    """An element already on its way when the subscriber cancelled is accepted quietly."""
    stage, publisher = t.subscribed_stage()
    t.require(stage, "trigger_request", "trigger_cancel")
    assert stage.trigger_request is not None
    assert stage.trigger_cancel is not None
    stage.trigger_request(1)
    publisher.expect_request(t.timing.timeout)
    stage.trigger_cancel()
    t.send_next(publisher, 0)


def rule_2_9_accepts_on_complete_without_request(t: SubscriberContext) -> None:
    """``on_complete`` right after ``on_subscribe`` is accepted."""
    stage, publisher = t.subscribed_stage()
    t.deliver("on_complete", publisher.send_complete)
    if stage.downstream is not None:
        stage.downstream.expect_complete()


def rule_2_9_accepts_on_complete_after_request(t: SubscriberContext) -> None:
    """``on_complete`` after a request is accepted."""
    stage, publisher = t.subscribed_stage()
    if stage.trigger_request is not None:
        stage.trigger_request(1)
    _wait_for_request(t, publisher, t.timing.timeout)
    t.deliver("on_complete", publisher.send_complete)
    if stage.downstream is not None:
        stage.downstream.expect_complete()


def _error_passes(t: SubscriberContext, stage: Stage, publisher: ProbePublisher[Any]) -> None:
    error = DeliberateError("sent on purpose by the conformance kit")
    t.deliver("on_error", lambda: publisher.send_error(error))
    if stage.downstream is not None:
        try:
            got = stage.downstream.expect_error()
        except AssertionError as exc:
            raise RuleViolation(
                "4.2", f"the upstream error did not reach downstream: {exc}"
            ) from None
        if got is not error:
            raise RuleViolation("4.2", f"downstream got on_error({got!r}), not the upstream error")


def rule_2_10_accepts_on_error_without_request(t: SubscriberContext) -> None:
    """``on_error`` right after ``on_subscribe`` is accepted."""
    stage, publisher = t.subscribed_stage()
    _error_passes(t, stage, publisher)


def rule_2_10_accepts_on_error_after_request(t: SubscriberContext) -> None:
    """``on_error`` after a request is accepted."""
    stage, publisher = t.subscribed_stage()
    if stage.trigger_request is not None:
        stage.trigger_request(1)
    _wait_for_request(t, publisher, t.timing.timeout)
    _error_passes(t, stage, publisher)


def rule_2_13_on_subscribe_none_raises_type_error(t: SubscriberContext) -> None:
    """``on_subscribe(None)`` raises ``TypeError``."""
    stage = t.stage()
    try:
        stage.subscriber.on_subscribe(cast(Subscription, None))
    except TypeError:
        return
    except Exception as exc:
        raise AssertionError(f"on_subscribe(None) raised {exc!r}; expected TypeError") from None
    raise AssertionError("on_subscribe(None) returned normally; it must raise TypeError")


def rule_2_13_on_error_none_raises_type_error(t: SubscriberContext) -> None:
    """``on_error(None)`` raises ``TypeError`` (``on_next(None)`` is valid in rxpipe)."""
    stage = t.stage()
    subscription = t.probe_subscription("rule 2.13")
    t.deliver("on_subscribe", lambda: stage.subscriber.on_subscribe(subscription))
    try:
        stage.subscriber.on_error(cast(BaseException, None))
    except TypeError:
        return
    except Exception as exc:
        raise AssertionError(f"on_error(None) raised {exc!r}; expected TypeError") from None
    raise AssertionError("on_error(None) returned normally; it must raise TypeError")


def rule_3_8_subscriber_accepts_what_it_requested(t: SubscriberContext) -> None:
    """Told to request 2, the subscriber accepts 2 elements (and a processor passes them on)."""
    stage, publisher = t.subscribed_stage()
    t.require(stage, "trigger_request")
    assert stage.trigger_request is not None
    stage.trigger_request(2)
    sent = 0
    while sent < 2:
        if publisher.subscription.outstanding == 0:
            if not _wait_for_request(t, publisher, t.timing.timeout):
                raise AssertionError(f"told to request 2, the subscriber requested only {sent}")
            continue
        t.send_next(publisher, sent)
        sent += 1
    if stage.downstream is not None:
        stage.downstream.expect_next_n(2)
        stage.downstream.expect_no_signal()
    stage.trigger_request(3)


def rule_4_2_upstream_error_reaches_downstream_at_once(t: SubscriberContext) -> None:
    """An upstream ``on_error`` reaches a downstream with no demand, as the same object."""
    stage, publisher = t.subscribed_stage()
    if stage.downstream is None:
        raise CheckSkipped("needs a processor (a downstream to watch)")
    _error_passes(t, stage, publisher)


SUBSCRIBER_CHECKS: Final[tuple[Check[SubscriberContext], ...]] = tuple(
    Check(f)
    for f in (
        rule_2_1_subscriber_requests_before_receiving,
        rule_2_3_on_complete_does_not_call_the_subscription,
        rule_2_3_on_error_does_not_call_the_subscription,
        rule_2_5_second_subscription_is_cancelled,
        rule_2_6_cancel_reaches_the_subscription,
        rule_2_8_accepts_on_next_after_cancel,
        rule_2_9_accepts_on_complete_without_request,
        rule_2_9_accepts_on_complete_after_request,
        rule_2_10_accepts_on_error_without_request,
        rule_2_10_accepts_on_error_after_request,
        rule_2_13_on_subscribe_none_raises_type_error,
        rule_2_13_on_error_none_raises_type_error,
        rule_3_8_subscriber_accepts_what_it_requested,
    )
)

PROCESSOR_ONLY_CHECKS: Final[tuple[Check[SubscriberContext], ...]] = (
    Check(rule_4_2_upstream_error_reaches_downstream_at_once),
)
