"""Pieces every part of the conformance kit shares: timing and rule-tagged failures.

Each failure carries the number of the Reactive Streams rule it breaks, so that a report
can say *which* rule failed rather than only *that* something failed.
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import dataclass
from typing import Final, final

__all__ = (
    "DEFAULT_GC_TIMEOUT",
    "DEFAULT_NO_SIGNAL_WINDOW",
    "DEFAULT_TIMEOUT",
    "TIMEOUT_SCALE_ENV",
    "RuleViolation",
    "Violation",
    "scaled",
    "short",
    "timeout_scale",
)

#: Environment variable multiplying every timeout of the kit (slow CI machines: ``3``).
TIMEOUT_SCALE_ENV: Final = "RXPIPE_TCK_TIMEOUT_SCALE"
#: How long to wait for a signal that must come (seconds, before scaling).
DEFAULT_TIMEOUT: Final = 0.3
#: How long to watch for a signal that must not come. Paid by almost every check, so small.
DEFAULT_NO_SIGNAL_WINDOW: Final = 0.05
#: How long to keep collecting garbage before a dropped reference counts as kept (rule 3.13).
DEFAULT_GC_TIMEOUT: Final = 0.3


def timeout_scale() -> float:
    """Read the timeout multiplier from the environment, at call time so tests can set it."""
    raw = os.environ.get(TIMEOUT_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"{TIMEOUT_SCALE_ENV} must be a positive number, got {raw!r}")
    return scale


def scaled(value: float | None, default: float) -> float:
    """Return ``value`` (or ``default``) in seconds, multiplied by the environment's scale."""
    base = default if value is None else value
    if base < 0:
        raise ValueError(f"a timeout must be >= 0, got {base!r}")
    return base * timeout_scale()


_REPR: Final = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


def short(obj: object) -> str:
    """A bounded ``repr`` for messages: a failure report must stay readable."""
    return _REPR.repr(obj)


@final
@dataclass(frozen=True, slots=True)
class Violation:
    """A rule broken by the other side, recorded where it happened (often on another thread)."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"rule {self.rule}: {self.message}"


class RuleViolation(AssertionError):
    """An assertion failure that knows which rule it is about.

    The checks raise it where a failure points at a rule other than the one being checked
    (say, no ``on_subscribe`` at all: rule 1.9, whatever the check was about).
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"rule {rule}: {message}")
        self.rule = rule
        self.detail = message
