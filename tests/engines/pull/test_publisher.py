"""to_publisher() and from_publisher(): the pull engine's Reactive Streams edges."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from typing import Any

import pytest

from rxpipe import Flow, MissingBackpressureError, PushEngine, Subscription
from rxpipe.engines import Engine
from tests.helpers import assert_pulled


class OneByOne:
    """Requests one item at a time, from inside on_next (rule 3.3's worst case).

    Signals may come from another thread (runs that wait, push-engine runs): ``wait()`` for
    the terminal one.
    """

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.done = False
        self.error: BaseException | None = None
        self.sub: Subscription | None = None
        self.finished = threading.Event()

    def wait(self) -> None:
        assert self.finished.wait(30), f"no terminal signal after {len(self.items)} items"

    def on_subscribe(self, subscription: Subscription) -> None:
        self.sub = subscription
        subscription.request(1)

    def on_next(self, item: Any) -> None:
        self.items.append(item)
        assert self.sub is not None
        self.sub.request(1)

    def on_error(self, error: BaseException) -> None:
        self.error = error
        self.finished.set()

    def on_complete(self) -> None:
        self.done = True
        self.finished.set()


def test_million_items_requested_one_by_one_from_on_next(engine: Engine) -> None:
    n = 10**6 if "fuse=True" in repr(engine) else 20_000
    sub = OneByOne()
    Flow.range(n).map(lambda x: x).subscribe(sub, engine=engine)
    sub.wait()
    assert sub.done
    assert len(sub.items) == n
    assert sub.items[-1] == n - 1


def test_publisher_of_none_elements_and_empty_flow(engine: Engine) -> None:
    sub = OneByOne()
    Flow.of(None, None).subscribe(sub, engine=engine)
    sub.wait()
    assert sub.items == [None, None]
    assert sub.done
    empty = OneByOne()
    Flow.of().map(str).subscribe(empty, engine=engine)
    empty.wait()
    assert empty.items == []
    assert empty.done


def test_publisher_of_failing_flow_signals_on_error(engine: Engine) -> None:
    sub = OneByOne()
    Flow.range(5).map(lambda x: 1 // (x - 2)).subscribe(sub, engine=engine)
    sub.wait()
    assert sub.items == [-1, -1]
    assert isinstance(sub.error, ZeroDivisionError)
    assert not sub.done


def test_subscriber_raising_in_on_next_cancels_and_is_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    pulled: list[int] = []

    def src():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield i

    class Raiser(OneByOne):
        def on_next(self, item: Any) -> None:
            if item == 2:
                raise RuntimeError("subscriber bug")
            super().on_next(item)

    sub = Raiser()
    flow = Flow.from_iterable(src())

    def logged() -> bool:
        return any("subscriber bug" in (r.exc_text or "") for r in caplog.records)

    with caplog.at_level(logging.ERROR, logger="rxpipe"):
        flow.subscribe(sub, engine=engine)
        deadline = time.monotonic() + 10
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.01)  # a pump thread may deliver (push runs, runs that wait)
    assert logged()
    assert sub.items == [0, 1]
    assert not sub.finished.is_set()
    assert_pulled(engine, flow, len(pulled), 3)


class Greedy:
    """A publisher that ignores demand: it pushes everything at once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.requests: list[int] = []
        self.cancelled = threading.Event()

    def subscribe(self, subscriber: Any) -> None:
        outer = self

        class S:
            def request(self, n: int) -> None:
                outer.requests.append(n)

            def cancel(self) -> None:
                outer.cancelled.set()

        subscriber.on_subscribe(S())
        for i in range(self.n):
            subscriber.on_next(i)
        subscriber.on_complete()


def test_from_publisher_reports_a_publisher_that_ignores_demand() -> None:
    greedy = Greedy(100)
    with pytest.raises(MissingBackpressureError, match="beyond the requested demand"):
        Flow.from_publisher(greedy, prefetch=8).to_list()
    assert greedy.cancelled.is_set()
    assert greedy.requests == [8]


def test_from_publisher_requests_in_batches(engine: Engine) -> None:
    requests: list[int] = []

    class Recording:
        def __init__(self) -> None:
            self.pub = Flow.range(100).to_publisher()

        def subscribe(self, subscriber: Any) -> None:
            class Spy:
                def on_subscribe(self, s: Subscription) -> None:
                    class Wrapped:
                        def request(self, n: int) -> None:
                            requests.append(n)
                            s.request(n)

                        def cancel(self) -> None:
                            s.cancel()

                    subscriber.on_subscribe(Wrapped())

                def on_next(self, item: Any) -> None:
                    subscriber.on_next(item)

                def on_error(self, e: BaseException) -> None:
                    subscriber.on_error(e)

                def on_complete(self) -> None:
                    subscriber.on_complete()

            self.pub.subscribe(Spy())

    out = Flow.from_publisher(Recording(), prefetch=16).map(lambda x: x).to_list(engine=engine)
    assert out == list(range(100))
    assert requests[0] == 16
    assert all(n == 12 for n in requests[1:])  # topped up after 75% of the window
    assert sum(requests) - 100 <= 16  # never more outstanding than the window


def test_from_publisher_on_another_thread() -> None:
    """A publisher that signals from its own thread: the sync terminal waits for it."""

    class Threaded:
        def subscribe(self, subscriber: Any) -> None:
            demand = threading.Semaphore(0)
            stop = threading.Event()

            class S:
                def request(self, n: int) -> None:
                    for _ in range(n):
                        demand.release()

                def cancel(self) -> None:
                    stop.set()

            def produce() -> None:
                for i in range(50):
                    while not demand.acquire(timeout=0.05):
                        if stop.is_set():
                            return
                    subscriber.on_next(i)
                subscriber.on_complete()

            subscriber.on_subscribe(S())
            self.thread = threading.Thread(target=produce)
            self.thread.start()

    pub = Threaded()
    assert Flow.from_publisher(pub, prefetch=4).to_list() == list(range(50))
    pub.thread.join(5)
    assert not pub.thread.is_alive()


def test_resubscribing_the_same_subscriber_is_refused() -> None:
    pub = Flow.range(3).to_publisher()
    sub = OneByOne()
    pub.subscribe(sub)
    assert sub.done
    again = OneByOne()
    again.done = False
    pub.subscribe(sub)  # same instance again
    assert isinstance(sub.error, ValueError)
    assert "2.12" in str(sub.error)


def test_request_zero_signals_value_error_naming_rule_3_9() -> None:
    class Zero(OneByOne):
        def on_subscribe(self, subscription: Subscription) -> None:
            subscription.request(0)

    sub = Zero()
    Flow.range(3).subscribe(sub)
    assert isinstance(sub.error, ValueError)
    assert "3.9" in str(sub.error)


class Recorder:
    """Requests everything at once and records the signals; ``finished`` is set at the end."""

    def __init__(self, request: int = 10**6) -> None:
        self.signals: list[Any] = []
        self.finished = threading.Event()
        self.sub: Subscription | None = None
        self._request = request

    def on_subscribe(self, subscription: Subscription) -> None:
        self.sub = subscription
        subscription.request(self._request)

    def on_next(self, item: Any) -> None:
        self.signals.append(item)

    def on_error(self, error: BaseException) -> None:
        self.signals.append(error)
        self.finished.set()

    def on_complete(self) -> None:
        self.signals.append("complete")
        self.finished.set()

    def wait(self) -> list[Any]:
        assert self.finished.wait(10), f"no terminal signal; got {self.signals}"
        return self.signals


def three_then_fail() -> Any:
    yield 1
    yield 2
    yield 3
    raise ValueError("source failed")


@pytest.mark.parametrize("stages", ["source-only", "map"])
def test_items_before_a_source_failure_go_out_before_it(engine: Engine, stages: str) -> None:
    """Issue 9 item 4: on push/asyncio the source's batch was dropped when the source raised."""
    flow = Flow.from_iterable(three_then_fail())
    if stages == "map":
        flow = flow.map(lambda x: x * 10)
    expected = [1, 2, 3] if stages == "source-only" else [10, 20, 30]
    sub = Recorder()
    flow.subscribe(sub, engine=engine)
    *items, error = sub.wait()
    assert items == expected
    assert isinstance(error, ValueError)
    seen: list[int] = []
    again = Flow.from_iterable(three_then_fail())
    with pytest.raises(ValueError, match="source failed"):
        (again if stages == "source-only" else again.map(lambda x: x * 10)).foreach(
            seen.append, engine=engine
        )
    assert seen == expected


class WeaklyHeld:
    """A third-party-style publisher that keeps its subscriber only through a weak reference."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def subscribe(self, subscriber: Any) -> None:
        ref = weakref.ref(subscriber)  # TypeError for a subscriber without __weakref__

        def forward(signal: str, *args: Any) -> None:
            target = ref()
            if target is not None:
                getattr(target, signal)(*args)

        class Forward:
            def on_subscribe(self, s: Subscription) -> None:
                forward("on_subscribe", s)

            def on_next(self, x: Any) -> None:
                forward("on_next", x)

            def on_error(self, e: BaseException) -> None:
                forward("on_error", e)

            def on_complete(self) -> None:
                forward("on_complete")

        self.inner.subscribe(Forward())


class HoldsItsSubscriptionWeakly(Recorder):
    def on_subscribe(self, subscription: Subscription) -> None:
        self.weak = weakref.ref(subscription)  # TypeError without __weakref__
        super().on_subscribe(subscription)


@pytest.mark.parametrize("waits", [False, True], ids=["sync-flow", "waiting-flow"])
def test_what_rxpipe_hands_to_foreign_code_is_weak_referenceable(
    engine: Engine, waits: bool
) -> None:
    """Issue 9 item 6: from_publisher's subscriber had __slots__ without __weakref__."""
    inner = Flow.range(10).to_publisher()
    out = Flow.from_publisher(WeaklyHeld(inner), prefetch=4).map(lambda x: x * 2)
    assert out.to_list(engine=engine) == [x * 2 for x in range(10)]
    # and the subscriptions to_publisher hands out (inline and pumped runs alike)
    flow = Flow.from_publisher(Flow.range(3).to_publisher()) if waits else Flow.range(3)
    sub = HoldsItsSubscriptionWeakly()
    flow.to_publisher(engine=engine).subscribe(sub)
    assert sub.wait() == [0, 1, 2, "complete"]


def test_a_publisher_subscribed_inside_a_running_event_loop_delivers(engine: Engine) -> None:
    """Issue 9 item 5's mechanism: a push run was iterated on a private loop nested in the
    requesting thread's running loop (RuntimeError); it is served by a pump instead."""
    import asyncio

    async def main() -> list[Any]:
        sub = Recorder()
        Flow.range(5).map(lambda x: x + 1).subscribe(sub, engine=engine)
        await asyncio.to_thread(sub.finished.wait, 10)
        return sub.signals

    assert asyncio.run(main()) == [1, 2, 3, 4, 5, "complete"]


@pytest.mark.parametrize("source", ["from_publisher", "iterable"])
def test_rejecting_a_second_subscribe_ends_the_first_run(engine: Engine, source: str) -> None:
    """Issue 9 item 7: the rejection's on_error is the subscriber's terminal signal, so its
    first run must end too (it left an rxpipe-publisher thread behind; no_leaks checks)."""
    closed = threading.Event()

    def numbers() -> Any:
        try:
            yield from range(1000)
        finally:
            closed.set()

    flow = Flow.from_iterable(numbers())
    if source == "from_publisher":
        flow = Flow.from_publisher(flow.to_publisher(), prefetch=4)
    publisher = flow.to_publisher(engine=engine)
    sub = Recorder(request=1)
    publisher.subscribe(sub)
    deadline = time.monotonic() + 10
    while not sub.signals and time.monotonic() < deadline:
        time.sleep(0.005)
    publisher.subscribe(sub)  # the same instance again, while its first run is live
    first, error = sub.wait()
    assert first == 0
    assert isinstance(error, ValueError)
    assert "2.12" in str(error)
    assert closed.wait(5), "the first run was not closed"
    time.sleep(0.05)
    assert len(sub.signals) == 2  # nothing after the terminal signal (rule 1.7)


@pytest.mark.parametrize("kind", ["of", "subject", "connectable", "subclass"])
def test_from_publisher_refuses_an_rxpy_observable_when_the_flow_is_built(kind: str) -> None:
    """Issue 9 item 8: it was accepted, then failed at run time with AttributeError
    ('PublisherBridge' object has no attribute 'on_completed')."""
    reactivex = pytest.importorskip("reactivex")
    from reactivex import operators as ops
    from reactivex.subject import Subject

    class Mine(reactivex.Observable[int]):
        pass

    observable = {
        "of": lambda: reactivex.of(1, 2, 3),
        "subject": Subject,
        "connectable": lambda: reactivex.of(1).pipe(ops.publish()),
        "subclass": Mine,
    }[kind]()
    with pytest.raises(TypeError, match="RxPY") as caught:
        Flow.from_publisher(observable)
    assert "Flow.from_observable(observable, buffer=..., overflow=...)" in str(caught.value)


def test_rxpy_observables_are_recognised_by_their_classes_without_importing_rxpy() -> None:
    """RxPY 3's ``rx`` package too; a publisher whose module merely looks alike is accepted."""

    def make(module: str, name: str) -> Any:
        cls = type(name, (), {"subscribe": lambda self, *args, **kwargs: None})
        cls.__module__ = module
        return cls()

    with pytest.raises(TypeError, match="from_observable"):
        Flow.from_publisher(make("rx.core.observable.observable", "Observable"))
    for module, name in [("rxish", "Observable"), ("reactivex_tools", "Publisher")]:
        Flow.from_publisher(make(module, name))  # a publisher, as far as rxpipe can tell


class EqualToEveryOther(Recorder):
    """A subscriber with value equality: two of them are still two subscribers."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqualToEveryOther)

    def __hash__(self) -> int:
        return 1


def test_equal_but_distinct_subscribers_are_two_subscribers(engine: Engine) -> None:
    """Regression (review): rule 2.12 is about the same instance; an equal subscriber was
    refused, and the refusal cancelled the first one's run without a terminal signal."""
    publisher = Flow.range(5).to_publisher(engine=engine)
    a, b = EqualToEveryOther(), EqualToEveryOther()
    publisher.subscribe(a)
    publisher.subscribe(b)
    assert a.wait() == [0, 1, 2, 3, 4, "complete"]
    assert b.wait() == [0, 1, 2, 3, 4, "complete"]


def test_items_given_back_count_as_lost_at_the_last_stage(engine: Engine) -> None:
    # what to_publisher's pump fetched for a subscriber that went away was counted delivered
    flow = Flow.range(100).map(lambda x: x + 1)
    run = engine.open(flow.plan)
    taken = list(itertools.islice(iter(run), 5))
    run.give_back(2)  # two of them never reached the subscriber
    run.close()
    report = run.report()
    assert taken == [1, 2, 3, 4, 5]
    assert report.delivered == 3
    source, last = report.stages["range"], report.stages["map"]
    assert source.emitted == report.delivered + report.lost
    assert last.lost >= 2
    assert run.report() == report  # the same every time it is read


def test_to_publisher_checks_engine_settings_when_made() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        Flow.range(3).to_publisher(engine=PushEngine(buffer={"nosuch": 1}))
