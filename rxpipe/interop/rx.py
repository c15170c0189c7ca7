"""RxPY (``reactivex``) bridges: ``Flow.from_observable`` and ``flow.to_observable``.

RxPY has no backpressure: an observable calls ``on_next`` whenever it likes. The bridges put
it where rxpipe can bound it:

* :class:`ObservableSource` (``Flow.from_observable``) is a source with a bounded buffer of
  its own. A run subscribes at its first demand and disposes when it ends (completed, failed
  or cancelled). A full buffer applies the flow's explicit :class:`~rxpipe.Overflow` policy;
  under ``BACKPRESSURE`` the *emitting thread* waits for room, like a Go send on a full
  channel, so the bridge subscribes from a thread of its own (a synchronous observable, such
  as ``reactivex.from_iterable``, then emits on that thread), and it refuses to block a thread
  that runs an event loop or the run's own consumer (that would deadlock): the run fails with
  :class:`~rxpipe.MissingBackpressureError` saying so.
* :func:`to_observable` turns a flow into a cold ``reactivex.Observable``: each subscription
  runs the flow through its Reactive Streams publisher, requesting :data:`BATCH` items at a
  time; disposing the subscription cancels the run. A run the engine produces inline (a
  synchronous flow on the pull engine) delivers on the subscribing thread; any other run
  delivers from the publisher's pump thread. ``on_report`` gets the run's Report before the
  observer gets ``on_completed``/``on_error``; after a disposal, once the run has stopped.

This is the only module of rxpipe that imports ``reactivex``; ``rxpipe.flow`` imports it only
when one of the two bridges is used, so ``reactivex`` stays an optional extra (``rxpipe[rx]``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, final

try:
    import reactivex
    from reactivex import Observable
    from reactivex import operators as ops
    from reactivex.abc import DisposableBase, ObserverBase, SchedulerBase
    from reactivex.disposable import CompositeDisposable, Disposable
    from reactivex.observer import AutoDetachObserver
    from reactivex.scheduler import CurrentThreadScheduler
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "rxpipe's RxPY bridges (Flow.from_observable, flow.to_observable) need the optional "
        "'reactivex' package: pip install 'rxpipe[rx]'"
    ) from exc

from rxpipe._core.loops import threadsafe_setter
from rxpipe.engines.base import Engine, Plan, Run, RunContext
from rxpipe.errors import MissingBackpressureError
from rxpipe.spec import Subscription
from rxpipe.stages.buffering import Overflow, overflow_error
from rxpipe.stages.errors import annotate
from rxpipe.stages.simple import check_count
from rxpipe.stages.sources import Source

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.telemetry.report import Report

__all__ = ("BATCH", "JOIN_TIMEOUT", "ObservableSource", "check_observable", "to_observable")

T = TypeVar("T")

_log = logging.getLogger("rxpipe")

#: Items ``to_observable`` requests at a time; it asks for more once 3/4 were delivered.
BATCH: Final = 256
#: How long the end of a run waits for the bridge's subscribing thread to return (seconds).
#: It returns at the next emission once the run ended; only an observable that ignores
#: disposal (a ``reactivex.create`` loop that never checks it) can keep it longer.
JOIN_TIMEOUT: Final = 10.0

_NOT_YET: Final = object()  # nothing buffered yet: wait
_END: Final = object()  # the observable completed: no more items
_STAGE: Final = "from_observable"


def check_observable(observable: object) -> None:
    """Refuse, when the flow is built, anything that is not an RxPY observable."""
    if not isinstance(observable, Observable):
        raise TypeError(
            "from_observable() needs a reactivex Observable, got "
            f"{type(observable).__name__} {observable!r:.60}"
        )


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


#: ``delivering`` is True on a thread while it hands an item of a pumped ``to_observable`` run
#: to the observer. That thread is the publisher's pump, and the event loop running on it
#: serves that one run only: blocking it in ``on_next`` stalls nothing but that run, which is
#: backpressure, not a deadlock (see :meth:`_Bridge._must_not_block`).
_PUMP: Final = threading.local()


def _delivering_from_a_pump() -> bool:
    return bool(getattr(_PUMP, "delivering", False))


@final
class _Bridge(Generic[T]):
    """One run's subscription to the observable: the bounded buffer between its emitting
    threads and the run's consumer. Every method is thread-safe; the observer methods may be
    called from any thread, even several at once (a ``Subject`` fed by several threads).
    """

    __slots__ = (
        "_buffer",
        "_consumer",
        "_disposable",
        "_dropped",
        "_ended",
        "_failure",
        "_items",
        "_lock",
        "_lost",
        "_not_empty",
        "_not_full",
        "_observable",
        "_overflow",
        "_stats",
        "_stopped",
        "_subscribed",
        "_thread",
        "_waker",
    )

    def __init__(
        self, observable: Observable[T], buffer: int, overflow: Overflow, stats: StageStats
    ) -> None:
        self._observable = observable
        self._buffer = buffer
        self._overflow = overflow
        self._stats = stats  # its own run's, for the drops and losses only it sees
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)  # a sync consumer waits here
        self._not_full = threading.Condition(self._lock)  # BACKPRESSURE emitters wait here
        self._items: deque[T] = deque()
        self._ended = False  # the observable terminated, or the bridge failed it: no more items
        self._failure: BaseException | None = None
        self._stopped = False  # the run ended: the consumer is gone
        self._dropped = 0
        self._lost = 0
        self._disposable: DisposableBase | None = None
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()  # subscribe() returned (or was never called)
        self._waker: Callable[[], None] | None = None
        self._consumer: int | None = None  # the thread id of a sync consumer

    # -- the observer side (any thread) ------------------------------------------------------
    def on_next(self, item: T) -> None:
        dispose = False
        with self._lock:
            if not self._admits_locked():
                return
            if len(self._items) < self._buffer:
                self._accept_locked(item)
                return
            overflow = self._overflow
            if overflow is Overflow.DROP_NEWEST:
                self._dropped += 1
                return
            if overflow is Overflow.DROP_OLDEST:
                self._items.popleft()
                self._items.append(item)
                self._dropped += 1
                return
            if overflow is Overflow.FAIL:
                self._dropped += 1
                self._fail_locked(annotate(overflow_error(_STAGE, self._buffer), _STAGE))
                dispose = True
            elif self._must_not_block():
                self._dropped += 1
                self._fail_locked(
                    MissingBackpressureError(
                        f"{_STAGE}: the buffer of {self._buffer} is full and "
                        "overflow=Overflow.BACKPRESSURE would block the thread that emits, but "
                        "that thread runs an event loop or the run's own consumer (it would "
                        "deadlock). Emit from another thread (e.g. "
                        "ops.observe_on(ThreadPoolScheduler())) or choose DROP_NEWEST, "
                        "DROP_OLDEST or FAIL"
                    )
                )
                dispose = True
            else:
                # BACKPRESSURE: this emitting thread waits for room, like a Go send.
                self._send_locked(item)
                return
        if dispose:
            self._dispose()

    def on_error(self, error: Exception) -> None:
        with self._lock:
            if self._stopped or self._ended:
                return
            self._fail_locked(error)

    def on_completed(self) -> None:
        with self._lock:
            if self._stopped or self._ended:
                return
            self._ended = True
            self._wake_locked()

    def _admits_locked(self) -> bool:
        """Whether an emission may be buffered; if not, it is counted here. Once the bridge
        failed (an ``Overflow.FAIL`` overflow, an emission that must not block), emissions
        are rejected: dropped, like the one that overflowed. Once the run ended, they were
        emitted but will never be read: lost."""
        if self._ended:
            self._dropped += 1
            return False
        if self._stopped:
            self._lost += 1
            return False
        return True

    def _accept_locked(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) == 1:  # the consumer may be waiting for this one
            self._wake_locked()

    def _fail_locked(self, error: BaseException) -> None:
        self._failure = error
        self._ended = True
        self._not_full.notify_all()
        self._wake_locked()

    def _wake_locked(self) -> None:
        self._not_empty.notify()
        waker = self._waker
        if waker is not None:
            waker()  # call_soon_threadsafe: safe under the lock, never re-enters it

    def _send_locked(self, item: T) -> None:
        """Wait for room, then buffer ``item`` (unless the run stopped or failed meanwhile)."""
        while len(self._items) >= self._buffer and not (self._stopped or self._ended):
            self._not_full.wait()
        if self._stopped:
            self._lost += 1  # emitted, and waiting for room when the run ended
        elif self._ended:
            self._dropped += 1  # rejected: the bridge failed meanwhile
        else:
            self._accept_locked(item)

    def _must_not_block(self) -> bool:
        if threading.get_ident() == self._consumer:
            return True
        # An event loop's thread must not wait (its tasks may be the consumer, or the
        # observable's scheduler), unless it is a to_observable pump's, which runs nothing else
        # (a round trip through a push engine: flow.to_observable() into from_observable()).
        return _on_event_loop() and not _delivering_from_a_pump()

    # -- subscribing and disposing -----------------------------------------------------------
    def _start(self) -> None:
        """Subscribe, at the run's first demand."""
        if self._overflow is Overflow.BACKPRESSURE:
            # The emitting thread may have to wait: a synchronous observable must not emit on
            # the consumer's thread, so subscribe from a thread of our own.
            self._thread = threading.Thread(
                target=self._subscribe, name="rxpipe-from_observable", daemon=True
            )
            self._thread.start()
        else:
            # Nothing ever waits: subscribe right here (in an async run, on the loop's thread,
            # so an observable on that loop's AsyncIOScheduler is scheduled correctly).
            self._subscribe()

    def _subscribe(self) -> None:
        try:
            source = self._observable.pipe(ops.take_while(self._running))
            disposable = source.subscribe(self.on_next, self.on_error, self.on_completed)
        except Exception as exc:  # the observable's subscribe raised: the run fails with it
            with self._lock:
                if not (self._stopped or self._ended):
                    self._fail_locked(exc)
            disposable = None
        finally:
            self._subscribed.set()
        with self._lock:
            self._disposable = disposable
            stopped = self._stopped or self._ended
            waker = self._waker
        if stopped and disposable is not None:
            self._dispose()
        if waker is not None:
            # Wake the consumer's loop: an observable scheduled on it from this thread (an
            # AsyncIOScheduler) added a timer the sleeping loop does not know about yet.
            waker()

    def _running(self, _: object) -> bool:
        """``take_while``'s predicate: once the run ended, the next emission completes the
        subscription, which disposes the observable even before ``subscribe`` returned (a
        synchronous observable blocked in ``on_next`` when the run was cancelled, or one
        emitting everything inside ``subscribe`` after an ``Overflow.FAIL`` overflow). That
        emission is counted like one that reaches :meth:`on_next` too late."""
        with self._lock:
            return self._admits_locked()

    def _dispose(self) -> None:
        with self._lock:
            disposable, self._disposable = self._disposable, None
        if disposable is not None:
            disposable.dispose()

    # -- the consumer side -------------------------------------------------------------------
    def _take_locked(self) -> Any:
        if self._items:
            item = self._items.popleft()
            self._not_full.notify()
            return item
        if self._failure is not None:
            raise self._failure.with_traceback(None)
        return _END if self._ended else _NOT_YET

    def _stop_locked(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._lost += len(self._items)
            self._items.clear()
            self._not_full.notify_all()

    def _finish(self) -> None:
        """The run's end: dispose, join the subscribing thread, leave the counts."""
        self._dispose()
        thread = self._thread
        if thread is not None:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                _log.warning(
                    "%s: the observable's subscribe() has not returned %s s after the run "
                    "ended (an observable that ignores disposal?); its thread is left running",
                    _STAGE,
                    JOIN_TIMEOUT,
                )
        with self._lock:
            dropped, lost = self._dropped, self._lost
            self._dropped = self._lost = 0
        self._stats.dropped += dropped
        self._stats.lost += lost

    def iterate(self) -> Iterator[T]:
        from rxpipe.engines.base import ensure_no_running_loop

        self._consumer = threading.get_ident()
        started = False
        try:
            while True:
                with self._lock:
                    item = self._take_locked()
                if item is _NOT_YET and not started:
                    started = True
                    self._start()
                    continue
                if item is _NOT_YET:
                    # blocking here would block the loop, and an observable scheduled on it
                    ensure_no_running_loop(
                        "waiting for a Flow.from_observable source in a sync terminal"
                    )
                    with self._lock:
                        item = self._take_locked()
                        while item is _NOT_YET:
                            self._not_empty.wait()
                            item = self._take_locked()
                if item is _END:
                    return
                yield item
                del item
        finally:
            with self._lock:
                self._stop_locked()
            if started:
                self._finish()

    async def aiterate(self) -> AsyncIterator[T]:
        ready = asyncio.Event()
        wake = threadsafe_setter(ready)

        self._waker = wake
        started = False
        try:
            while True:
                with self._lock:
                    ready.clear()
                    item = self._take_locked()
                if item is _NOT_YET:
                    if not started:
                        started = True
                        self._start()
                    else:
                        await ready.wait()
                    continue
                if item is _END:
                    return
                yield item
                del item
        finally:
            with self._lock:
                self._stop_locked()
            if started:
                await self._await_subscribed(ready)
                self._finish()

    async def _await_subscribed(self, ready: asyncio.Event) -> None:
        """Let the subscribing thread return without blocking the loop (it wakes us)."""
        if self._thread is None:
            return
        try:
            while not self._subscribed.is_set():
                ready.clear()
                if not self._subscribed.is_set():
                    await ready.wait()
        except asyncio.CancelledError:
            self._finish()  # cancelled again while ending: join in place, then give way
            raise


@dataclass(frozen=True, slots=True, eq=False)
class ObservableSource(Source[T]):
    """Blueprint of :meth:`rxpipe.Flow.from_observable`; each run subscribes anew."""

    observable: Observable[T]
    buffer: int
    overflow: Overflow
    operator: ClassVar[str] = _STAGE
    # a sync run waits on a condition; inside an event loop (async runs, the push engine's
    # threads runtime, which must be able to interrupt the wait) it awaits instead
    prefers_async: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_count(self.buffer, "from_observable(buffer=)", minimum=1)
        if not isinstance(self.overflow, Overflow):
            raise TypeError(
                f"from_observable(overflow=) must be an rxpipe.Overflow, got {self.overflow!r}"
            )
        check_observable(self.observable)

    def _bridge(self, ctx: RunContext) -> _Bridge[T]:
        return _Bridge(self.observable, self.buffer, self.overflow, ctx.source_stats)

    def open(self, ctx: RunContext) -> Iterator[T]:
        return self._bridge(ctx).iterate()

    def open_async(self, ctx: RunContext) -> AsyncIterator[T]:
        return self._bridge(ctx).aiterate()


# -- to_observable ---------------------------------------------------------------------------
@final
class _ReportingRun(Run[T]):
    """A run that hands its Report to a callback once it is closed."""

    __slots__ = ("_inner", "_on_report", "_reported")

    def __init__(self, inner: Run[T], on_report: Callable[[Report], object]) -> None:
        self._inner = inner
        self._on_report = on_report
        self._reported = False

    def __iter__(self) -> Iterator[T]:
        return iter(self._inner)

    def __aiter__(self) -> AsyncIterator[T]:
        return aiter(self._inner)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._report_once()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._report_once()

    def report(self) -> Report:
        return self._inner.report()

    def _report_once(self) -> None:
        if self._reported:
            return
        self._reported = True
        try:
            self._on_report(self.report())  # with what the publisher gave back
        except Exception:
            _log.exception("to_observable(on_report=): the callback raised")


@final
class _ReportingEngine(Engine):
    """An engine whose runs report to ``on_report`` when they end."""

    def __init__(self, inner: Engine, on_report: Callable[[Report], object]) -> None:
        self.name = inner.name
        self._inner = inner
        self._on_report = on_report

    def open(self, plan: Plan) -> Run[Any]:
        return _ReportingRun(self._inner.open(plan), self._on_report)

    # how the publisher serves a run is the inner engine's to decide, not the wrapper's
    def runs_inline(self, plan: Plan) -> bool:
        return self._inner.runs_inline(plan)

    def refuses_running_loop(self, plan: Plan) -> bool:
        return self._inner.refuses_running_loop(plan)


def _receiver(observer: ObserverBase[T]) -> Callable[[T], object]:
    """What hands an item to ``observer``.

    ``Observable.subscribe`` wraps the user's callbacks in an ``AutoDetachObserver``, whose
    ``on_next`` silently discards an item once the subscription is disposed. Disposed from
    another thread between our own check and its check, an item would be counted delivered
    yet never received; so the bridge checks ``is_stopped`` itself and calls the wrapped
    callback: an item either reaches the user or is counted lost.
    """
    if isinstance(observer, AutoDetachObserver):
        inner = getattr(observer, "_on_next", None)
        if callable(inner):
            return inner  # type: ignore[no-any-return]
    return observer.on_next


@final
class _ObserverSubscriber(Generic[T]):
    """A Reactive Streams subscriber feeding one RxPY observer, demand in batches.

    RS signals are serial (rule 1.3), so only ``dispose`` (any thread) needs the lock.
    ``pumped``: the run is served by the publisher's pump (not produced inline in
    ``request``), so items reach ``on_next`` on the pump's thread, inside its event loop.
    """

    __slots__ = (
        "_deliver",
        "_done",
        "_lock",
        "_observer",
        "_outstanding",
        "_pumped",
        "_subscription",
    )

    def __init__(self, observer: ObserverBase[T], *, pumped: bool = False) -> None:
        self._observer = observer
        self._deliver = _receiver(observer)
        self._pumped = pumped
        self._lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._outstanding = 0
        self._done = False  # disposed, terminated, or the observer raised

    def on_subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscription = subscription
            done = self._done
        if done:
            subscription.cancel()
            return
        self._outstanding = BATCH
        subscription.request(BATCH)

    def on_next(self, item: T) -> None:
        if self._done or getattr(self._observer, "is_stopped", False):
            # disposed meanwhile (the observer would discard it): not received, so not
            # delivered; the run counts it lost
            subscription = self._subscription
            not_taken = getattr(subscription, "not_taken", None)
            if not_taken is not None:
                not_taken()
            return
        mark = self._pumped and not _delivering_from_a_pump()
        if mark:
            _PUMP.delivering = True
        try:
            self._deliver(item)
        except Exception as exc:
            _log.error(
                "the observer %r of flow.to_observable() raised from on_next; the run is cancelled",
                self._observer,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            self.dispose()
            return
        finally:
            if mark:
                _PUMP.delivering = False
        self._outstanding -= 1
        if self._outstanding <= BATCH // 4 and not self._done:  # replenish at 3/4 used
            subscription = self._subscription
            if subscription is not None:
                more = BATCH - self._outstanding
                self._outstanding = BATCH
                subscription.request(more)

    def on_error(self, error: BaseException) -> None:
        if self._finish():
            exc = error if isinstance(error, Exception) else RuntimeError(repr(error))
            self._call_observer("on_error", exc)

    def on_complete(self) -> None:
        if self._finish():
            self._call_observer("on_completed")

    def _finish(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def _call_observer(self, method: str, *args: Any) -> None:
        try:
            getattr(self._observer, method)(*args)
        except Exception:
            _log.exception(
                "the observer %r of flow.to_observable() raised from %s", self._observer, method
            )

    def dispose(self) -> None:
        """Cancel the run (idempotent, any thread)."""
        with self._lock:
            self._done = True
            subscription = self._subscription
        if subscription is not None:
            subscription.cancel()


def to_observable(
    plan: Plan, engine: Engine, on_report: Callable[[Report], object] | None
) -> reactivex.Observable[Any]:
    """A cold observable over ``plan``: each subscription runs it anew on ``engine``."""
    from rxpipe.engines.pull.publisher import FlowPublisher

    runs: Engine = engine if on_report is None else _ReportingEngine(engine, on_report)
    publisher: FlowPublisher[Any] = FlowPublisher(plan, runs)
    pumped = not runs.runs_inline(plan)

    def subscribe(
        observer: ObserverBase[Any], scheduler: SchedulerBase | None = None
    ) -> DisposableBase:
        subscriber: _ObserverSubscriber[Any] = _ObserverSubscriber(observer, pumped=pumped)

        def start(_: SchedulerBase, __: Any = None) -> None:
            if _on_event_loop():
                # an AsyncIOScheduler: a synchronous run would block the loop (and an engine
                # with an event loop of its own cannot start inside one), so the run goes to
                # a thread of its own, which ends with it
                threading.Thread(
                    target=publisher.subscribe, args=(subscriber,), name="rxpipe-to_observable"
                ).start()
            else:
                publisher.subscribe(subscriber)  # on_subscribe cancels at once if disposed

        # Scheduled, not run inline: Observable.subscribe has set up the trampoline, so the
        # subscription's disposable is in place before the first item (take() can dispose).
        # On the CurrentThreadScheduler a run the engine produces inline (a synchronous flow
        # on the pull engine) delivers inside subscribe(), as reactivex.from_iterable does;
        # subscribe(..., scheduler=ThreadPoolScheduler()) makes subscribe() return at once, so
        # that dispose() from another thread can stop it. Any other run (push engines, flows
        # that wait) is served by the publisher's pump: subscribe() returns at once and the
        # signals come from the pump's thread.
        sched = scheduler or CurrentThreadScheduler.singleton()
        return CompositeDisposable(sched.schedule(start), Disposable(subscriber.dispose))

    return reactivex.create(subscribe)
