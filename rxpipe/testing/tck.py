"""Rule-numbered conformance checks for publishers, subscribers and processors.

Written for rxpipe from the Reactive Streams 1.0.4 rules (not a translation of the JVM TCK).
``verify_publisher`` / ``verify_subscriber`` / ``verify_processor`` run every applicable
check and raise one :class:`~rxpipe.testing.ConformanceError` (an ``AssertionError``) listing
every failed rule by number; ``run_*_checks`` return the :class:`~rxpipe.testing.Verification`
instead, with the skipped checks and why.

By default the checks are the Reactive Streams rules alone, so that a correct third-party
publisher passes. ``rxpipe_extensions=True`` adds what rxpipe promises beyond them (see "The
Reactive Streams rules" page of the rxpipe documentation); rxpipe's own tests turn it on.

Each check is a module-level function ``rule_X_Y_description(t)``; the tuples
:data:`PUBLISHER_CHECKS`, :data:`SUBSCRIBER_CHECKS` and :data:`PROCESSOR_CHECKS` list them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Final, TypeVar

from rxpipe.spec import MAX_DEMAND, Processor, Publisher, Subscriber
from rxpipe.testing._common import short
from rxpipe.testing._harness import Check, Timing, Verification, run_checks, select

# The check functions themselves (rule_X_Y_description), re-exported so that the name shown
# in a failure report can be imported from here.
from rxpipe.testing._publisher_checks import *  # noqa: F403
from rxpipe.testing._publisher_checks import PUBLISHER_CHECKS, PublisherContext
from rxpipe.testing._subscriber_checks import *  # noqa: F403
from rxpipe.testing._subscriber_checks import (
    PROCESSOR_ONLY_CHECKS,
    SUBSCRIBER_CHECKS,
    DeliberateError,
    Stage,
    SubscriberContext,
)
from rxpipe.testing.reference import IterablePublisher

__all__ = (
    "DEFAULT_MAX_ELEMENTS",
    "PROCESSOR_CHECKS",
    "PUBLISHER_CHECKS",
    "RECURSION_ELEMENTS",
    "SUBSCRIBER_CHECKS",
    "PublisherContext",
    "run_processor_checks",
    "run_publisher_checks",
    "run_subscriber_checks",
    "verify_processor",
    "verify_publisher",
    "verify_subscriber",
)

S = TypeVar("S", bound=Subscriber[Any])

#: ``max_elements`` default: the publisher can produce streams of any length.
DEFAULT_MAX_ELEMENTS: Final = MAX_DEMAND
#: Rule 3.3's long chain: this many elements, each requested from inside ``on_next``.
RECURSION_ELEMENTS: Final = 100_000
#: Rule 1.3's stochastic check: this many runs over a 10-element stream.
STOCHASTIC_RUNS: Final = 100


PROCESSOR_CHECKS: Final = PROCESSOR_ONLY_CHECKS


def _name(factory: object) -> str:
    return str(getattr(factory, "__qualname__", None) or short(factory))


def _validate_positive(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def run_publisher_checks(
    make_publisher: Callable[[int], Publisher[Any]],
    *,
    make_failed: Callable[[], Publisher[Any]] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    timeout: float | None = None,
    no_signal_window: float | None = None,
    gc_timeout: float | None = None,
    recursion_elements: int = RECURSION_ELEMENTS,
    recursion_bound: int = 1,
    stochastic_runs: int = STOCHASTIC_RUNS,
    max_subscribers: int | None = None,
    rxpipe_extensions: bool = False,
    only: Collection[str] | None = None,
) -> Verification:
    """Run the publisher checks and return the outcome; see :func:`verify_publisher`."""
    _validate_positive("max_elements", max_elements, 0)
    _validate_positive("recursion_elements", recursion_elements)
    _validate_positive("recursion_bound", recursion_bound)
    _validate_positive("stochastic_runs", stochastic_runs)
    timing = Timing.from_options(timeout, no_signal_window, gc_timeout)
    checks = select(PUBLISHER_CHECKS, only)

    def context() -> PublisherContext:
        return PublisherContext(
            make_publisher,
            make_failed,
            timing=timing,
            max_elements=max_elements,
            recursion_elements=recursion_elements,
            recursion_bound=recursion_bound,
            stochastic_runs=stochastic_runs,
            max_subscribers=max_subscribers,
            rxpipe_extensions=rxpipe_extensions,
        )

    return run_checks(f"verify_publisher({_name(make_publisher)})", checks, context)


def verify_publisher(
    make_publisher: Callable[[int], Publisher[Any]],
    *,
    make_failed: Callable[[], Publisher[Any]] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    timeout: float | None = None,
    no_signal_window: float | None = None,
    gc_timeout: float | None = None,
    recursion_elements: int = RECURSION_ELEMENTS,
    recursion_bound: int = 1,
    stochastic_runs: int = STOCHASTIC_RUNS,
    max_subscribers: int | None = None,
    rxpipe_extensions: bool = False,
    only: Collection[str] | None = None,
) -> None:
    """Check a publisher against every applicable rule; raise one error listing the failures.

    Args:
        make_publisher: ``make_publisher(n)`` returns a fresh publisher of exactly ``n``
            elements (any values; ``None`` is a valid element).
        make_failed: returns a fresh publisher that fails at once (rules 1.4, 1.7 on error);
            without it those checks are skipped.
        max_elements: the longest stream ``make_publisher`` can make; longer checks skip.
        timeout: seconds to wait for a signal that must come (default 0.3).
        no_signal_window: seconds to watch for a signal that must not come (default 0.05).
        gc_timeout: seconds to retry ``gc.collect()`` for rule 3.13 (default 0.3).
        recursion_elements: length of rule 3.3's request-from-``on_next`` chain.
        recursion_bound: the deepest ``on_next`` nesting rule 3.3 tolerates (1: none).
        stochastic_runs: runs of rule 1.3's serial-signal check.
        max_subscribers: how many concurrent subscribers the publisher supports (``None``:
            any); below 2, rule 1.11's check is skipped.
        rxpipe_extensions: also check what rxpipe adds to the rules (off by default, so
            that the checks are the Reactive Streams rules alone): a second subscribe of the
            same subscriber is answered with ``on_error`` (1.10), an exception a subscriber
            raises is logged at ERROR on the ``"rxpipe"`` logger (2.13), ``request(True)``,
            ``request(1.5)`` and ``request("3")`` signal ``on_error(ValueError)`` and the
            rule 3.9 error names the rule (3.9). A failing addition is reported under the
            rule it extends, marked ``(rxpipe extension)``. See "The Reactive Streams rules"
            and "The conformance kit" pages of the rxpipe documentation.
        only: run only these checks (function names or rule numbers such as ``"3.9"``).

    Every timeout is multiplied by the ``RXPIPE_TCK_TIMEOUT_SCALE`` environment variable.

    Raises:
        ConformanceError: an ``AssertionError`` whose message has one ``rule X.Y: ...`` line
            per failure (``rule X.Y (rxpipe extension): ...`` for an addition of rxpipe's);
            ``.rules`` is the set of failed rule numbers.
    """
    run_publisher_checks(
        make_publisher,
        make_failed=make_failed,
        max_elements=max_elements,
        timeout=timeout,
        no_signal_window=no_signal_window,
        gc_timeout=gc_timeout,
        recursion_elements=recursion_elements,
        recursion_bound=recursion_bound,
        stochastic_runs=stochastic_runs,
        max_subscribers=max_subscribers,
        rxpipe_extensions=rxpipe_extensions,
        only=only,
    ).raise_for_failures()


def _identity(i: int) -> object:
    return i


def run_subscriber_checks(
    make_subscriber: Callable[[], S],
    *,
    trigger_request: Callable[[S, int], None] | None = None,
    trigger_cancel: Callable[[S], None] | None = None,
    make_element: Callable[[int], object] = _identity,
    elements: int = 16,
    timeout: float | None = None,
    no_signal_window: float | None = None,
    rxpipe_extensions: bool = False,
    only: Collection[str] | None = None,
) -> Verification:
    """Run the subscriber checks and return the outcome; see :func:`verify_subscriber`."""
    _validate_positive("elements", elements)
    timing = Timing.from_options(timeout, no_signal_window, None)
    checks = select(SUBSCRIBER_CHECKS, only)

    def stage(t: SubscriberContext) -> Stage:
        try:
            subscriber = make_subscriber()
        except Exception as exc:
            raise AssertionError(f"make_subscriber() raised {exc!r}") from exc
        request = (lambda n: trigger_request(subscriber, n)) if trigger_request else None
        cancel = (lambda: trigger_cancel(subscriber)) if trigger_cancel else None
        return Stage(subscriber, request, cancel, None)

    def context() -> SubscriberContext:
        return SubscriberContext(
            stage, make_element, elements, timing=timing, rxpipe_extensions=rxpipe_extensions
        )

    return run_checks(f"verify_subscriber({_name(make_subscriber)})", checks, context)


def verify_subscriber(
    make_subscriber: Callable[[], S],
    *,
    trigger_request: Callable[[S, int], None] | None = None,
    trigger_cancel: Callable[[S], None] | None = None,
    make_element: Callable[[int], object] = _identity,
    elements: int = 16,
    timeout: float | None = None,
    no_signal_window: float | None = None,
    rxpipe_extensions: bool = False,
    only: Collection[str] | None = None,
) -> None:
    """Check a subscriber against the subscriber rules (2.x) that can be seen from outside.

    The subscriber under test is subscribed to a :class:`~rxpipe.testing.ProbePublisher`.

    Args:
        make_subscriber: returns a fresh subscriber.
        trigger_request: ``trigger_request(subscriber, n)`` makes it request ``n`` more, for
            subscribers that only request on an outside stimulus; also enables rule 3.8.
        trigger_cancel: ``trigger_cancel(subscriber)`` makes it cancel; enables rules 2.6
            and 2.8.
        make_element: the ``i``-th element to send (default: ``i``).
        elements: how many elements rule 2.1 sends at most.
        timeout: seconds to wait for a request or cancel that must come (default 0.3).
        no_signal_window: seconds to wait for a request that may come (default 0.05).
        rxpipe_extensions: also check what rxpipe adds to the rules, as for
            :func:`verify_publisher` (no subscriber check is an addition today, so it
            changes nothing yet).
        only: run only these checks (function names or rule numbers).

    Raises:
        ConformanceError: one ``rule X.Y: ...`` line per failure.
    """
    run_subscriber_checks(
        make_subscriber,
        trigger_request=trigger_request,
        trigger_cancel=trigger_cancel,
        make_element=make_element,
        elements=elements,
        timeout=timeout,
        no_signal_window=no_signal_window,
        rxpipe_extensions=rxpipe_extensions,
        only=only,
    ).raise_for_failures()


def _failing() -> list[object]:
    raise DeliberateError("the upstream of a failed processor fails at once")


def run_processor_checks(
    make_processor: Callable[[], Processor[Any, Any]],
    *,
    make_element: Callable[[int], object] = _identity,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    timeout: float | None = None,
    no_signal_window: float | None = None,
    gc_timeout: float | None = None,
    recursion_elements: int = RECURSION_ELEMENTS,
    stochastic_runs: int = STOCHASTIC_RUNS,
    max_subscribers: int | None = 1,
    rxpipe_extensions: bool = False,
    only: Collection[str] | None = None,
) -> Verification:
    """Run the processor checks and return the outcome; see :func:`verify_processor`."""
    known: list[Check[Any]] = [*PUBLISHER_CHECKS, *SUBSCRIBER_CHECKS, *PROCESSOR_ONLY_CHECKS]
    select(known, only)  # validates the names

    def as_publisher(n: int) -> Publisher[Any]:
        processor = make_processor()
        IterablePublisher(lambda: (make_element(i) for i in range(n))).subscribe(processor)
        return processor

    def as_failed() -> Publisher[Any]:
        processor = make_processor()
        IterablePublisher(_failing).subscribe(processor)
        return processor

    def wanted(names: list[str]) -> list[str] | None:
        if only is None:
            return None
        return [o for o in only if o in names]

    publisher_names = [c.name for c in PUBLISHER_CHECKS] + [c.rule for c in PUBLISHER_CHECKS]
    publisher_side = run_publisher_checks(
        as_publisher,
        make_failed=as_failed,
        max_elements=max_elements,
        timeout=timeout,
        no_signal_window=no_signal_window,
        gc_timeout=gc_timeout,
        recursion_elements=recursion_elements,
        stochastic_runs=stochastic_runs,
        max_subscribers=max_subscribers,
        rxpipe_extensions=rxpipe_extensions,
        only=wanted(publisher_names),
    )
    timing = Timing.from_options(timeout, no_signal_window, gc_timeout)

    def stage(t: SubscriberContext) -> Stage:
        try:
            processor = make_processor()
        except Exception as exc:
            raise AssertionError(f"make_processor() raised {exc!r}") from exc
        downstream = t.probe(name="downstream")
        t.subscribe(processor, downstream)

        def request(n: int) -> None:
            downstream.expect_subscribed()
            downstream.request(n)

        def cancel() -> None:
            downstream.expect_subscribed()
            downstream.cancel()

        return Stage(processor, request, cancel, downstream)

    def context() -> SubscriberContext:
        return SubscriberContext(
            stage, make_element, 16, timing=timing, rxpipe_extensions=rxpipe_extensions
        )

    subscriber_checks = [*SUBSCRIBER_CHECKS, *PROCESSOR_ONLY_CHECKS]
    subscriber_names = [c.name for c in subscriber_checks] + [c.rule for c in subscriber_checks]
    chosen = wanted(subscriber_names)
    subscriber_side = run_checks(
        "subscriber side",
        select(subscriber_checks, chosen) if chosen is not None else subscriber_checks,
        context,
    )
    return Verification(
        f"verify_processor({_name(make_processor)})",
        publisher_side.passed + subscriber_side.passed,
        publisher_side.failures + subscriber_side.failures,
        publisher_side.skipped + subscriber_side.skipped,
    )


def verify_processor(
    make_processor: Callable[[], Processor[Any, Any]],
    *,
    make_element: Callable[[int], object] = _identity,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    timeout: float | None = None,
    no_signal_window: float | None = None,
    gc_timeout: float | None = None,
    recursion_elements: int = RECURSION_ELEMENTS,
    stochastic_runs: int = STOCHASTIC_RUNS,
    max_subscribers: int | None = 1,
    rxpipe_extensions: bool = False,
    only: Collection[str] | None = None,
) -> None:
    """Check a one-to-one processor as a publisher and as a subscriber (rule 4.1), plus 4.2.

    ``make_processor()`` returns a fresh processor that emits one element per element it
    receives (a pass-through or a map; values are not compared). As a publisher it is fed
    by a reference :class:`~rxpipe.testing.IterablePublisher`; as a subscriber it is driven
    by a :class:`~rxpipe.testing.ProbePublisher` upstream, with a
    :class:`~rxpipe.testing.ProbeSubscriber` downstream standing in for its demand and its
    cancel. ``max_subscribers`` defaults to 1 (unicast); the other arguments are those of
    :func:`verify_publisher` (``rxpipe_extensions=False``: the Reactive Streams rules alone).

    Raises:
        ConformanceError: one ``rule X.Y: ...`` line per failure.
    """
    run_processor_checks(
        make_processor,
        make_element=make_element,
        max_elements=max_elements,
        timeout=timeout,
        no_signal_window=no_signal_window,
        gc_timeout=gc_timeout,
        recursion_elements=recursion_elements,
        stochastic_runs=stochastic_runs,
        max_subscribers=max_subscribers,
        rxpipe_extensions=rxpipe_extensions,
        only=only,
    ).raise_for_failures()
