"""Engines: how a flow's stages are run (pull: demand; push: channels).

Every terminal's ``engine=`` takes ``"pull"``, ``"push"`` or an :class:`Engine`:
:class:`PullEngine` (Reactive Streams demand, sync stages fused) or :class:`PushEngine` (Go's
model: a task or thread per stage, bounded channels). An engine opens a :class:`Run` of a
:class:`Plan` (``flow.plan``: a source and its stages); iterate the run, then read its Report.
"""

from rxpipe.engines.base import Engine, Plan, Run
from rxpipe.engines.pull.engine import PullEngine
from rxpipe.engines.push.engine import PushEngine

__all__ = ("Engine", "Plan", "PullEngine", "PushEngine", "Run")
