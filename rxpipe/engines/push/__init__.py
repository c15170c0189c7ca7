"""The push engine (:class:`PushEngine`, Go's model): each stage runs in its own task or
thread, and stages meet at bounded channels whose blocking ``send`` is the backpressure
(``buffer=0``: a rendezvous).

:class:`AsyncChannel` serves tasks of one event loop, :class:`ThreadChannel` threads; both
behave the same. Their exceptions and statistics record live in
:mod:`rxpipe.engines.push.channel`.
"""

from rxpipe.engines.push.channel import AsyncChannel
from rxpipe.engines.push.engine import PushEngine
from rxpipe.engines.push.thread_channel import ThreadChannel

__all__ = ("AsyncChannel", "PushEngine", "ThreadChannel")
