"""Exceptions rxpipe raises to its users."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rxpipe.telemetry.report import Report

__all__ = (
    "IdleTimeoutError",
    "MissingBackpressureError",
    "PipelineCancelledError",
    "RxpipeError",
)


class RxpipeError(Exception):
    """Base class of every error rxpipe itself raises (user code's errors pass through as is)."""


class MissingBackpressureError(RxpipeError):
    """A producer sent more than was requested, or a buffer with ``Overflow.FAIL`` overflowed."""


class PipelineCancelledError(RxpipeError):
    """The pipeline was cancelled before it completed; ``report`` says what was lost.

    Raised by ``Pipeline.join()`` (and ``join_async()``) of a pipeline that was cancelled,
    by ``cancel()`` or by ``shutdown(deadline)`` reaching its deadline. A run stopped by
    leaving a loop or by an error ends without it (the error itself is raised).
    """

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


class IdleTimeoutError(RxpipeError, TimeoutError):
    """``idle_timeout(seconds)``: no item passed the stage for that long (a stalled pipeline)."""
