"""The demand-pull engine."""

from rxpipe.engines.pull.engine import PullEngine

__all__ = ("PullEngine",)
