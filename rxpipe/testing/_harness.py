"""The machinery under the rule checks: running them, collecting failures, reporting.

A check is a plain function ``rule_X_Y_description(t)``. Its rule number comes from its
name. It fails by raising ``AssertionError`` (attributed to its own rule), a
:class:`~rxpipe.testing.RuleViolation` (attributed to the rule it names), an
:class:`ExtensionFailure` (one of rxpipe's own additions to its rule) or
:class:`CheckSkipped`. A check registered with ``extension=True`` exists only for rxpipe's
additions: every failure it reports is marked as an rxpipe extension.

Probes created through the context record violations on other threads; when a check saw
violations, those are the failures reported (each under its own rule) and
the check's own assertion becomes a follow-on detail: the first cause explains the rest, and
a publisher that breaks one rule fails under that rule's number only.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, final

from rxpipe.spec import Publisher, Subscriber
from rxpipe.testing._common import (
    DEFAULT_GC_TIMEOUT,
    DEFAULT_NO_SIGNAL_WINDOW,
    DEFAULT_TIMEOUT,
    RuleViolation,
    Violation,
    scaled,
    timeout_scale,
)
from rxpipe.testing.probes import ProbePublisher, ProbeSubscriber, ProbeSubscription

__all__ = (
    "Check",
    "CheckContext",
    "CheckSkipped",
    "ConformanceError",
    "ExtensionFailure",
    "Failure",
    "Timing",
    "Verification",
    "run_checks",
)

C = TypeVar("C", bound="CheckContext")
T = TypeVar("T")

_log = logging.getLogger("rxpipe.testing")
_RULE_NAME: Final = re.compile(r"^rule_(\d+)_(\d+)_\w+$")


#: Where rxpipe's additions to the rules are described, for messages and skip reasons.
EXTENSIONS_DOC: Final = "'The Reactive Streams rules' page of the rxpipe documentation"


class CheckSkipped(Exception):
    """Raised by a check that cannot run with the given configuration; says why."""


class ExtensionFailure(AssertionError):
    """A failed requirement that rxpipe adds to a rule (run with ``rxpipe_extensions=True``).

    Reported under the rule it extends, marked ``(rxpipe extension)``: a publisher can
    break it and still obey the Reactive Streams rules.
    """


@final
@dataclass(frozen=True, slots=True)
class Failure:
    """One failed rule: its number, the check that found it and what was seen.

    ``extension`` is true when what failed is one of rxpipe's own additions to the rule,
    not the Reactive Streams rule itself; the line says so.
    """

    rule: str
    check: str
    message: str
    extension: bool = False

    def __str__(self) -> str:
        marker = " (rxpipe extension)" if self.extension else ""
        return f"rule {self.rule}{marker}: {self.message} [{self.check}]"


@final
@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of one ``run_*_checks`` call: what passed, failed and was skipped."""

    subject: str
    passed: tuple[str, ...]
    failures: tuple[Failure, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        """Whether no check failed."""
        return not self.failures

    @property
    def failed_rules(self) -> frozenset[str]:
        """The numbers of the failed rules, e.g. ``{"1.1", "3.9"}``."""
        return frozenset(f.rule for f in self.failures)

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` if any check failed."""
        if self.failures:
            raise ConformanceError(self)

    def summary(self) -> str:
        """A report: one line per failed rule, then the skipped checks with their reasons."""
        failed_checks = len({f.check for f in self.failures})
        total = len(self.passed) + failed_checks
        lines = [
            f"{self.subject}: {failed_checks} of {total} checks failed"
            f" ({len(self.skipped)} skipped)"
            if self.failures
            else f"{self.subject}: all {total} checks passed ({len(self.skipped)} skipped)"
        ]
        lines.extend(str(f) for f in self.failures)
        lines.extend(f"  skipped {name}: {why}" for name, why in self.skipped)
        return "\n".join(lines)


class ConformanceError(AssertionError):
    """Raised by ``verify_*``: the message lists every failed rule, one per line."""

    def __init__(self, verification: Verification) -> None:
        super().__init__(verification.summary())
        self.verification = verification

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Every failure, in check order."""
        return self.verification.failures

    @property
    def rules(self) -> frozenset[str]:
        """The numbers of the failed rules."""
        return self.verification.failed_rules


@final
@dataclass(frozen=True, slots=True)
class Timing:
    """The kit's three time budgets, in seconds, already scaled (``RXPIPE_TCK_TIMEOUT_SCALE``)."""

    timeout: float
    no_signal_window: float
    gc_timeout: float
    scale: float

    @classmethod
    def from_options(
        cls, timeout: float | None, no_signal_window: float | None, gc_timeout: float | None
    ) -> Timing:
        """Apply the defaults and the environment's scale."""
        return cls(
            scaled(timeout, DEFAULT_TIMEOUT),
            scaled(no_signal_window, DEFAULT_NO_SIGNAL_WINDOW),
            scaled(gc_timeout, DEFAULT_GC_TIMEOUT),
            timeout_scale(),
        )


class CheckContext:
    """What a check gets: timing, a registry of probes, helpers that attribute failures."""

    def __init__(self, timing: Timing, *, rxpipe_extensions: bool) -> None:
        self.timing = timing
        self.rxpipe_extensions = rxpipe_extensions
        self._probes: list[ProbeSubscriber[Any]] = []
        self._publishers: list[ProbePublisher[Any]] = []
        self._subscriptions: list[ProbeSubscription] = []
        self._extra: list[Violation] = []
        #: Set when a check found that re-entrant calls deadlock; later checks skip.
        self.reentrancy_broken: str | None = None

    # -- probes ------------------------------------------------------------------------------

    def probe(
        self,
        *,
        on_subscribe_hook: Callable[[ProbeSubscriber[Any]], None] | None = None,
        on_next_hook: Callable[[ProbeSubscriber[Any], Any], None] | None = None,
        register: bool = True,
        name: str = "probe",
    ) -> ProbeSubscriber[Any]:
        """A probe subscriber with this run's timing, registered for violation collection.

        ``register=False`` is for rule 3.13, where the check itself must not keep the probe
        alive; call :meth:`adopt` with its violations before dropping it.
        """
        probe: ProbeSubscriber[Any] = ProbeSubscriber(
            # the probe applies the scale to what it is configured with: undo ours
            timeout=self.timing.timeout / self.timing.scale,
            no_signal_window=self.timing.no_signal_window / self.timing.scale,
            on_subscribe_hook=on_subscribe_hook,
            on_next_hook=on_next_hook,
            name=name,
        )
        if register:
            self._probes.append(probe)
        return probe

    def probe_publisher(self) -> ProbePublisher[Any]:
        """A probe publisher registered for violation collection."""
        publisher: ProbePublisher[Any] = ProbePublisher()
        self._publishers.append(publisher)
        return publisher

    def probe_subscription(self, name: str) -> ProbeSubscription:
        """A stand-alone probe subscription registered for violation collection."""
        subscription = ProbeSubscription(name)
        self._subscriptions.append(subscription)
        return subscription

    def adopt(self, violations: Sequence[Violation]) -> None:
        """Record violations seen by an unregistered probe."""
        self._extra.extend(violations)

    def violations(self) -> list[Violation]:
        """Every violation recorded by this check's probes, without duplicates, in order."""
        found: list[Violation] = list(self._extra)
        for probe in self._probes:
            found.extend(probe.violations)
        for publisher in self._publishers:
            found.extend(publisher.violations)
        for subscription in self._subscriptions:
            found.extend(subscription.violations)
        return list(dict.fromkeys(found))

    def close(self) -> None:
        """Cancel whatever is still subscribed, so nothing keeps running after the check."""
        for probe in self._probes:
            if probe.subscription is not None and probe.terminal is None and not probe.is_cancelled:
                probe.cancel()

    # -- helpers that attribute failures to rules --------------------------------------------

    def subscribe(self, publisher: Publisher[T], subscriber: Subscriber[T]) -> None:
        """``publisher.subscribe(subscriber)``, which must return normally (rule 1.9)."""
        try:
            publisher.subscribe(subscriber)
        except Exception as exc:
            raise RuleViolation("1.9", f"subscribe() raised {exc!r}") from exc

    def expect_complete(self, probe: ProbeSubscriber[Any], *, items: int | None = None) -> None:
        """Wait for ``on_complete``; silence means a finite stream never completed (1.5)."""
        try:
            probe.expect_complete(timeout=self.timing.timeout)
        except AssertionError as exc:
            if "got nothing" in str(exc):
                what = f"after {items} element(s)" if items is not None else "at its end"
                raise RuleViolation(
                    "1.5", f"a finite stream did not signal on_complete {what}: {exc}"
                ) from None
            raise

    def require_reentrancy(self) -> None:
        """Skip when an earlier check found re-entrant calls to deadlock (rule 3.2)."""
        if self.reentrancy_broken is not None:
            raise CheckSkipped(self.reentrancy_broken)

    def wait_until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Poll ``condition`` until it holds or the timeout passes; return its last value."""
        deadline = time.monotonic() + (self.timing.timeout if timeout is None else timeout)
        while not condition():
            if time.monotonic() >= deadline:
                return condition()
            time.sleep(0.002)
        return True


@final
@dataclass(frozen=True, slots=True)
class Check(Generic[C]):
    """A registered check: its function, its name and its rule number.

    ``extension``: the check tests only rxpipe's additions to its rule; it runs with
    ``rxpipe_extensions=True`` and its failures are marked as rxpipe extensions.
    """

    function: Callable[[C], None]
    extension: bool = False

    @property
    def name(self) -> str:
        """The function's name, ``rule_X_Y_description``."""
        return self.function.__name__

    @property
    def rule(self) -> str:
        """``"X.Y"``, taken from the name."""
        match = _RULE_NAME.match(self.name)
        if match is None:  # pragma: no cover - guarded when checks are registered
            raise ValueError(f"check {self.name!r} is not named rule_X_Y_description")
        return f"{match.group(1)}.{match.group(2)}"


def select(checks: Sequence[Check[C]], only: Collection[str] | None) -> list[Check[C]]:
    """Keep the checks named in ``only`` (by function name or rule number, e.g. ``"3.9"``)."""
    if only is None:
        return list(checks)
    if isinstance(only, str):
        raise TypeError("only= takes a collection of names or rule numbers, not a single str")
    wanted = set(only)
    known = {c.name for c in checks} | {c.rule for c in checks}
    unknown = wanted - known
    if unknown:
        raise ValueError(f"only= names unknown checks or rules: {sorted(unknown)}")
    return [c for c in checks if c.name in wanted or c.rule in wanted]


def run_checks(
    subject: str,
    checks: Sequence[Check[C]],
    make_context: Callable[[], C],
    only: Collection[str] | None = None,
) -> Verification:
    """Run each check on a fresh context; collect passes, failures and skips."""
    passed: list[str] = []
    failures: list[Failure] = []
    skipped: list[tuple[str, str]] = []
    shared: str | None = None
    for check in select(checks, only):
        context = make_context()
        context.reentrancy_broken = shared
        outcome = _run_one(check, context)
        shared = context.reentrancy_broken
        if isinstance(outcome, str):
            skipped.append((check.name, outcome))
            _log.info("%s: skipped %s: %s", subject, check.name, outcome)
        elif outcome:
            failures.extend(outcome)
        else:
            passed.append(check.name)
    return Verification(subject, tuple(passed), tuple(failures), tuple(skipped))


def _run_one(check: Check[C], context: C) -> list[Failure] | str:
    """Run one check; return its failures (empty: passed) or the reason it was skipped."""
    own: Failure | None = None
    extension = check.extension
    try:
        if extension and not context.rxpipe_extensions:
            raise CheckSkipped(
                f"an rxpipe extension (see {EXTENSIONS_DOC}); pass rxpipe_extensions=True to run it"
            )
        check.function(context)
    except CheckSkipped as exc:
        return str(exc)
    except RuleViolation as exc:
        own = Failure(exc.rule, check.name, exc.detail, extension)
    except ExtensionFailure as exc:
        own = Failure(check.rule, check.name, str(exc), True)
    except AssertionError as exc:
        own = Failure(check.rule, check.name, str(exc), extension)
    except Exception as exc:
        own = Failure(check.rule, check.name, f"unexpected {exc!r}", extension)
    finally:
        try:
            context.close()
        except Exception as exc:  # cancel() raising was recorded as a violation already
            _log.debug("closing %s: %r", check.name, exc)
    violations = context.violations()
    if not violations:
        return [own] if own is not None else []
    grouped: dict[str, list[Violation]] = {}
    for violation in violations:
        grouped.setdefault(violation.rule, []).append(violation)
    failures = [
        Failure(rule, check.name, found[0].message + _more(len(found) - 1), extension)
        for rule, found in grouped.items()
    ]
    if own is not None:
        first = failures[0]
        then = own.message if len(own.message) <= 200 else own.message[:197] + "..."
        failures[0] = Failure(
            first.rule, first.check, f"{first.message}\n    (then: {then})", first.extension
        )
    return failures


def _more(count: int) -> str:
    return f" (and {count} more like it)" if count else ""


def run_guarded(function: Callable[[], None], timeout: float, name: str) -> str | None:
    """Run ``function`` on a helper thread; return a message if it is still stuck after
    ``timeout`` (a deadlock), else ``None``. Its exception, if any, is re-raised here.

    Only the deadlock case leaves the (daemon) thread behind: it cannot be stopped.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            function()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, name=f"rxpipe-tck-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f"still blocked after {timeout:.3g} s: a deadlock (thread left behind)"
    if errors:
        raise errors[0]
    return None
