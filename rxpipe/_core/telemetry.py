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

import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final, Protocol, final, runtime_checkable

__all__ = (
    "SAMPLES",
    "Metrics",
    "Observed",
    "StageLabels",
    "StageTiming",
    "TimedAsyncIterator",
    "TimedIterator",
)

#: The most item durations a stage keeps for its quantiles; past it, a uniform reservoir.
SAMPLES: Final = 20_000


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
class StageTiming:
    """One stage's time in one observed run (written by the thread that runs the stage).

    ``busy`` is the time spent in the stage's callbacks; ``samples`` the per-item durations
    (one ``on_push``, one pull of a source); asynchronous work adds its own durations
    (``work_samples``) and its time divided by the most calls that were in flight at once,
    so a stage that runs ``c`` calls side by side is as busy as one that runs them in turn
    at ``1/c`` of the cost.
    """

    __slots__ = (
        "busy",
        "errors",
        "in_flight",
        "keep",
        "peak",
        "pending",
        "samples",
        "seen",
        "work_samples",
        "work_seconds",
        "work_seen",
    )

    def __init__(self, keep: bool, export: bool = False) -> None:
        #: Whether durations are kept (an observed stage); busy time is always summed.
        self.keep = keep
        self.busy = 0.0
        self.samples: list[float] = []
        self.seen = 0
        self.work_samples: list[float] = []
        self.work_seen = 0
        self.work_seconds = 0.0
        self.in_flight = 0
        self.peak = 0
        #: Error counts by exception class name.
        self.errors: dict[str, int] = {}
        #: Durations not yet handed to an exporter (None: nobody exports this stage).
        self.pending: list[float] | None = [] if export else None

    def item(self, seconds: float) -> None:
        """One item's processing time (it is busy time too)."""
        self.busy += seconds
        if self.keep:
            self.seen += 1
            _keep(self.samples, self.seen, seconds)
            if self.pending is not None:
                self.pending.append(seconds)

    def error(self, exc: BaseException) -> None:
        """The stage's function raised ``exc``."""
        key = type(exc).__qualname__
        self.errors[key] = self.errors.get(key, 0) + 1

    def work(self, done: Callable[[Any, BaseException | None], None]) -> Callable[..., None]:
        """``done`` of a piece of work scheduled now, wrapped to time the work."""
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight
        started = perf_counter()

        def timed_done(result: Any, error: BaseException | None) -> None:
            seconds = perf_counter() - started
            self.in_flight -= 1
            self.work_seconds += seconds
            if self.keep:
                self.work_seen += 1
                _keep(self.work_samples, self.work_seen, seconds)
                if self.pending is not None:
                    self.pending.append(seconds)
            if error is not None and isinstance(error, Exception):
                self.error(error)
            done(result, error)

        return timed_done

    def timed(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` timed as one item per call (for lowerings that call user functions)."""
        item, error = self.item, self.error

        def timed_fn(x: Any) -> Any:
            started = perf_counter()
            try:
                return fn(x)
            except Exception as exc:
                error(exc)
                raise
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
        return self.work_samples if self.work_samples else self.samples

    def take_pending(self) -> list[float]:
        """Durations recorded since the last call (for an exporter)."""
        pending = self.pending
        if not pending:
            return []
        self.pending = []
        return pending


def _keep(samples: list[float], seen: int, seconds: float) -> None:
    """Keep ``seconds`` in a bounded uniform sample of the ``seen`` durations so far."""
    if len(samples) < SAMPLES:
        samples.append(seconds)
        return
    slot = random.randrange(seen)
    if slot < SAMPLES:
        samples[slot] = seconds


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
        started = perf_counter()
        try:
            x = next(self._items)
        except StopIteration:
            self._timing.busy += perf_counter() - started
            raise
        except Exception as exc:
            self._timing.error(exc)
            raise
        self._timing.item(perf_counter() - started)
        return x

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
            self._timing.busy += perf_counter() - started
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
