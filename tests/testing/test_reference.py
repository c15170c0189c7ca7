"""The reference implementations do what their docstrings promise, beyond the rule checks."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from rxpipe.testing import IterablePublisher, ListSubscriber, ProbePublisher, ProbeSubscriber

pytestmark = pytest.mark.timeout(20)


def subscribed(publisher: IterablePublisher[Any], **options: Any) -> ProbeSubscriber[Any]:
    probe: ProbeSubscriber[Any] = ProbeSubscriber(**options)
    publisher.subscribe(probe)
    probe.expect_subscribed()
    return probe


def test_iterable_publisher_is_cold() -> None:
    calls: list[int] = []

    def factory() -> range:
        calls.append(1)
        return range(2)

    publisher = IterablePublisher(factory)
    for _ in range(2):
        probe = subscribed(publisher)
        probe.request(3)
        assert probe.expect_next_n(2) == [0, 1]
        probe.expect_complete()
    assert len(calls) == 2


def test_iterable_publisher_pulls_only_on_demand_and_closes_the_iterator_on_cancel() -> None:
    pulled: list[int] = []
    closed = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            for i in range(100):
                pulled.append(i)
                yield i
        finally:
            closed.set()

    probe = subscribed(IterablePublisher(numbers))
    probe.request(2)
    probe.expect_next_n(2)
    assert pulled == [0, 1]
    assert not closed.is_set()
    probe.cancel()
    assert closed.is_set()
    probe.expect_no_signal()


def test_iterable_publisher_drops_the_subscriber_after_completion() -> None:
    publisher = IterablePublisher(lambda: [1])

    def run() -> weakref.ref[ProbeSubscriber[Any]]:
        probe = subscribed(publisher)
        probe.request(2)
        probe.expect_next(1)
        probe.expect_complete()
        return weakref.ref(probe)

    ref = run()
    gc.collect()
    assert ref() is None


def test_iterable_publisher_signals_source_errors() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise KeyError("source broke")

    probe = subscribed(IterablePublisher(failing))
    probe.request(5)
    probe.expect_next(1)
    error = probe.expect_error(KeyError)
    assert error.args == ("source broke",)

    def broken_factory() -> list[int]:
        raise OSError("cannot open")

    probe = subscribed(IterablePublisher(broken_factory))
    probe.expect_error(OSError)  # at once, without a request (rule 1.4)


def test_requests_made_in_on_subscribe_are_served_after_it_returns() -> None:
    order: list[str] = []

    def on_subscribe(probe: ProbeSubscriber[Any]) -> None:
        probe.request(1)
        order.append("on_subscribe returns")

    def on_next(probe: ProbeSubscriber[Any], item: Any) -> None:
        order.append(f"on_next({item})")

    subscribed(IterablePublisher(lambda: [7]), on_subscribe_hook=on_subscribe, on_next_hook=on_next)
    assert order == ["on_subscribe returns", "on_next(7)"]


def test_a_raising_subscriber_is_cancelled_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    closed = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.set()

    def boom(probe: ProbeSubscriber[Any], item: Any) -> None:
        raise ZeroDivisionError("subscriber bug")

    with caplog.at_level(logging.ERROR, logger="rxpipe"):
        probe = subscribed(IterablePublisher(numbers), on_next_hook=boom)
        probe.request(10)
    assert probe.items == [0]
    assert closed.is_set()
    (record,) = caplog.records
    assert record.name == "rxpipe"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)


def test_same_subscriber_is_rejected_while_subscribed_then_accepted_again() -> None:
    publisher = IterablePublisher(lambda: [1])
    subscriber: ListSubscriber[int] = ListSubscriber()
    publisher.subscribe(subscriber)  # completes at once: ListSubscriber requests in on_subscribe
    assert subscriber.wait(1) == [1]

    probe = subscribed(publisher)
    publisher.subscribe(probe)  # the first subscription is still live
    error = probe.expect_error(ValueError)
    assert "already subscribed" in str(error)
    assert "1.10" in str(error)


def test_iterable_publisher_needs_a_factory() -> None:
    with pytest.raises(TypeError, match="factory"):
        IterablePublisher([1, 2])  # type: ignore[arg-type]


def test_concurrent_requests_keep_signals_serial_and_in_order() -> None:
    probe = subscribed(IterablePublisher(lambda: range(2_000)))
    barrier = threading.Barrier(4)

    def request_many() -> None:
        barrier.wait()
        for _ in range(500):
            probe.request(1)

    threads = [threading.Thread(target=request_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert probe.expect_next_n(2_000) == list(range(2_000))
    probe.expect_no_signal()
    probe.assert_no_violations()


def test_list_subscriber_waits_raises_and_validates() -> None:
    publisher: ProbePublisher[int] = ProbePublisher()
    subscriber: ListSubscriber[int] = ListSubscriber(batch=1)
    publisher.subscribe(subscriber)
    with pytest.raises(TimeoutError):
        subscriber.wait(0.01)
    assert publisher.expect_request() == 1
    publisher.send_error(RuntimeError("upstream failed"))
    with pytest.raises(RuntimeError, match="upstream failed"):
        subscriber.wait(1)
    with pytest.raises(ValueError, match="batch"):
        ListSubscriber(batch=0)


def test_every_subscription_rxpipe_hands_out_is_weak_referenceable() -> None:
    """Issue 9 item 6: foreign code may hold rxpipe's subscribers and subscriptions weakly."""
    from rxpipe import stage
    from rxpipe.spec import InertSubscription
    from rxpipe.testing import IdentityProcessor, MisbehavingPublisher

    refs: list[weakref.ref[Any]] = []

    class Grab:
        def on_subscribe(self, s: Any) -> None:
            refs.append(weakref.ref(s))
            s.cancel()

        def on_next(self, item: Any) -> None:
            pass

        def on_error(self, error: BaseException) -> None:
            pass

        def on_complete(self) -> None:
            pass

    twice = Grab()
    publisher = IterablePublisher(lambda: range(3))
    publishers: list[Any] = [
        publisher,
        MisbehavingPublisher([1]),
        ProbePublisher(),
        IdentityProcessor(),
        stage().map(str).to_processor(),
    ]
    for p in publishers:
        refs.append(weakref.ref(p))
        p.subscribe(Grab())
    publisher.subscribe(twice)
    publisher.subscribe(twice)  # rejected: the subscription it gets is weak-referenceable too
    refs.append(weakref.ref(InertSubscription()))
    refs.append(weakref.ref(ProbeSubscriber()))
    refs.append(weakref.ref(ListSubscriber()))
    assert len(refs) == 2 * len(publishers) + 5
