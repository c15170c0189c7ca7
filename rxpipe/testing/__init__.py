"""rxpipe's conformance kit: rule-numbered checks, probes and reference implementations.

Importable without pytest. Check a publisher in two lines::

    from rxpipe.testing import verify_publisher
    verify_publisher(lambda n: MyPublisher(range(n)))

The checks are the Reactive Streams rules alone; ``rxpipe_extensions=True`` adds what rxpipe
promises beyond them (see "The Reactive Streams rules" page of the documentation).

The pytest fixtures (``engine``, ``no_leaks``) live in :mod:`rxpipe.testing.pytest_plugin`,
which pytest loads by itself through the ``pytest11`` entry point.
"""

from __future__ import annotations

from rxpipe.testing._common import (
    DEFAULT_GC_TIMEOUT,
    DEFAULT_NO_SIGNAL_WINDOW,
    DEFAULT_TIMEOUT,
    TIMEOUT_SCALE_ENV,
    RuleViolation,
    Violation,
)
from rxpipe.testing._harness import ConformanceError, Failure, Verification
from rxpipe.testing.clock import VirtualTimeLoop, virtual_time
from rxpipe.testing.probes import (
    ANY,
    MisbehavingPublisher,
    ProbePublisher,
    ProbeSubscriber,
    ProbeSubscription,
    Signal,
)
from rxpipe.testing.reference import IdentityProcessor, IterablePublisher, ListSubscriber
from rxpipe.testing.tck import (
    run_processor_checks,
    run_publisher_checks,
    run_subscriber_checks,
    verify_processor,
    verify_publisher,
    verify_subscriber,
)

__all__ = (
    "ANY",
    "DEFAULT_GC_TIMEOUT",
    "DEFAULT_NO_SIGNAL_WINDOW",
    "DEFAULT_TIMEOUT",
    "TIMEOUT_SCALE_ENV",
    "ConformanceError",
    "Failure",
    "IdentityProcessor",
    "IterablePublisher",
    "ListSubscriber",
    "MisbehavingPublisher",
    "ProbePublisher",
    "ProbeSubscriber",
    "ProbeSubscription",
    "RuleViolation",
    "Signal",
    "Verification",
    "Violation",
    "VirtualTimeLoop",
    "run_processor_checks",
    "run_publisher_checks",
    "run_subscriber_checks",
    "verify_processor",
    "verify_publisher",
    "verify_subscriber",
    "virtual_time",
)
