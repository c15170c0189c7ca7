"""verify_subscriber and verify_processor: the references pass, each flaw fails its rule."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rxpipe.errors import MissingBackpressureError
from rxpipe.spec import Subscriber, Subscription
from rxpipe.testing import (
    ConformanceError,
    IdentityProcessor,
    ListSubscriber,
    MisbehavingPublisher,
    ProbeSubscriber,
    run_processor_checks,
    run_subscriber_checks,
    verify_processor,
    verify_subscriber,
)
from rxpipe.testing.tck import PROCESSOR_CHECKS, PUBLISHER_CHECKS, SUBSCRIBER_CHECKS

FAST: dict[str, Any] = {"timeout": 0.1, "no_signal_window": 0.02}


class Puppet:
    """A subscriber that requests and cancels when told to, with switchable flaws."""

    def __init__(self, *flaws: str) -> None:
        self.flaws = set(flaws)
        self.subscription: Subscription | None = None
        self.items: list[object] = []

    def trigger_request(self, n: int) -> None:
        assert self.subscription is not None
        self.subscription.request(n)

    def trigger_cancel(self) -> None:
        assert self.subscription is not None
        self.subscription.cancel()

    def on_subscribe(self, subscription: Subscription | None) -> None:
        if subscription is None:
            if "accepts_none" not in self.flaws:
                raise TypeError("on_subscribe(None)")
            return
        if self.subscription is not None:
            if "keeps_second_subscription" not in self.flaws:
                subscription.cancel()
            return
        self.subscription = subscription
        if "never_requests" not in self.flaws:
            subscription.request(4)

    def on_next(self, item: object) -> None:
        self.items.append(item)
        if len(self.items) % 4 == 0 and self.subscription is not None:
            self.subscription.request(4)

    def on_error(self, error: BaseException | None) -> None:
        if error is None and "accepts_none" not in self.flaws:
            raise TypeError("on_error(None)")

    def on_complete(self) -> None:
        if "raises_on_complete" in self.flaws:
            raise RuntimeError("on_complete failed")
        if "requests_in_on_complete" in self.flaws and self.subscription is not None:
            self.subscription.request(1)


def verify_puppet(*flaws: str) -> None:
    # a subscriber that only requests when told must be told: no trigger for never_requests
    triggers = "never_requests" not in flaws
    verify_subscriber(
        lambda: Puppet(*flaws),
        trigger_request=Puppet.trigger_request if triggers else None,
        trigger_cancel=Puppet.trigger_cancel if triggers else None,
        **FAST,
    )


def test_reference_list_subscriber_passes() -> None:
    result = run_subscriber_checks(ListSubscriber)
    assert result.ok, result.summary()
    assert {name for name, _ in result.skipped} == {
        "rule_2_6_cancel_reaches_the_subscription",
        "rule_2_8_accepts_on_next_after_cancel",
        "rule_3_8_subscriber_accepts_what_it_requested",
    }


def test_puppet_without_flaws_passes_every_subscriber_check() -> None:
    result = run_subscriber_checks(
        Puppet, trigger_request=Puppet.trigger_request, trigger_cancel=Puppet.trigger_cancel
    )
    assert result.ok, result.summary()
    assert result.skipped == ()
    assert set(result.passed) == {c.name for c in SUBSCRIBER_CHECKS}


@pytest.mark.parametrize(
    ("flaw", "rules"),
    [
        ("never_requests", {"2.1"}),
        ("keeps_second_subscription", {"2.5"}),
        ("requests_in_on_complete", {"2.3"}),
        ("accepts_none", {"2.13"}),
        ("raises_on_complete", {"2.13"}),
    ],
)
def test_flawed_subscriber_fails_exactly_its_rules(flaw: str, rules: set[str]) -> None:
    with pytest.raises(ConformanceError) as caught:
        verify_puppet(flaw)
    assert caught.value.rules == rules, str(caught.value)


class Wrapped:
    """An identity processor with a flaw bolted on."""

    def __init__(self, flaw: str) -> None:
        self.inner: IdentityProcessor[Any] = IdentityProcessor()
        self.flaw = flaw
        self.first = True

    def subscribe(self, subscriber: Subscriber[Any]) -> None:
        self.inner.subscribe(subscriber)

    def on_subscribe(self, subscription: Subscription) -> None:
        if self.flaw == "keeps_upstream" and subscription is not None and self.first:
            subscription = _NoCancel(subscription)
        self.first = False
        self.inner.on_subscribe(subscription)

    def on_next(self, item: Any) -> None:
        self.inner.on_next(item)

    def on_error(self, error: BaseException) -> None:
        if self.flaw == "swallows_errors" and error is not None:
            self.inner.on_complete()
        else:
            self.inner.on_error(error)

    def on_complete(self) -> None:
        self.inner.on_complete()


class _NoCancel:
    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def request(self, n: int) -> None:
        self.subscription.request(n)

    def cancel(self) -> None:
        pass


def test_reference_processor_passes_every_check() -> None:
    result = run_processor_checks(IdentityProcessor, rxpipe_extensions=True)
    assert result.ok, result.summary()
    assert result.skipped == (("rule_1_11_each_subscriber_gets_signals", "max_subscribers=1"),)
    every = {c.name for c in PUBLISHER_CHECKS} | {c.name for c in SUBSCRIBER_CHECKS}
    every |= {c.name for c in PROCESSOR_CHECKS}
    assert set(result.passed) == every - {"rule_1_11_each_subscriber_gets_signals"}


def test_verify_processor_returns_none_when_all_pass() -> None:
    returned = verify_processor(IdentityProcessor, only=["4.2", "3.9", "2.5"])  # type: ignore[func-returns-value]
    assert returned is None


@pytest.mark.parametrize(
    ("flaw", "rules"),
    [
        ("keeps_upstream", {"2.6"}),
        # an error that becomes completion fails every check that expects the error
        ("swallows_errors", {"1.4", "1.7", "4.2"}),
    ],
)
@pytest.mark.timeout(30)
def test_flawed_processor_fails_exactly_its_rules(
    flaw: str, rules: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="rxpipe")
    with pytest.raises(ConformanceError) as caught:
        verify_processor(
            lambda: Wrapped(flaw), recursion_elements=5_000, rxpipe_extensions=True, **FAST
        )
    assert caught.value.rules == rules, str(caught.value)


def test_processor_only_selects_across_both_sides() -> None:
    result = run_processor_checks(
        IdentityProcessor, only=["rule_4_2_upstream_error_reaches_downstream_at_once", "1.1"]
    )
    assert sorted(result.passed) == [
        "rule_1_1_delivers_no_more_than_requested",
        "rule_4_2_upstream_error_reaches_downstream_at_once",
    ]
    with pytest.raises(ValueError, match="unknown"):
        run_processor_checks(IdentityProcessor, only=["rule_9_9_nothing"])


def test_identity_processor_signals_missing_backpressure_for_an_upstream_ignoring_demand() -> None:
    processor: IdentityProcessor[int] = IdentityProcessor(buffer_size=4)
    MisbehavingPublisher(range(10), ignore_demand=True).subscribe(processor)
    downstream: ProbeSubscriber[int] = ProbeSubscriber()
    processor.subscribe(downstream)
    downstream.expect_subscribed()
    downstream.request(1)
    # the error overtakes the buffered element: errors pass on at once (rule 4.2)
    downstream.expect_error(MissingBackpressureError)
    downstream.expect_no_signal()
    downstream.assert_no_violations()


def test_identity_processor_rejects_a_second_subscriber() -> None:
    processor: IdentityProcessor[int] = IdentityProcessor()
    first: ProbeSubscriber[int] = ProbeSubscriber()
    second: ProbeSubscriber[int] = ProbeSubscriber()
    processor.subscribe(first)
    processor.subscribe(second)
    second.expect_subscribed()
    error = second.expect_error(ValueError)
    assert "single subscriber" in str(error)
    first.expect_subscribed()
    first.expect_no_signal()


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_identity_processor_refuses_a_bad_buffer_size(size: Any) -> None:
    with pytest.raises(ValueError, match="buffer_size"):
        IdentityProcessor(buffer_size=size)


def test_subscriber_and_processor_checks_take_rxpipe_extensions_and_default_to_the_rules() -> None:
    """No subscriber check is an rxpipe addition today: the keyword is accepted either way."""
    assert run_subscriber_checks(ListSubscriber, rxpipe_extensions=True).ok
    assert not any(c.extension for c in (*SUBSCRIBER_CHECKS, *PROCESSOR_CHECKS))
    result = run_processor_checks(IdentityProcessor, only=["1.10", "3.9"])
    assert result.ok, result.summary()
    assert {name for name, _ in result.skipped} == {
        "rule_1_10_same_subscriber_twice_is_rejected",
        "rule_3_9_request_non_int_signals_value_error",
    }
