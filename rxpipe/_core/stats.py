"""A stage's counters for one run: the kernel keeps them, the Report copies them.

They live below the stage model so that everything that counts (the interpreter, the engines'
drivers, the telemetry) depends on the kernel only, not on the blueprints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rxpipe._core.telemetry import StageTiming

__all__ = ("Done", "StageStats")

#: The callback of :meth:`Ports.schedule`: ``done(result, error)``.
Done = Callable[[Any, BaseException | None], None]


class StageStats:
    """Mutable per-run counters of one stage; the engine owns them, the Report copies them.

    ``received``/``emitted`` are counted by the engine (grab/push); a logic counts what only it
    knows: ``filtered`` (chose not to emit), ``dropped`` (overflow policies) and ``lost``
    (items it held when the run was cancelled). ``errored`` is counted by the error surface.
    ``timing`` is None unless the run is observed (see :mod:`rxpipe._core.telemetry`).
    ``timeouts`` and ``retries`` count the calls of ``map_async`` that timed out, and those
    made again after a failure.
    """

    __slots__ = (
        "dropped",
        "emitted",
        "errored",
        "filtered",
        "lost",
        "name",
        "received",
        "retries",
        "timeouts",
        "timing",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.received = 0
        self.emitted = 0
        self.filtered = 0
        self.errored = 0
        self.dropped = 0
        self.lost = 0
        self.timing: StageTiming | None = None
        self.timeouts = 0
        self.retries = 0

    def __repr__(self) -> str:
        return (
            f"StageStats({self.name!r}, received={self.received}, emitted={self.emitted}, "
            f"filtered={self.filtered}, errored={self.errored}, dropped={self.dropped}, "
            f"lost={self.lost})"
        )
