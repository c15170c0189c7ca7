"""Sources: where a flow's items come from.

A source blueprint opens a fresh iterator (or async iterator) per run, so a flow over a
``range`` or a list runs again from the start each time. A flow over a one-shot iterator
(a generator object) yields nothing the second time, as Python's iterators do.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Generic, TypeVar

from rxpipe.stages.bridge import PublisherBridge

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.spec import Publisher
    from rxpipe.stages.plan import RunContext

__all__ = (
    "AsyncIterableSource",
    "IterableSource",
    "PublisherSource",
    "Source",
    "TickSource",
)

T = TypeVar("T")


class Source(ABC, Generic[T]):
    """A source blueprint: sync sources implement ``open``, async ones ``open_async``.

    Both take the :class:`~rxpipe.stages.plan.RunContext` of the run that opens the source:
    a source that runs other flows (``merge``, ``concat``) opens them through it, on the
    run's engine; the others ignore it.

    Sources that wait for items from elsewhere (``Flow.queue``) set :attr:`prefers_async`, so
    that asynchronous runs, and runs on a thread of their own that must be stoppable, await
    them instead of blocking; and they report what only they know (items rejected or
    dropped) through :meth:`settle`.
    """

    operator: ClassVar[str] = "source"
    #: True when the source can only be iterated with ``async for``.
    is_async: ClassVar[bool] = False
    #: True when a sync source's ``open_async`` waits for items without blocking the loop:
    #: engines use it instead of ``open`` wherever an event loop runs the source (an async
    #: run; the push engine's threads runtime, which can then cancel a waiting source).
    prefers_async: ClassVar[bool] = False
    #: True when :meth:`stop_producing` makes the source end by itself, after the items it
    #: already accepted (``Flow.queue`` closes); a drain wraps every other source in a gate
    #: (:func:`rxpipe.stages.draining.gated`).
    ends_when_stopped: ClassVar[bool] = False

    def open(self, ctx: RunContext) -> Iterator[T]:
        """A fresh iterator over the items, for one run."""
        raise TypeError(f"{self.operator} is an async source; use an _async terminal")

    @abstractmethod
    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        """A fresh async iterator over the items, for one run."""

    def settle(self, stats: StageStats) -> None:
        """Add what only the source knows to its stats, when a run ends (default: nothing).

        Engines call it once per run, after the source's iterator was closed.
        """

    def stop_producing(self) -> bool:
        """A drain asks the source to stop producing (from any thread): True when it then
        ends by itself (see :attr:`ends_when_stopped`). By default it cannot, and says so."""
        return False


#: Top-level packages of RxPY: ``reactivex`` (4.x) and ``rx`` (3.x).
_RX_PACKAGES: Final = frozenset({"reactivex", "rx"})
#: The names of RxPY's observable classes; every observable (subjects, connectable ones, a
#: user's subclass) has one of them in its MRO.
_RX_OBSERVABLES: Final = frozenset({"Observable", "ObservableBase"})


def rx_observable_kind(obj: object) -> str | None:
    """``"reactivex.Observable"`` (or ``"rx.Observable"``) when ``obj`` is an RxPY observable.

    Read from the classes in its MRO, so RxPY is never imported here: an object can only be an
    RxPY observable if RxPY was imported already.
    """
    for cls in type(obj).__mro__:
        package = getattr(cls, "__module__", "").partition(".")[0]
        if package in _RX_PACKAGES and cls.__name__ in _RX_OBSERVABLES:
            return f"{package}.Observable ({type(obj).__name__})"
    return None


async def _aiter_sync(it: Iterator[T]) -> AsyncIterator[T]:
    for item in it:
        yield item


@dataclass(frozen=True, slots=True)
class IterableSource(Source[T]):
    """Items of an iterable (``Flow.of``, ``Flow.from_iterable``, ``Flow.range``)."""

    iterable: Iterable[T]
    label: str = "from_iterable"

    def __post_init__(self) -> None:
        if not isinstance(self.iterable, Iterable):
            raise TypeError(
                f"from_iterable() needs an iterable, got {type(self.iterable).__name__}"
            )

    @property
    def name(self) -> str:
        return self.label

    def open(self, ctx: RunContext) -> Iterator[T]:
        return iter(self.iterable)

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return _aiter_sync(iter(self.iterable))


@dataclass(frozen=True, slots=True)
class AsyncIterableSource(Source[T]):
    """Items of an async iterable (``Flow.from_async_iterable``)."""

    aiterable: AsyncIterable[T]
    is_async: ClassVar[bool] = True
    label: str = "from_async_iterable"

    def __post_init__(self) -> None:
        if not isinstance(self.aiterable, AsyncIterable):
            raise TypeError(
                "from_async_iterable() needs an async iterable (with __aiter__), got "
                f"{type(self.aiterable).__name__}"
            )

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return aiter(self.aiterable)


@dataclass(frozen=True, slots=True)
class TickSource(Source[int]):
    """``Flow.timer(delay)`` (one tick) and ``Flow.interval(period)`` (a tick every period).

    Ticks are due on a fixed grid (``start + delay + k * period``), read from the event
    loop's clock, so they do not drift. A consumer that asks late gets the tick at once and
    the next one at the next point of the grid: ticks it was too slow for are skipped, never
    bunched (Go's ``time.Ticker``). The values count the ticks emitted: 0, 1, 2...
    """

    delay: float
    period: float | None = None
    is_async: ClassVar[bool] = True

    def open_async(self, ctx: RunContext) -> AsyncIterator[int]:
        return self._ticks()

    async def _ticks(self) -> AsyncIterator[int]:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.delay
        period = self.period
        n = 0
        while True:
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if period is not None:
                late = loop.time() - due
                if late >= period:
                    # a period or more late (the consumer asked late, or the loop was busy
                    # past the wake-up): this tick now, on the grid's latest point, so the next
                    # one comes on the grid after it (the ticks in between are skipped)
                    due += (late // period) * period
            yield n
            if period is None:
                return
            n += 1
            due += period


@dataclass(frozen=True, slots=True)
class PublisherSource(Source[T]):
    """Items of a Reactive Streams publisher (``Flow.from_publisher``), requested in batches."""

    publisher: Publisher[T]
    prefetch: int = 256
    label: str = "from_publisher"
    #: It waits for signals from elsewhere: async runs (and the threads runtime) must be able
    #: to interrupt that wait.
    prefers_async: ClassVar[bool] = True

    def __post_init__(self) -> None:
        kind = rx_observable_kind(self.publisher)
        if kind is not None:
            raise TypeError(
                f"from_publisher() needs a Reactive Streams Publisher, got an RxPY {kind}, "
                "which pushes items without demand (its subscribe takes an observer, not a "
                "Subscriber); read it with Flow.from_observable(observable, buffer=..., "
                "overflow=...), the RxPY bridge: a bounded buffer and an explicit Overflow "
                "policy"
            )
        if not callable(getattr(self.publisher, "subscribe", None)):
            raise TypeError(
                f"from_publisher() needs a Publisher, got {type(self.publisher).__name__}"
            )

    def open(self, ctx: RunContext) -> Iterator[T]:
        return PublisherBridge(self.publisher, self.prefetch, self.label).iterate()

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return PublisherBridge(self.publisher, self.prefetch, self.label).aiterate()
