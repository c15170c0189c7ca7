"""The probes record what they see, flag rule violations, and wait with timeouts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rxpipe.spec import MAX_DEMAND, Subscription
from rxpipe.testing import (
    ANY,
    IterablePublisher,
    MisbehavingPublisher,
    ProbePublisher,
    ProbeSubscriber,
    ProbeSubscription,
    Violation,
)

pytestmark = pytest.mark.timeout(20)  # threads are involved: never hang the suite


def rules(probe: ProbeSubscriber[Any] | ProbePublisher[Any] | ProbeSubscription) -> set[str]:
    return {v.rule for v in probe.violations}


def subscribed(publisher: Any, **options: Any) -> ProbeSubscriber[Any]:
    probe: ProbeSubscriber[Any] = ProbeSubscriber(**options)
    publisher.subscribe(probe)
    probe.expect_subscribed()
    return probe


class Raising:
    """A subscription whose methods raise: what the probe must record, not propagate."""

    def request(self, n: int) -> None:
        raise RuntimeError("request failed")

    def cancel(self) -> None:
        raise RuntimeError("cancel failed")


# -- ProbeSubscriber: recording and expectations ---------------------------------------------


def test_probe_records_elements_in_order_and_none_is_an_element() -> None:
    probe = subscribed(IterablePublisher(lambda: [None, 1, 2]))
    probe.request(2)
    assert probe.expect_next(None) is None
    assert probe.expect_next() == 1
    assert probe.outstanding == 0
    probe.request(5)
    assert probe.expect_next_n(1) == [2]
    probe.expect_complete()
    probe.expect_no_signal()
    assert probe.items == [None, 1, 2]
    assert [s.kind for s in probe.signals] == [
        "on_subscribe",
        "on_next",
        "on_next",
        "on_next",
        "on_complete",
    ]
    assert probe.terminal is not None
    assert str(probe.terminal) == "on_complete()"
    probe.assert_no_violations()


def test_expect_next_reports_a_wrong_value_and_a_wrong_signal() -> None:
    probe = subscribed(IterablePublisher(lambda: [1]))
    probe.request(2)
    with pytest.raises(AssertionError, match=r"expected on_next\(2\), got on_next\(1\)"):
        probe.expect_next(2)
    with pytest.raises(AssertionError, match=r"expected on_next\(\), got on_complete\(\)"):
        probe.expect_next(ANY)


def test_expectations_time_out_with_a_message() -> None:
    probe = subscribed(IterablePublisher(lambda: [1, 2]))
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"expected on_next\(\) within 0.03 s, got nothing"):
        probe.expect_next(timeout=0.03)
    assert time.monotonic() - started < 1
    probe.request(1)
    with pytest.raises(AssertionError, match="element 2 of 3"):
        probe.expect_next_n(3, timeout=0.03)
    with pytest.raises(AssertionError, match="on_complete"):
        probe.expect_complete(timeout=0.01)


def test_expect_error_checks_the_class() -> None:
    probe = subscribed(IterablePublisher(lambda: [1]))
    probe.request(0)
    error = probe.expect_error(ValueError)
    assert "rule 3.9" in str(error)
    other = subscribed(IterablePublisher(lambda: [1]))
    other.request(0)
    with pytest.raises(AssertionError, match=r"expected on_error\(KeyError\), got on_error"):
        other.expect_error(KeyError)


def test_expect_no_signal_fails_on_any_signal() -> None:
    probe = subscribed(IterablePublisher(lambda: [7]))
    probe.request(1)
    with pytest.raises(AssertionError, match=r"expected no signal within .* got on_next\(7\)"):
        probe.expect_no_signal(0.01)


def test_expect_subscribed_blames_rule_1_9() -> None:
    probe: ProbeSubscriber[int] = ProbeSubscriber()
    with pytest.raises(AssertionError, match=r"^rule 1\.9: no on_subscribe"):
        probe.expect_subscribed(timeout=0.01)
    with pytest.raises(AssertionError, match="no subscription yet"):
        probe.request(1)


def test_timeout_scale_multiplies_configured_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXPIPE_TCK_TIMEOUT_SCALE", "2")
    probe: ProbeSubscriber[int] = ProbeSubscriber(timeout=0.02)
    with pytest.raises(AssertionError, match=r"within 0\.04 s"):
        probe.expect_subscribed()


# -- ProbeSubscriber: violations -----------------------------------------------------------------


def test_on_next_beyond_demand_is_rule_1_1() -> None:
    probe = subscribed(MisbehavingPublisher(range(3), ignore_demand=True))
    probe.request(1)
    assert probe.items == [0, 1, 2]
    assert rules(probe) == {"1.1"}
    with pytest.raises(AssertionError, match=r"rule 1\.1: on_next\(1\) without outstanding"):
        probe.assert_no_violations()


def test_signal_after_terminal_is_rule_1_7() -> None:
    probe = subscribed(MisbehavingPublisher([1], signal_after_terminal=True))
    probe.request(5)
    probe.expect_next(1)
    probe.expect_complete()
    assert rules(probe) == {"1.7"}


def test_concurrent_signals_are_rule_1_3() -> None:
    def slow(probe: ProbeSubscriber[int], item: int) -> None:
        time.sleep(0.05)  # long enough for both barrier-released threads to overlap

    probe = subscribed(MisbehavingPublisher(range(4), threads=2), on_next_hook=slow)
    probe.request(4)
    assert sorted(probe.items) == [0, 1, 2, 3]
    assert rules(probe) == {"1.3"}


def test_reentrant_signals_on_one_thread_are_allowed() -> None:
    def more(probe: ProbeSubscriber[int], item: int) -> None:
        probe.request(1)

    probe = subscribed(MisbehavingPublisher(range(50)), on_next_hook=more)
    probe.request(1)
    probe.expect_next_n(50)
    probe.expect_complete()
    probe.assert_no_violations()


def test_signals_after_cancel_are_recorded_but_allowed() -> None:
    probe = subscribed(MisbehavingPublisher(range(3), signal_after_cancel=True))
    probe.cancel()
    assert probe.is_cancelled
    probe.request(3)  # rule 2.8: a subscriber copes with elements still on their way
    assert probe.items == [0, 1, 2]
    probe.assert_no_violations()


def test_second_on_subscribe_is_rule_1_9_and_is_cancelled() -> None:
    probe = subscribed(IterablePublisher(lambda: [1]))
    second = ProbeSubscription("second")
    probe.on_subscribe(second)
    assert second.is_cancelled
    assert second.requests == ()
    assert rules(probe) == {"1.9"}


def test_signal_before_on_subscribe_is_rule_1_9() -> None:
    probe: ProbeSubscriber[int] = ProbeSubscriber()
    probe.on_next(1)
    assert rules(probe) == {"1.9"}


def test_none_subscription_or_error_raises_type_error() -> None:
    probe: ProbeSubscriber[int] = ProbeSubscriber()
    with pytest.raises(TypeError, match=r"rule 2\.13"):
        probe.on_subscribe(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"rule 2\.13"):
        probe.on_error(None)  # type: ignore[arg-type]
    assert rules(probe) == {"2.13"}


@pytest.mark.parametrize(
    ("before", "n", "rule"),
    [
        ("nothing", 1, "3.16"),
        ("nothing", 0, "3.9"),
        ("nothing", True, "3.9"),
        ("cancel", 1, "3.6"),
    ],
)
def test_a_raising_request_is_recorded_with_its_rule(before: str, n: Any, rule: str) -> None:
    probe: ProbeSubscriber[int] = ProbeSubscriber()
    probe.on_subscribe(Raising())
    if before == "cancel":
        probe.cancel()
    probe.request(n)  # does not raise
    assert rule in rules(probe)


def test_a_raising_cancel_is_rule_3_15_then_3_7() -> None:
    probe: ProbeSubscriber[int] = ProbeSubscriber()
    probe.on_subscribe(Raising())
    probe.cancel()
    probe.cancel()
    assert [v.rule for v in probe.violations] == ["3.15", "3.7"]


def test_an_illegal_request_is_not_counted_as_demand() -> None:
    probe = subscribed(MisbehavingPublisher(range(3)))
    probe.request(True)  # MisbehavingPublisher answers on_error, as it should
    probe.expect_error(ValueError)
    assert probe.outstanding == 0
    probe.assert_no_violations()


def test_an_illegal_request_honoured_as_demand_is_rule_3_9() -> None:
    probe: ProbeSubscriber[object] = ProbeSubscriber()

    class Lenient:
        def request(self, n: int) -> None:
            probe.on_next(n)  # treats request(True) as request(1)

        def cancel(self) -> None:
            pass

    probe.on_subscribe(Lenient())
    probe.request(True)
    assert [v.rule for v in probe.violations] == ["3.9"]
    assert "request(True)" in probe.violations[0].message


def test_hook_exceptions_propagate_to_the_publisher() -> None:
    def boom(probe: ProbeSubscriber[int], item: int) -> None:
        raise KeyError(item)

    probe = subscribed(MisbehavingPublisher([1, 2]), on_next_hook=boom)
    probe.request(1)  # MisbehavingPublisher does not catch: request raises, the probe records
    assert [v.rule for v in probe.violations] == ["2.13"]
    assert "propagated the subscriber's own exception" in probe.violations[0].message


def test_unbounded_demand_is_not_decremented() -> None:
    probe = subscribed(IterablePublisher(lambda: range(3)))
    probe.request(MAX_DEMAND)
    probe.expect_next_n(3)
    assert probe.outstanding == MAX_DEMAND


def test_many_threads_are_recorded_without_loss() -> None:
    probe = subscribed(MisbehavingPublisher(range(400), threads=4))
    probe.request(400)
    assert sorted(probe.items) == list(range(400))
    probe.expect_next_n(400)
    probe.expect_complete()


def test_violation_and_signal_strings() -> None:
    assert str(Violation("1.1", "too many")) == "rule 1.1: too many"
    assert repr(ANY) == "ANY"
    assert repr(ProbeSubscriber(name="x")) == "<ProbeSubscriber 'x'>"


# -- ProbePublisher and ProbeSubscription ---------------------------------------------------------


class Recorder:
    """A minimal subscriber that can be told to misbehave in on_complete."""

    def __init__(self, *, request_in_terminal: bool = False) -> None:
        self.subscription: Subscription | None = None
        self.items: list[object] = []
        self.request_in_terminal = request_in_terminal
        self.completed = False

    def on_subscribe(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def on_next(self, item: object) -> None:
        self.items.append(item)

    def on_error(self, error: BaseException) -> None:
        self.on_complete()

    def on_complete(self) -> None:
        self.completed = True
        if self.request_in_terminal and self.subscription is not None:
            self.subscription.request(1)


def test_probe_publisher_drives_a_subscriber() -> None:
    publisher: ProbePublisher[int] = ProbePublisher()
    subscriber = Recorder()
    publisher.subscribe(subscriber)
    assert publisher.subscriber is subscriber
    assert subscriber.subscription is publisher.subscription
    publisher.expect_no_request(0.01)
    subscriber.subscription.request(2)
    assert publisher.expect_request() == 2
    publisher.send_next(1)
    publisher.send_next(2)
    with pytest.raises(AssertionError, match=r"rule 1\.1"):
        publisher.send_next(3)
    publisher.send_next(3, force=True)
    publisher.send_complete()
    assert subscriber.items == [1, 2, 3]
    assert subscriber.completed
    assert publisher.violations == ()


def test_probe_publisher_flags_requests_from_terminal_signals_as_rule_2_3() -> None:
    publisher: ProbePublisher[int] = ProbePublisher()
    publisher.subscribe(Recorder(request_in_terminal=True))
    publisher.send_error(RuntimeError("upstream failed"))
    assert rules(publisher) == {"2.3"}


def test_probe_subscription_flags_non_positive_requests_as_rule_2_1() -> None:
    subscription = ProbeSubscription()
    subscription.request(0)
    assert rules(subscription) == {"2.1"}
    with pytest.raises(AssertionError, match=r"rule 2\.1"):
        subscription.expect_request(0.01)
    assert subscription.outstanding == 0


def test_probe_subscription_waits_for_cancel() -> None:
    subscription = ProbeSubscription()
    with pytest.raises(AssertionError, match="cancel"):
        subscription.expect_cancel(0.01)
    subscription.cancel()
    subscription.expect_cancel(0.01)
    assert subscription.is_cancelled
    with pytest.raises(AssertionError, match="request"):
        subscription.expect_request(0.01)


def test_probe_publisher_refuses_none_and_has_no_subscriber_before_subscribe() -> None:
    publisher: ProbePublisher[int] = ProbePublisher()
    with pytest.raises(TypeError):
        publisher.subscribe(None)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="nothing has subscribed"):
        _ = publisher.subscriber
    with pytest.raises(AssertionError, match="nothing has subscribed"):
        publisher.expect_request(0.01)


# -- MisbehavingPublisher --------------------------------------------------------------------------


def test_misbehaving_publisher_without_flags_behaves() -> None:
    probe = subscribed(MisbehavingPublisher("abc"))
    probe.request(2)
    assert probe.expect_next_n(2) == ["a", "b"]
    probe.expect_no_signal(0.01)
    probe.request(1)
    probe.expect_next("c")
    probe.expect_complete()
    probe.assert_no_violations()


def test_misbehaving_publisher_stops_after_cancel_without_the_flag() -> None:
    probe = subscribed(MisbehavingPublisher(range(3)))
    probe.cancel()
    probe.request(3)
    probe.expect_no_signal(0.01)


def test_misbehaving_publisher_reraises_worker_exceptions_and_joins_its_threads() -> None:
    def boom(probe: ProbeSubscriber[int], item: int) -> None:
        raise KeyError(item)

    probe = subscribed(MisbehavingPublisher(range(4), threads=2), on_next_hook=boom)
    probe.request(4)  # the KeyError comes back through request; the probe records it
    assert "2.13" in rules(probe)


def test_misbehaving_publisher_validates_threads() -> None:
    with pytest.raises(ValueError, match="threads"):
        MisbehavingPublisher([1], threads=0)
    with pytest.raises(TypeError):
        MisbehavingPublisher([1]).subscribe(None)  # type: ignore[arg-type]
