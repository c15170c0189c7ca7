"""A chain of stages as a Reactive Streams ``Processor``, driven entirely by signals.

The generic interpreter does no I/O, so it can sit between a subscriber side and a publisher
side: upstream ``on_next`` feeds it, downstream ``request(n)`` asks it for output. Every
signal, from any thread, schedules one :class:`~rxpipe.spec.DrainLoop`, so the processor's
signals are serial (rule 1.3), its recursion bounded (rule 3.3), and it never blocks waiting:
when it needs input it requests a batch upstream and returns.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, Generic, TypeVar, final

from rxpipe._core.stats import StageStats
from rxpipe.errors import MissingBackpressureError
from rxpipe.spec import (
    MAX_DEMAND,
    DrainLoop,
    InertSubscription,
    Subscriber,
    Subscription,
    add_demand,
    check_request,
    signal_safely,
)
from rxpipe.stages.errors import Node, interpreter

__all__ = ("FlowProcessor",)

T = TypeVar("T")
R = TypeVar("R")

_NO_ERROR: Final[Any] = object()


@final
class _Downstream(Subscription):
    """The subscription the processor hands its (single) subscriber."""

    __slots__ = ("_owner",)

    def __init__(self, owner: FlowProcessor[Any, Any]) -> None:
        self._owner = owner

    def request(self, n: int) -> None:
        self._owner._request(n)

    def cancel(self) -> None:
        self._owner._cancel()


@final
class FlowProcessor(Generic[T, R]):
    """A unicast processor running a chain of stages between two Reactive Streams edges.

    Build one with :meth:`rxpipe.Fragment.to_processor`. It requests ``prefetch`` items
    upstream when its stages need input and nothing is buffered. A second subscriber is
    refused with ``on_error``; an upstream error reaches downstream at once (rule 4.2).
    """

    __slots__ = (
        "__weakref__",
        "_bad",
        "_buffer",
        "_cancelled",
        "_done",
        "_downstream",
        "_drain",
        "_interp",
        "_lock",
        "_outstanding",
        "_prefetch",
        "_requested",
        "_upstream",
        "_upstream_done",
        "_upstream_error",
        "_upstream_terminated",
        "stats",
    )

    def __init__(self, nodes: Sequence[Node], *, prefetch: int = 16) -> None:
        self._prefetch = prefetch
        self.stats = [StageStats(n.name) for n in nodes]
        self._interp = interpreter(nodes, self.stats)
        self._lock = threading.Lock()
        self._buffer: deque[Any] = deque()
        self._upstream: Subscription | None = None
        self._downstream: Subscriber[R] | None = None
        self._outstanding = 0
        self._requested = 0
        self._upstream_done = False
        self._upstream_error: Any = _NO_ERROR
        self._upstream_terminated = False
        self._cancelled = False
        self._bad: ValueError | None = None
        self._done = False
        self._drain = DrainLoop(self._run)
        self._interp.start()

    # -- subscriber side (upstream signals) ------------------------------------------------------
    def on_subscribe(self, subscription: Subscription) -> None:
        if subscription is None:
            raise TypeError("rule 2.13: on_subscribe(None)")
        with self._lock:
            refuse = self._upstream is not None or self._done
            if not refuse:
                self._upstream = subscription
        if refuse:
            subscription.cancel()  # rule 2.5
            return
        self._drain.schedule()

    def on_next(self, item: T) -> None:
        with self._lock:
            if self._done:
                return
            if self._outstanding <= 0:
                if self._upstream_error is _NO_ERROR:
                    self._upstream_error = MissingBackpressureError(
                        "processor: upstream signalled on_next beyond the requested demand "
                        "(rule 1.1)"
                    )
            else:
                self._outstanding -= 1
                self._buffer.append(item)
        self._drain.schedule()

    def on_error(self, error: BaseException) -> None:
        if error is None:
            raise TypeError("rule 2.13: on_error(None)")
        with self._lock:
            self._upstream_terminated = True  # upstream ended: nothing left to cancel there
            if self._upstream_error is _NO_ERROR and not self._upstream_done:
                self._upstream_error = error
        self._drain.schedule()

    def on_complete(self) -> None:
        with self._lock:
            self._upstream_done = True
        self._drain.schedule()

    # -- publisher side ------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber[R]) -> None:
        if subscriber is None:
            raise TypeError("rule 1.9: subscribe(None): the subscriber must not be None")
        with self._lock:
            taken = self._downstream is not None or self._done
            if not taken:
                self._downstream = subscriber
        if taken:
            signal_safely(subscriber, "on_subscribe", InertSubscription())
            signal_safely(subscriber, "on_error", ValueError("this processor is unicast: taken"))
            return
        if not signal_safely(subscriber, "on_subscribe", _Downstream(self)):
            self._cancel()
            return
        self._drain.schedule()

    def _request(self, n: int) -> None:
        error = check_request(n)
        with self._lock:
            if self._done or self._cancelled:
                return
            if error is not None:
                self._bad = self._bad or error
            else:
                self._requested = add_demand(self._requested, n)
        self._drain.schedule()

    def _cancel(self) -> None:
        with self._lock:
            if self._done:
                return
            self._cancelled = True
        self._drain.schedule()

    # -- the drain loop ------------------------------------------------------------------------
    def _finish(self, method: str | None, *args: Any) -> None:
        """End: cancel upstream if it is still live, drop both references, signal downstream."""
        with self._lock:
            self._done = True
            upstream, self._upstream = self._upstream, None
            downstream, self._downstream = self._downstream, None
            upstream_live = not self._upstream_done and not self._upstream_terminated
            held = len(self._buffer)
            self._buffer.clear()
        if not self._interp.finished:
            self._interp.cancel()
        self._interp.stop()
        if held and self.stats:
            self.stats[0].lost += held
        if upstream is not None and upstream_live:
            upstream.cancel()
        if downstream is not None and method is not None:
            signal_safely(downstream, method, *args)

    def _interrupted(self) -> bool:
        return self._cancelled or self._bad is not None

    def _run(self) -> None:
        if self._done:
            return
        interp = self._interp
        if self._cancelled:
            self._finish(None)
            return
        if self._bad is not None:
            self._finish("on_error", self._bad)
            return
        downstream = self._downstream
        if downstream is None:
            return  # nobody to signal yet; upstream is not asked for anything either
        error = self._upstream_error
        if error is not _NO_ERROR and not self._upstream_done:
            self._finish("on_error", error)  # rule 4.2: at once, even without demand
            return
        while True:
            if interp.output:
                if self._requested == 0:
                    return
                item = interp.output.popleft()
                with self._lock:
                    if self._requested != MAX_DEMAND:
                        self._requested -= 1
                if not signal_safely(downstream, "on_next", item):
                    self._finish(None)
                    return
                if self._interrupted():  # cancelled or a bad request from inside on_next
                    self._run()
                    return
                continue
            if interp.finished:
                if interp.error is not None:
                    self._finish("on_error", interp.error)
                else:
                    self._finish("on_complete")
                return
            with self._lock:
                ended = self._upstream_done and not self._buffer
            if ended and not interp.input_closed:
                interp.feed_end()  # completion travels without demand (rules 1.5, 2.9)
                continue
            if self._requested == 0:
                return
            interp.demand()
            if interp.output or interp.finished:
                continue
            if not interp.input_wanted:
                return  # a stage is waiting for something else; its signal will drain again
            with self._lock:
                item = self._buffer.popleft() if self._buffer else _NO_ERROR
                ended = self._upstream_done and item is _NO_ERROR
                ask = 0
                if (
                    item is _NO_ERROR
                    and not ended
                    and self._outstanding == 0
                    and self._upstream is not None
                ):
                    ask = self._outstanding = self._prefetch
                upstream = self._upstream
            if item is not _NO_ERROR:
                interp.feed(item)
            elif ended:
                interp.feed_end()
            else:
                if ask and upstream is not None:
                    upstream.request(ask)  # may signal on_next right here: the loop goes on
                return
