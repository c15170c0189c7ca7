"""What the kernel measures when a run is observed, and the instrument protocol it feeds.

A run is *observed* when its flow names at least one stage with ``observe()``. Then every stage
of the run gets a :class:`StageTiming` (``StageStats.timing``) and the kernel times each
callback where it calls it (the interpreter's ``feed``/``demand`` fast paths and its event
loop, the end of scheduled work); lowerings that call user functions themselves wrap them with
:meth:`StageTiming.timed`. A run nobody observes has ``timing = None`` everywhere and pays one
attribute test per callback, nothing more (architecture principle 6).

:class:`Metrics` is the per-stage instrument protocol the exporters implement
(:mod:`rxpipe.telemetry`); the kernel never calls it per item: the run hands it what changed
since the last flush, in batches.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final, Protocol, final, runtime_checkable

__all__ = (
    "SAMPLES",
    "Metrics",
    "Observed",
    "Reservoir",
    "StageLabels",
    "StageTiming",
    "TimedAsyncIterator",
    "TimedIterator",
    "TimedWork",
)

#: The most item durations a stage keeps for its quantiles; past it, a uniform reservoir.
SAMPLES: Final = 20_000
#: Per-item time from which every item of a stage is timed (the stopwatch, about 0.1 us, is
#: then under 1% of it). A faster stage has one item in ``stride`` timed, at random, the
#: stride chosen so the stopwatch stays about as cheap, up to :data:`MAX_STRIDE`.
TIME_EVERY_ITEM_FROM: Final = 20e-6
MAX_STRIDE: Final = 64
#: Timed items between two choices of the stride.
_RECALIBRATE: Final = 128


@final
@dataclass(frozen=True, slots=True)
class StageLabels:
    """Who a measurement is about: the labels every exporter attaches.

    ``name`` is the stage's name in the flow, ``kind`` its operator (``"map"``, ``"range"``,
    ...), ``engine`` the engine's name (``"pull"``, ``"push"``).
    """

    name: str
    kind: str
    engine: str


@runtime_checkable
class Metrics(Protocol):
    """Per-stage instruments: what an exporter receives from a run (``observe(metrics=...)``).

    Counts are increments since the previous call for the same stage; durations come in
    batches; queue depth and demand are gauges sampled while the run goes. Calls come from
    the thread that flushes the run (a sampler thread while it runs, the thread that ends it
    last), never one per item from a stage's hot loop.
    """

    def add_items(self, stage: StageLabels, *, received: int, emitted: int) -> None:
        """Items that entered the stage and that it sent downstream."""
        ...

    def add_dropped(self, stage: StageLabels, reason: str, count: int) -> None:
        """Items the stage did not pass on: ``reason`` is ``"filtered"``, ``"queue_full"``
        (overflow policies, rejected offers) or ``"cancelled"`` (lost when the run stopped)."""
        ...

    def add_errors(self, stage: StageLabels, error_type: str, count: int) -> None:
        """Errors raised by the stage's function, by exception class name."""
        ...

    def observe_durations(self, stage: StageLabels, seconds: Sequence[float]) -> None:
        """Per-item processing times, in seconds."""
        ...

    def set_queue(self, stage: StageLabels, size: int, capacity: int) -> None:
        """Items waiting in the stage's input queue (a channel, a buffer), and its capacity."""
        ...

    def set_demand(self, stage: StageLabels, outstanding: int) -> None:
        """Items requested from the stage and not yet delivered (pull engine)."""
        ...


@final
@dataclass(frozen=True, slots=True)
class Observed:
    """The mark ``observe()`` leaves on a stage: report its durations, feed ``metrics``."""

    metrics: Metrics | None = None


@final
class Reservoir:
    """A uniform sample of at most :data:`SAMPLES` of the durations offered, in O(1) per offer.

    Past the first ``SAMPLES``, Li's "Algorithm L" draws how many offers to skip before the
    next one that replaces a random sample, so an offer costs a count and a comparison, not a
    random draw (``random.randrange`` per item was most of an observed stage's cost).
    """

    __slots__ = ("_next", "_w", "samples", "seen")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.seen = 0
        self._w = 1.0
        self._next = SAMPLES - 1  # the 0-based index of the next offer that replaces a sample

    def offer(self, seconds: float) -> None:
        """One more duration."""
        seen = self.seen
        self.seen = seen + 1
        if seen < SAMPLES:
            self.samples.append(seconds)
            if seen + 1 == SAMPLES:
                self._skip()
        elif seen == self._next:
            self.samples[random.randrange(SAMPLES)] = seconds
            self._skip()

    def _skip(self) -> None:
        self._w *= math.exp(math.log(_uniform()) / SAMPLES)
        self._next += int(math.log(_uniform()) / math.log1p(-self._w)) + 1


