"""The engine-neutral stage model, and the built-in stage blueprints.

Write your own stage by subclassing :class:`LinearStage` (with a :class:`LinearLogic`) for the
one-in, zero-or-more-out case, or :class:`Stage` (with a :class:`StageLogic`) for full control
of the pull/push handshake. Stages never import an engine.
"""

from rxpipe._core.clock import now
from rxpipe._core.stats import StageStats
from rxpipe.stages._base import LinearLogic, LinearStage, Ports, Stage, StageLogic
from rxpipe.stages.buffering import Buffer, Overflow
from rxpipe.stages.errors import ErrorMode, Node, Result
from rxpipe.stages.simple import Chunk, Filter, FlatMap, Map, Scan, Skip, Take, TakeWhile, Tap
from rxpipe.stages.timed import IdleTimeout, Throttle

__all__ = (
    "Buffer",
    "Chunk",
    "ErrorMode",
    "Filter",
    "FlatMap",
    "IdleTimeout",
    "LinearLogic",
    "LinearStage",
    "Map",
    "Node",
    "Overflow",
    "Ports",
    "Result",
    "Scan",
    "Skip",
    "Stage",
    "StageLogic",
    "StageStats",
    "Take",
    "TakeWhile",
    "Tap",
    "Throttle",
    "now",
)
