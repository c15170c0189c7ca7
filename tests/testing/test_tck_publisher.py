"""verify_publisher passes correct publishers and fails each flawed one under its rule only."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pytest

from rxpipe.spec import Publisher
from rxpipe.testing import (
    ConformanceError,
    IterablePublisher,
    run_publisher_checks,
    verify_publisher,
)
from rxpipe.testing.tck import PUBLISHER_CHECKS
from tests.testing.flawed import FlawedPublisher, unblock
from tests.testing.third_party import LOGGER as THIRD_PARTY_LOGGER
from tests.testing.third_party import RangePublisher

# Short timeouts: flawed publishers make checks wait for signals that never come. A chain of
# 5,000 re-entrant requests still overflows a recursive publisher's stack (about 1,000 frames).
FAST: dict[str, Any] = {
    "timeout": 0.1,
    "no_signal_window": 0.02,
    "gc_timeout": 0.1,
    "recursion_elements": 5_000,
}


def reference(n: int) -> Publisher[int]:
    return IterablePublisher(lambda: range(n))


def reference_failed() -> Publisher[int]:
    def explode() -> list[int]:
        raise RuntimeError("fails at once")

    return IterablePublisher(explode)


def flawed(**flaws: bool) -> tuple[Any, Any]:
    """``(make_publisher, make_failed)`` for a FlawedPublisher with these flaws."""
    return (
        lambda n: FlawedPublisher(n, **flaws),
        lambda: FlawedPublisher(0, fail=True, **flaws),
    )


def failed_rules(error: ConformanceError) -> set[str]:
    """The rule numbers as listed in the message (what a reader sees)."""
    return set(re.findall(r"^rule (\d+\.\d+)(?: \(rxpipe extension\))?: ", str(error), re.M))


def test_reference_publisher_passes_every_check() -> None:
    result = run_publisher_checks(reference, make_failed=reference_failed, rxpipe_extensions=True)
    assert result.ok, result.summary()
    assert result.skipped == ()
    assert set(result.passed) == {c.name for c in PUBLISHER_CHECKS}


def test_verify_publisher_returns_none_when_all_pass() -> None:
    returned = verify_publisher(reference, only=["1.9", "3.9"])  # type: ignore[func-returns-value]
    assert returned is None


def test_flawless_flawed_publisher_passes() -> None:
    """The test double below is correct without flaws, so its failures come from the flaws."""
    make, make_failed = flawed()
    verify_publisher(make, make_failed=make_failed, **FAST)


# rxpipe's additions to the rules, flawed: reported marked as rxpipe extensions
EXTENSION_FLAWS = frozenset(
    {"lenient_request", "silent_subscriber_errors", "accept_same_subscriber"}
)


@pytest.mark.parametrize(
    ("flaw", "rules"),
    [
        ("ignore_demand", {"1.1"}),
        ("never_complete", {"1.5"}),
        ("raise_on_bad_request", {"3.9"}),
        ("lenient_request", {"3.9"}),
        ("keep_subscriber", {"3.13"}),
        ("recursive", {"3.3"}),
        ("ignore_cancel", {"1.8", "3.6", "3.12"}),
        ("complete_before_subscribe", {"1.9"}),
        ("accept_none_subscriber", {"1.9"}),
        ("error_before_subscribe", {"1.9"}),
        ("complete_twice", {"1.7"}),
        ("overflow_error", {"3.17"}),
        ("silent_subscriber_errors", {"2.13"}),
        ("accept_same_subscriber", {"1.10"}),
    ],
)
@pytest.mark.timeout(30)
def test_flawed_publisher_fails_exactly_its_rules(
    flaw: str, rules: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="rxpipe")  # the flaws make publishers log
    make, make_failed = flawed(**{flaw: True})
    with pytest.raises(ConformanceError) as caught:
        verify_publisher(make, make_failed=make_failed, rxpipe_extensions=True, **FAST)
    assert caught.value.rules == rules, str(caught.value)
    assert failed_rules(caught.value) == rules, str(caught.value)
    marked = [f.extension for f in caught.value.failures]
    if flaw in EXTENSION_FLAWS:
        assert all(marked), str(caught.value)
    else:  # the rule itself is broken (an extension check may notice it too, marked)
        assert not all(marked), str(caught.value)


@pytest.mark.timeout(30)
def test_deadlock_on_reentrant_request_fails_rule_3_2_and_skips_dependent_checks() -> None:
    publishers: list[FlawedPublisher] = []

    def make(n: int) -> FlawedPublisher:
        publisher = FlawedPublisher(n, lock_while_signalling=True)
        publishers.append(publisher)
        return publisher

    try:
        result = run_publisher_checks(make, **FAST)
    finally:
        unblock(publishers)
        for thread in threading.enumerate():
            if thread.name.startswith("rxpipe-tck-"):
                thread.join(5)
    assert result.failed_rules == {"3.2"}, result.summary()
    assert "deadlock" in result.summary()
    skipped = dict(result.skipped)
    for name in (
        "rule_1_3_signals_are_serial",
        "rule_3_3_recursion_depth_is_bounded",
        "rule_3_12_cancel_makes_the_publisher_stop",
    ):
        assert "deadlocked" in skipped[name]


def test_message_lists_every_failed_rule_once_per_failure() -> None:
    make, _ = flawed(ignore_demand=True)
    with pytest.raises(AssertionError) as caught:
        verify_publisher(make, only=["1.1", "3.8"], **FAST)
    message = str(caught.value)
    assert message.startswith("verify_publisher(")
    assert "2 of 2 checks failed" in message
    assert re.search(r"^rule 1\.1: on_next\(.*\) without outstanding demand", message, re.M)


def test_make_failed_missing_skips_its_checks_and_says_so() -> None:
    result = run_publisher_checks(reference, only=["1.4", "1.7"])
    assert result.ok
    skipped = dict(result.skipped)
    assert "make_failed" in skipped["rule_1_4_failed_publisher_signals_on_error"]
    assert "make_failed" in skipped["rule_1_7_no_signal_after_on_error"]
    assert result.passed == ("rule_1_7_no_signal_after_on_complete",)


def test_long_recursion_check_skips_when_max_elements_is_smaller() -> None:
    result = run_publisher_checks(reference, max_elements=1_000, only=["3.3"])
    assert result.ok
    (name, why), *_ = result.skipped
    assert name == "rule_3_3_long_synchronous_request_chain_completes"
    assert "100000" in why
    assert "max_elements=1000" in why


def test_recursion_elements_can_be_lowered() -> None:
    result = run_publisher_checks(
        reference, max_elements=1_000, recursion_elements=1_000, only=["3.3"]
    )
    assert result.ok
    assert result.skipped == ()


def test_rxpipe_extensions_can_be_turned_off() -> None:
    make, make_failed = flawed(accept_same_subscriber=True, lenient_request=True)
    result = run_publisher_checks(make, make_failed=make_failed, rxpipe_extensions=False, **FAST)
    assert result.ok, result.summary()
    assert {name for name, _ in result.skipped} == {
        "rule_1_10_same_subscriber_twice_is_rejected",
        "rule_3_9_request_non_int_signals_value_error",
    }


def test_only_accepts_names_and_rule_numbers() -> None:
    result = run_publisher_checks(
        reference, only=["3.17", "rule_1_9_subscribe_none_raises_type_error"]
    )
    assert len(result.passed) == 4
    with pytest.raises(ValueError, match="unknown"):
        run_publisher_checks(reference, only=["9.9"])
    with pytest.raises(TypeError):
        run_publisher_checks(reference, only="3.9")


def test_a_raising_factory_fails_the_checks_that_use_it() -> None:
    def make(n: int) -> Publisher[int]:
        raise RuntimeError("no publisher today")

    result = run_publisher_checks(make, only=["1.1"])
    assert result.failed_rules == {"1.1"}
    assert "make_publisher(5) raised RuntimeError" in result.summary()


def test_timeout_scale_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    make, _ = flawed(never_complete=True)
    monkeypatch.setenv("RXPIPE_TCK_TIMEOUT_SCALE", "0.5")
    result = run_publisher_checks(make, timeout=0.2, only=["rule_1_5_empty_stream_completes"])
    assert "within 0.1 s" in result.summary()  # 0.2 s scaled by 0.5
    monkeypatch.setenv("RXPIPE_TCK_TIMEOUT_SCALE", "zero")
    with pytest.raises(ValueError, match="RXPIPE_TCK_TIMEOUT_SCALE"):
        run_publisher_checks(make, only=["3.9"])


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="recursion_bound"):
        run_publisher_checks(reference, recursion_bound=0)
    with pytest.raises(ValueError, match="max_elements"):
        run_publisher_checks(reference, max_elements=-1)
    with pytest.raises(ValueError, match=">= 0"):
        run_publisher_checks(reference, timeout=-1)


# -- the defaults are the Reactive Streams rules alone (issue 9, item 9) ---------------------


def third_party(n: int) -> Publisher[int]:
    return RangePublisher(n)


def third_party_failed() -> Publisher[int]:
    return RangePublisher(0, fail=True)


@pytest.mark.timeout(60)
def test_a_correct_third_party_publisher_passes_in_two_lines() -> None:
    """No rxpipe logging, a repeated subscriber served, request(True) counted as 1: all legal."""
    verify_publisher(third_party)
    verify_publisher(third_party, make_failed=third_party_failed)


@pytest.mark.timeout(60)
def test_the_extensions_are_skipped_by_default_and_say_where_they_are_described() -> None:
    result = run_publisher_checks(third_party, make_failed=third_party_failed)
    assert result.ok, result.summary()
    skipped = dict(result.skipped)
    assert (
        set(skipped)
        == {c.name for c in PUBLISHER_CHECKS if c.extension}
        == {
            "rule_1_10_same_subscriber_twice_is_rejected",
            "rule_3_9_request_non_int_signals_value_error",
        }
    )
    for reason in skipped.values():
        assert "The Reactive Streams rules" in reason
        assert "rxpipe_extensions=True" in reason
        assert "API.md" not in reason


@pytest.mark.timeout(60)
def test_turned_on_the_extensions_fail_marked_as_such(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger=THIRD_PARTY_LOGGER)
    with pytest.raises(ConformanceError) as caught:
        verify_publisher(third_party, make_failed=third_party_failed, rxpipe_extensions=True)
    error = caught.value
    assert error.rules == {"1.10", "2.13", "3.9"}, str(error)
    assert all(f.extension for f in error.failures), str(error)
    checks = {f.check for f in error.failures}
    assert checks == {
        "rule_1_10_same_subscriber_twice_is_rejected",
        "rule_2_13_raising_on_next_cancels_and_is_logged",
        "rule_2_13_raising_on_subscribe_is_contained",
        "rule_3_9_request_zero_signals_value_error",  # the message does not name rule 3.9
        "rule_3_9_request_negative_signals_value_error",
        "rule_3_9_request_non_int_signals_value_error",  # request(True) counted as 1
    }, str(error)
    lines = str(error).splitlines()[1:]
    failure_lines = [line for line in lines if line.startswith("rule ")]
    assert len(failure_lines) == len(error.failures)
    assert all(re.match(r"rule \d+\.\d+ \(rxpipe extension\): ", line) for line in failure_lines), (
        str(error)
    )
    assert "request(True)" in str(error)
    assert "'rxpipe' logger" in str(error)


def test_a_rules_failure_is_not_marked_as_an_extension() -> None:
    make, _ = flawed(ignore_demand=True)
    with pytest.raises(ConformanceError) as caught:
        verify_publisher(make, only=["1.1"], rxpipe_extensions=True, **FAST)
    assert not any(f.extension for f in caught.value.failures)
    assert "(rxpipe extension)" not in str(caught.value)
