"""rxpipe: streaming pipelines with real backpressure.

One stage model, two engines: a Reactive Streams demand-pull engine and a Go-style
push-channel engine, so the two backpressure models can be compared on identical work.
"""

from __future__ import annotations

from rxpipe.errors import MissingBackpressureError, PipelineCancelledError, RxpipeError
from rxpipe.spec import MAX_DEMAND, Processor, Publisher, Subscriber, Subscription

__version__ = "0.1.0"

__all__ = (
    "MAX_DEMAND",
    "MissingBackpressureError",
    "PipelineCancelledError",
    "Processor",
    "Publisher",
    "RxpipeError",
    "Subscriber",
    "Subscription",
    "__version__",
)