def _uniform() -> float:
    """A uniform draw in (0, 1) (``log`` of it must exist)."""
    return random.random() or 5e-324


@final
class StageTiming:
    """One stage's time in one observed run (written by the thread that runs the stage).

    ``busy`` is the time spent in the stage's callbacks; ``samples`` the per-item durations
    (one ``on_push``, one pull of a source); asynchronous work adds its own durations
    (``work_samples``) and its time divided by the most calls that were in flight at once,
    so a stage that runs ``c`` calls side by side is as busy as one that runs them in turn
    at ``1/c`` of the cost.
    """

    __slots__ = (
        "_item_sample",
        "_stride",
        "_window_n",
        "_window_s",
        "_work_sample",
        "busy",
        "errors",
        "in_flight",
        "keep",
        "peak",
        "pending",
        "skip",
        "timed_items",
        "weight",
        "work_seconds",
    )

    def __init__(self, keep: bool, export: bool = False) -> None:
        #: Whether durations are kept (an observed stage); busy time is always summed.
        self.keep = keep
        self.busy = 0.0
        self._item_sample = Reservoir()
        self._work_sample = Reservoir()
        self.work_seconds = 0.0
        self.in_flight = 0
        self.peak = 0
        #: Error counts by exception class name.
        self.errors: dict[str, int] = {}
        #: Durations not yet handed to an exporter (None: nobody exports this stage).
        self.pending: list[float] | None = [] if export else None
        #: Items to let pass untimed before the next timed one (callers decrement it).
        self.skip = 0
        #: How many items the next timed one stands for: itself and those skipped before it.
        self.weight = 1
        #: Items timed so far: a sign of progress even where counts are kept until the end
        #: (a fused loop's).
        self.timed_items = 0
        self._stride = 1
        self._window_n = 0
        self._window_s = 0.0

    def item(self, seconds: float) -> None:
        """One timed item's processing time; its busy time counts for ``weight`` items."""
        self.busy += seconds * self.weight
        self.timed_items += 1
        if self.keep:
            self._item_sample.offer(seconds)
            if self.pending is not None:
                self.pending.append(seconds)
        n, total = self._window_n + 1, self._window_s + seconds
        if n >= _RECALIBRATE:
            mean = total / n
            self._stride = (
                1
                if mean >= TIME_EVERY_ITEM_FROM
                else max(1, min(MAX_STRIDE, int(TIME_EVERY_ITEM_FROM / max(mean, 1e-9))))
            )
            n, total = 0, 0.0
        self._window_n, self._window_s = n, total
        stride = self._stride
        if stride > 1:  # a random gap of mean ``stride``: no aliasing with a periodic load
            self.skip = skip = int(random.random() * (2 * stride - 1))
            self.weight = skip + 1

    def work_ended(self, seconds: float) -> None:
        """A piece of work that ran ``seconds`` ended (see :class:`TimedWork`)."""
        self.in_flight -= 1
        self.work_seconds += seconds
        if self.keep:
            self._work_sample.offer(seconds)
            if self.pending is not None:
                self.pending.append(seconds)

    def add_busy(self, seconds: float) -> None:
        """Time in a callback that is not an item's (a pull, a timer), when timed."""
        self.busy += seconds * self.weight

    def error(self, exc: BaseException) -> None:
        """The stage's function raised ``exc``."""
        key = type(exc).__qualname__
        self.errors[key] = self.errors.get(key, 0) + 1

    def work(self, done: Callable[[Any, BaseException | None], None]) -> TimedWork:
        """``done`` of a piece of work scheduled now, wrapped to time the work."""
        return TimedWork(self, done)

    def timed(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` timed as one item per call, one call in a stride (see :meth:`item`), its
        errors counted by class: for a caller that just calls it (the fused loop)."""
        timed, error = self.timed_always(fn), self.error
        skip = 0  # this wrapper's own count of self.skip: a local is cheaper per call

        def sampled_fn(x: Any) -> Any:
            nonlocal skip
            try:
                if skip:
                    skip -= 1
                    return fn(x)
                try:
                    return timed(x)
                finally:
                    skip, self.skip = self.skip, 0
            except Exception as exc:
                error(exc)
                raise

        return sampled_fn

    def timed_always(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` timed at every call, its errors left to the caller to count (:meth:`error`):
        for a caller that keeps the stride itself (it calls ``fn`` untimed while ``skip`` says
        so, then reads ``skip`` anew after a timed call)."""
        item = self.item

        def timed_fn(x: Any) -> Any:
            started = perf_counter()
            try:
                return fn(x)
            finally:
                item(perf_counter() - started)

        return timed_fn

    @property
    def busy_seconds(self) -> float:
        """Callback time plus work time over the most calls in flight at once."""
        if self.peak:
            return self.busy + self.work_seconds / self.peak
        return self.busy

    def durations(self) -> list[float]:
        """The kept item durations: the work's when the stage ran work, else its callbacks'."""
        work = self._work_sample.samples
        return work if work else self._item_sample.samples

    def take_pending(self) -> list[float]:
        """Durations recorded since the last call (for an exporter)."""
        pending = self.pending
        if not pending:
            return []
        self.pending = []
        return pending


@final
class TimedWork:
    """``done`` of one piece of a stage's work, timing it while it runs: from when it was
    scheduled, or, for a piece that waits in a lane for a free slot, from when its turn
    came (:class:`~rxpipe._core.work.Work` says so): the wait is not processing time."""

    __slots__ = ("_done", "_running", "_started", "_timing")

    def __init__(self, timing: StageTiming, done: Callable[[Any, BaseException | None], None]):
        self._timing = timing
        self._done = done
        self._running = False
        self._started = 0.0
        self.begin()

    def begin(self) -> None:
        """It runs from now."""
        timing = self._timing
        timing.in_flight += 1
        if timing.in_flight > timing.peak:
            timing.peak = timing.in_flight
        self._running = True
        self._started = perf_counter()

    def wait(self) -> None:
        """It waits for its turn (not running: neither timed nor in flight)."""
        if self._running:
            self._running = False
            self._timing.in_flight -= 1

    def __call__(self, result: Any, error: BaseException | None) -> None:
        timing = self._timing
        if self._running:
            self._running = False
            timing.work_ended(perf_counter() - self._started)
        if error is not None and isinstance(error, Exception):
            timing.error(error)
        self._done(result, error)


@final
class TimedIterator:
    """A source's iterator, each ``next`` timed as one item of the source stage; closing it
    closes the source (started or not)."""

    __slots__ = ("_items", "_timing")

    def __init__(self, items: Iterator[Any], timing: StageTiming) -> None:
        self._items = items
        self._timing = timing

    def __iter__(self) -> TimedIterator:
        return self

    def __next__(self) -> Any:
        timing = self._timing
        if timing.skip:
            timing.skip -= 1
            try:
                return next(self._items)
            except Exception as exc:
                if not isinstance(exc, StopIteration):
                    timing.error(exc)
                raise
        started = perf_counter()
        try:
            x = next(self._items)
        except StopIteration:
            timing.add_busy(perf_counter() - started)
            raise
        except Exception as exc:
            timing.error(exc)
            raise
        timing.item(perf_counter() - started)
        return x

    def take(self, n: int, into: list[Any]) -> None:
        """Append up to ``n`` items to ``into`` (fewer at the end of the source), reading the
        untimed stretches between two timed items at C speed (``islice``): for a lowering
        that reads its source in batches. What the source raises is raised after the items
        it produced before are appended."""
        timing, items = self._timing, self._items
        while n > 0:
            skip = timing.skip
            if skip:
                k = min(skip, n)
                had = len(into)
                try:
                    into.extend(itertools.islice(items, k))
                except Exception as exc:
                    timing.skip -= len(into) - had
                    timing.error(exc)
                    raise
                got = len(into) - had
                timing.skip -= got
                if got < k:
                    return  # the source ended
                n -= got
                continue
            started = perf_counter()
            try:
                x = next(items)
            except StopIteration:
                timing.add_busy(perf_counter() - started)
                return
            except Exception as exc:
                timing.error(exc)
                raise
            timing.item(perf_counter() - started)
            into.append(x)
            n -= 1

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


@final
class TimedAsyncIterator:
    """An async source's iterator, each ``anext`` timed as one item of the source stage."""

    __slots__ = ("_items", "_timing")

    def __init__(self, items: AsyncIterator[Any], timing: StageTiming) -> None:
        self._items = items
        self._timing = timing

    def __aiter__(self) -> TimedAsyncIterator:
        return self

    async def __anext__(self) -> Any:
        started = perf_counter()
        try:
            x = await anext(self._items)
        except StopAsyncIteration:
            self._timing.add_busy(perf_counter() - started)
            raise
        except Exception as exc:
            self._timing.error(exc)
            raise
        self._timing.item(perf_counter() - started)
        return x

    async def aclose(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()
