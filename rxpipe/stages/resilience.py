"""Timeouts and retries for the calls of ``map_async``: :class:`Retry` and :func:`resilient`.

Both wrap the user's call inside the piece of work the stage schedules, so they run on the
engine's one scheduler like the call itself, and a call slot stays taken while an attempt
backs off (the concurrency limit covers the retries too). A timeout is per attempt: the call is
cancelled (``asyncio.timeout``) and the attempt fails with :class:`TimeoutError`, which the
stage's ``errors=`` surfaces like any error once no retry is left. Each timeout and each
retry is counted in the stage's Report (``timeouts``, ``retries``).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rxpipe._core.stats import StageStats

__all__ = ("Retry", "resilient")


def _check_number(value: object, what: str, *, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not (low <= value <= high and math.isfinite(value)):
        bounds = f"between {low:g} and {high:g}" if high != math.inf else f">= {low:g}"
        raise ValueError(f"{what} must be a finite number {bounds}, got {value!r}")


def _is_exception_type(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseException)


@dataclass(frozen=True, slots=True)
class Retry:
    """Call again when a call fails: up to ``attempts`` calls in all, backing off exponentially.

    The wait before retry ``k`` (1, 2, ...) is ``backoff * 2 ** (k - 1)`` seconds, capped at
    ``max_backoff``, then spread by ``jitter``: drawn uniformly from ``wait * (1 - jitter)`` to
    ``wait * (1 + jitter)``, so that calls that failed together do not retry together
    (Reactor's ``Retry.backoff``, Akka's ``RestartSettings``). Only errors that are instances
    of ``on`` are retried; the others, and the last attempt's error, go to ``errors=``.

    Args:
        attempts: the most calls per item, the first one included, >= 1.
        backoff: the first wait, in seconds, >= 0.
        jitter: the spread of each wait, from 0 (none) to 1.
        on: the exception type(s) worth a retry (default: every ``Exception``, a timeout
            included).
        max_backoff: the longest wait, in seconds (``None``: no cap).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``attempts`` < 1, or a duration or ``jitter`` out of range.
    """

    attempts: int = 3
    backoff: float = 0.1
    jitter: float = 0.2
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception
    max_backoff: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry(attempts=) must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"Retry(attempts=) must be >= 1, got {self.attempts}")
        _check_number(self.backoff, "Retry(backoff=)", low=0)
        _check_number(self.jitter, "Retry(jitter=)", low=0, high=1)
        if self.max_backoff is not None:
            _check_number(self.max_backoff, "Retry(max_backoff=)", low=0)
        kinds = self.on if isinstance(self.on, tuple) else (self.on,)
        if not kinds or not all(
            isinstance(k, type) and issubclass(k, BaseException) for k in kinds
        ):
            raise TypeError(f"Retry(on=) must be exception types, got {self.on!r}")

    def wait(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1 for the second call), jitter applied."""
        wait = self.backoff * 2.0 ** (retry - 1)
        if self.max_backoff is not None:
            wait = min(wait, self.max_backoff)
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            wait *= 1.0 + spread
        return wait


def resilient(
    call: Callable[[Any], Awaitable[Any]],
    timeout: float | None,
    retry: Retry | None,
    stats: StageStats,
) -> Callable[[Any], Awaitable[Any]]:
    """``call`` with a timeout per attempt and retries, counting both into ``stats``."""
    if timeout is None and retry is None:
        return call

    async def attempt(item: Any) -> Any:
        if timeout is None:
            return await call(item)
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await call(item)
        except TimeoutError:
            if not scope.expired():
                raise  # the call raised it itself
            stats.timeouts += 1
            raise TimeoutError(f"the call took longer than timeout={timeout:g} s") from None

    if retry is None:
        return attempt
    attempts, on = retry.attempts, retry.on

    async def with_retries(item: Any) -> Any:
        k = 1
        while True:
            try:
                return await attempt(item)
            except on:
                if k >= attempts:
                    raise
            stats.retries += 1
            await asyncio.sleep(retry.wait(k))
            k += 1

    return with_retries
