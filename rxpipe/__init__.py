"""rxpipe: streaming pipelines with real backpressure.

One stage model, two engines: a Reactive Streams demand-pull engine and a Go-style
push-channel engine, so the two backpressure models can be compared on identical work.
"""

from __future__ import annotations

from rxpipe.engines.pull.engine import PullEngine
from rxpipe.engines.push.engine import PushEngine
from rxpipe.errors import (
    IdleTimeoutError,
    MissingBackpressureError,
    PipelineCancelledError,
    RxpipeError,
)
from rxpipe.flow import Flow
from rxpipe.fragment import Fragment, stage
from rxpipe.pipeline import Pipeline
from rxpipe.spec import MAX_DEMAND, Processor, Publisher, Subscriber, Subscription
from rxpipe.stages import LinearLogic, LinearStage, Stage, StageLogic
from rxpipe.stages.buffering import Overflow
from rxpipe.stages.errors import Result
from rxpipe.stages.queue_source import QueueHandle
from rxpipe.stages.resilience import Retry
from rxpipe.telemetry import Metrics
from rxpipe.telemetry.report import Report, StageReport

__version__ = "0.1.0"

__all__ = (
    "MAX_DEMAND",
    "Flow",
    "Fragment",
    "IdleTimeoutError",
    "LinearLogic",
    "LinearStage",
    "Metrics",
    "MissingBackpressureError",
    "Overflow",
    "Pipeline",
    "PipelineCancelledError",
    "Processor",
    "Publisher",
    "PullEngine",
    "PushEngine",
    "QueueHandle",
    "Report",
    "Result",
    "Retry",
    "RxpipeError",
    "Stage",
    "StageLogic",
    "StageReport",
    "Subscriber",
    "Subscription",
    "__version__",
    "stage",
)
