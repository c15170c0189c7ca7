"""``Flow``: the fluent, immutable, engine-neutral description of a pipeline.

Building a flow runs nothing; every method returns a new ``Flow``. Terminals (``to_list``,
``run``, iteration, ...) hand the flow's plan to an engine, which runs it once. Each operator
method carries the operator's whole documentation, with the four-line demand contract:
*Emits when / Backpressures when / Completes when / Cancels when*.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
)
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, final, overload

from rxpipe import pipeline as _pipeline
from rxpipe._core.telemetry import Metrics, Observed
from rxpipe.engines._live import engine_for, watch
from rxpipe.engines.base import Engine, Plan, Run, closing, ensure_no_running_loop
from rxpipe.engines.pull.engine import PullEngine
from rxpipe.engines.pull.publisher import FlowPublisher
from rxpipe.engines.push.engine import PushEngine
from rxpipe.pipeline import AsyncIteration, Iteration, Pipeline
from rxpipe.stages._base import Stage
from rxpipe.stages.async_map import MapAsync
from rxpipe.stages.buffering import Buffer, Overflow
from rxpipe.stages.callables import check_callable, check_sync_callable, is_async_callable
from rxpipe.stages.errors import ErrorMode, Node, Result, check_errors
from rxpipe.stages.fan_in import AsyncConcatSource, ConcatSource, MergeSource
from rxpipe.stages.fan_out import Parallel, Partition
from rxpipe.stages.queue_source import QueueHandle, QueueSource, QueueState
from rxpipe.stages.resilience import RestartSource, RestartStage, Retry
from rxpipe.stages.simple import (
    Chunk,
    Filter,
    FlatMap,
    Map,
    Scan,
    Skip,
    Take,
    TakeWhile,
    Tap,
    check_count,
    check_seconds,
)
from rxpipe.stages.sources import (
    AsyncIterableSource,
    IterableSource,
    PublisherSource,
    Source,
    TickSource,
)
from rxpipe.stages.timed import IdleTimeout, Throttle
from rxpipe.telemetry.live import LiveView, check_progress, watching

if TYPE_CHECKING:
    import reactivex

    from rxpipe.engines.base import Run
    from rxpipe.spec import Publisher, Subscriber
    from rxpipe.telemetry.report import Report

__all__ = ("EngineArg", "Flow")

T = TypeVar("T")
R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)

#: What every terminal's ``engine=`` accepts.
EngineArg = Literal["pull", "push"] | Engine

_MISSING: Final = object()


def _discard(_: object) -> None:
    """The item sink of ``run()``."""


def _never_awaitable(f: Callable[[Any], object]) -> Callable[[Any], None]:
    """``f`` as a sync sink that refuses to drop an awaitable on the floor (a lambda that
    returns ``store(x)``: the coroutine would never run, and the item would look delivered)."""

    def sink(item: Any) -> None:
        result = f(item)
        if result is not None and inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # no "never awaited" warning on top of the error
            raise TypeError(
                f"foreach(f): f returned an awaitable ({type(result).__name__}) that nothing "
                "would await: use `await flow.foreach_async(f)`"
            )

    return sink


def resolve_engine(engine: EngineArg) -> Engine:
    """Turn ``"pull"``/``"push"`` into an engine with default settings."""
    if isinstance(engine, Engine):
        return engine
    if engine == "pull":
        return PullEngine()
    if engine == "push":
        return PushEngine()
    raise ValueError(f"engine must be 'pull', 'push' or an Engine instance, got {engine!r}")


#: A terminal's ``progress=``: off, a live table drawn with rich, or a view of one's own.
Progress = bool | LiveView


def _view(progress: Progress) -> LiveView | None:
    """The view to show a run in: ``progress=``'s, else a ``LiveView.watch()`` block's."""
    view = check_progress(progress)
    return view if view is not None else watching()


def _engine(engine: EngineArg, view: LiveView | None) -> Engine:
    """The engine to run on; a watched run's may differ (see :func:`engine_for`)."""
    resolved = resolve_engine(engine)
    return resolved if view is None else engine_for(resolved)


def _plans(what: str, flows: tuple[Any, ...]) -> tuple[Plan, ...]:
    """The plans of ``Flow.merge``/``Flow.concat``'s arguments, checked when the flow is built."""
    for i, flow in enumerate(flows):
        if not isinstance(flow, Flow):
            raise TypeError(f"{what}() takes Flows; argument {i} is {type(flow).__name__} {flow!r}")
    return tuple(flow.plan for flow in flows)


def _takes_errors(node: Node) -> bool:
    """Whether a fragment's ``errors=`` reaches this stage: it runs a user function and
    kept the default surface (fan-outs take no ``errors=``: their inner stages do)."""
    stage = node.stage
    if not stage.user_code or isinstance(stage, Parallel | Partition):
        return False
    if isinstance(stage, MapAsync):
        return stage.errors == "raise"
    return node.errors == "raise"


def _supervised(nodes: tuple[Node, ...], errors: ErrorMode, restart: bool) -> tuple[Node, ...]:
    """A fragment's nodes with ``via(fragment, errors=, restart=)`` applied, checked now."""
    check_errors(errors)
    if not isinstance(restart, bool):
        raise TypeError(f"restart must be a bool, got {restart!r}")
    if errors != "raise":
        takers = [n.name for n in nodes if _takes_errors(n)]
        if not takers:
            raise ValueError(
                f"via(fragment, errors={errors!r}): no stage of the fragment runs a user "
                "function with the default errors='raise'"
            )
        if errors == "result" and len(takers) > 1:
            raise ValueError(
                f"via(fragment, errors='result') would feed Result values from one stage into "
                f"the next ({', '.join(takers)}): set errors='result' on the one stage you mean"
            )
    if restart and not any(n.stage.stateful for n in nodes):
        raise ValueError("via(fragment, restart=True): no stage of the fragment is stateful")
    out: list[Node] = []
    for node in nodes:
        if errors != "raise" and _takes_errors(node):
            if isinstance(node.stage, MapAsync):  # it applies errors= itself, in output order
                node = dataclasses.replace(
                    node, stage=dataclasses.replace(node.stage, errors=errors)
                )
            else:
                node = dataclasses.replace(node, errors=errors)
        if restart and node.stage.stateful:
            node = dataclasses.replace(node, restart=True)
        out.append(node)
    return tuple(out)


@final
class Flow(Generic[T_co]):
    """An immutable pipeline blueprint: a source and the stages after it.

    Build one with a source constructor (``Flow.range(10)``), extend it with operators
    (``.map(f)``), run it with a terminal (``.to_list()``). Running twice runs twice.
    """

    __slots__ = ("_nodes", "_source", "_source_name", "_source_observed")

    def __init__(
        self,
        source: Source[Any],
        source_name: str,
        nodes: tuple[Node, ...],
        source_observed: Observed | None = None,
    ) -> None:
        self._source = source
        self._source_name = source_name
        self._nodes = nodes
        self._source_observed = source_observed

    def __repr__(self) -> str:
        stages = "".join(f".{n.name}" for n in self._nodes)
        return f"<Flow {self._source_name}{stages}>"

    @property
    def plan(self) -> Plan:
        """The flow as engines see it."""
        return Plan(self._source, self._source_name, self._nodes, self._source_observed)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the source and of every stage, in order (they key the Report)."""
        return (self._source_name, *(n.name for n in self._nodes))

    # -- sources ---------------------------------------------------------------------------
    @staticmethod
    def of(*items: T) -> Flow[T]:
        """A flow of the given items, in order."""
        return Flow(IterableSource(items, "of"), "of", ())

    @staticmethod
    def from_iterable(iterable: Iterable[T]) -> Flow[T]:
        """A flow of an iterable's items; a list or range runs anew each time, a generator once.

        Raises:
            TypeError: ``iterable`` is not iterable.
        """
        return Flow(IterableSource(iterable), "from_iterable", ())

    @overload
    @staticmethod
    def range(stop: int, /) -> Flow[int]: ...
    @overload
    @staticmethod
    def range(start: int, stop: int, step: int = 1, /) -> Flow[int]: ...
    @staticmethod
    def range(*args: int) -> Flow[int]:
        """A flow of ``range(...)``'s integers (same arguments as the builtin).

        Raises:
            TypeError: an argument is not an int.
            ValueError: ``step`` is zero.
        """
        if not 1 <= len(args) <= 3:
            raise TypeError(f"range expected 1 to 3 arguments, got {len(args)}")
        for a in args:
            if isinstance(a, bool) or not isinstance(a, int):
                raise TypeError(f"range() arguments must be ints, got {type(a).__name__} {a!r}")
        return Flow(IterableSource(range(*args), "range"), "range", ())

    @staticmethod
    def from_async_iterable(aiterable: AsyncIterable[T]) -> Flow[T]:
        """A flow of an async iterable's items; the flow then needs an event loop to run.

        Raises:
            TypeError: ``aiterable`` has no ``__aiter__``.
        """
        return Flow(AsyncIterableSource(aiterable), "from_async_iterable", ())

    @overload
    @staticmethod
    def restart(flow: Flow[T], *, retry: Retry) -> Flow[T]: ...
    @overload
    @staticmethod
    def restart(flow: Stage[T, R], *, retry: Retry) -> Stage[T, R]: ...
    @staticmethod
    def restart(flow: Flow[Any] | Stage[Any, Any], *, retry: Retry) -> Any:
        """Run ``flow`` again, after a growing delay, when it fails.

        Given a **Flow** (a source), returns a Flow: when the flow fails, it is run again
        from its start (Akka's ``RestartSource.onFailuresWithBackoff``), so a source that
        lost its connection (a broker, a socket, a paginated API) is re-opened, and the
        stages of ``flow`` start afresh with it. Items emitted before a failure stay emitted
        (a flow that starts over from the beginning emits them again). Each restart is
        counted in the Report as a retry of the ``"restart"`` source.

        Given a **fragment** (``rxpipe.stage()...``), returns one stage to attach with
        :meth:`via`: the fragment runs inside it and, when it fails, a fresh copy (fresh
        state) takes over after the delay (``RestartFlow.onFailuresWithBackoff``); the items
        the failed copy held, the failing one among them, are lost to it. The failure is
        counted as ``errored`` and the restart as a retry of the ``"restart"`` stage.

        ``retry`` says how: up to ``retry.attempts`` runs in all, the wait before the k-th
        restart ``retry.wait(k)`` (exponential, capped, with jitter), and only for errors
        that are instances of ``retry.on``; any other error, or the last run's, fails the
        flow. The delay is a timer, so the flow needs an event loop (the sync terminals run
        one of their own).

        For a fragment:

        - Emits when: the fragment emits.
        - Backpressures when: the fragment backpressures, or while it waits to restart.
        - Completes when: upstream completed and the fragment completed.
        - Cancels when: downstream cancels; a failure it does not restart from fails the
          stage and cancels upstream.

        Raises:
            TypeError: ``flow`` is neither a Flow nor a fragment, or ``retry`` is not an
                :class:`rxpipe.Retry`.
            ValueError: the fragment is empty.
        """
        if not isinstance(retry, Retry):
            raise TypeError(f"Flow.restart(retry=) must be an rxpipe.Retry, got {retry!r}")
        if isinstance(flow, Flow):
            return Flow(RestartSource(flow.plan, retry), "restart", ())
        nodes = getattr(flow, "nodes", None)
        if not isinstance(flow, Stage) or not isinstance(nodes, tuple):
            raise TypeError(
                f"Flow.restart(flow) needs a Flow or a fragment (rxpipe.stage()...), got "
                f"{type(flow).__name__}"
            )
        if not nodes:
            raise ValueError("Flow.restart(fragment): the fragment is empty")
        return RestartStage(nodes, retry)

    @staticmethod
    def timer(seconds: float) -> Flow[int]:
        """A flow of one item, ``0``, emitted ``seconds`` after the run starts; then it completes.

        Read from the event loop's clock, so the flow needs an event loop (the sync terminals
        run one of their own). Combine it with ``concat`` or ``merge`` to delay or time-box
        another flow.

        Raises:
            TypeError: ``seconds`` is not a number.
            ValueError: ``seconds`` is not a finite number >= 0.
        """
        check_seconds(seconds, "Flow.timer(seconds)", zero=True)
        return Flow(TickSource(seconds), "timer", ())

    @staticmethod
    def interval(seconds: float) -> Flow[int]:
        """A flow of ``0, 1, 2, ...``, one every ``seconds`` (the first after ``seconds``).

        It never completes: end it with ``take(n)``, ``take_while`` or a deadline. Ticks are
        due on a fixed grid, so they do not drift; a consumer that asks late gets the tick at
        once and the next one at the next point of the grid (ticks it was too slow for are
        skipped, never bunched: Go's ``time.Ticker``). Read from the event loop's clock, so
        the flow needs an event loop (the sync terminals run one of their own).

        Raises:
            TypeError: ``seconds`` is not a number.
            ValueError: ``seconds`` is not a finite number > 0.
        """
        check_seconds(seconds, "Flow.interval(seconds)")
        return Flow(TickSource(seconds, seconds), "interval", ())

    @staticmethod
    def from_publisher(publisher: Publisher[T], *, prefetch: int = 256) -> Flow[T]:
        """A flow of a Reactive Streams publisher's items, requested ``prefetch`` at a time.

        Demand is replenished when 75% of the window was used. A publisher that signals more
        than was requested fails the flow with ``MissingBackpressureError`` instead of being
        buffered without bound.

        Raises:
            TypeError: ``publisher`` has no ``subscribe``, or is an RxPY ``Observable`` (it
                has no demand: use ``Flow.from_observable``).
            ValueError: ``prefetch`` < 1.
        """
        check_count(prefetch, "from_publisher(prefetch=)", minimum=1)
        return Flow(PublisherSource(publisher, prefetch), "from_publisher", ())

    @staticmethod
    def from_observable(
        observable: reactivex.Observable[T], *, buffer: int, overflow: Overflow
    ) -> Flow[T]:
        """A flow of an RxPY (``reactivex``) observable's items, through a bounded buffer.

        RxPY has no backpressure, so the bridge needs both choices made explicitly: how many
        items to hold (``buffer``) and what a full buffer does (``overflow``); nothing is
        buffered without bound, and every item a policy throws away is counted as
        ``dropped`` of the ``"from_observable"`` stage in the Report. Each run subscribes
        anew at its first demand and disposes when it ends (completed, failed or cancelled;
        items still buffered then are counted as ``lost``). The observable's ``on_error`` and
        ``on_completed`` become the flow's, after the buffered items. The observable may
        emit from any thread, from several at once (a ``Subject`` fed by several threads).

        - ``BACKPRESSURE``: lossless, for cold observables. A full buffer blocks the thread
          that emits, like a Go send on a full channel, so the bridge subscribes from a
          thread of its own (a synchronous observable such as ``reactivex.from_iterable``
          emits on it). It never blocks a thread running an event loop, nor the run's own
          consumer: an emission there that would have to wait fails the flow with
          :class:`~rxpipe.MissingBackpressureError` (emit elsewhere, e.g. with
          ``ops.observe_on(ThreadPoolScheduler())``, or choose a dropping policy).
        - ``DROP_NEWEST`` / ``DROP_OLDEST``: for hot observables (a ``Subject``,
          ``reactivex.interval``) into a slower consumer: the newest item, or the oldest
          buffered one, is dropped. The bridge subscribes on the run's own thread (in an
          async run, the loop's, so an ``AsyncIOScheduler`` on that loop works); a
          synchronous observable then emits everything during ``subscribe``, keeping what
          fits.
        - ``FAIL``: the flow fails with :class:`~rxpipe.MissingBackpressureError` naming the
          ``from_observable`` stage, after the buffered items; the observable is disposed.

        - Emits when: an item is buffered and downstream asks.
        - Backpressures when: only under ``BACKPRESSURE``, by blocking the emitting thread
          once ``buffer`` items wait; otherwise the policy applies at once.
        - Completes when: the observable completed and the buffer is empty.
        - Cancels when: downstream cancels: the subscription is disposed.

        Args:
            observable: a ``reactivex`` observable (or ``Subject``).
            buffer: the most items held between the observable and the flow, >= 1.
            overflow: what a full buffer does with one more item.

        Raises:
            TypeError: ``buffer`` is not an int, ``overflow`` not an :class:`Overflow`, or
                ``observable`` not a ``reactivex`` observable.
            ValueError: ``buffer`` < 1.
            ImportError: ``reactivex`` is not installed (``pip install 'rxpipe[rx]'``).
        """
        check_count(buffer, "from_observable(buffer=)", minimum=1)
        if not isinstance(overflow, Overflow):
            raise TypeError(
                f"from_observable(overflow=) must be an rxpipe.Overflow, got {overflow!r}"
            )
        from rxpipe.interop.rx import ObservableSource

        return Flow(ObservableSource(observable, buffer, overflow), "from_observable", ())

    @staticmethod
    def merge(*flows: Flow[T]) -> Flow[T]:
        """The items of all ``flows`` as they come: every flow runs at once (fan-in).

        Each flow's items keep their order; between flows, items come in the order they
        arrive. Each flow runs as a run of its own on the merged run's engine (with its
        settings), read by an asyncio task inside the merged run, so the merged flow needs an
        event loop (sync terminals run one of their own). The flows' stages are not listed in
        the merged run's Report.

        Memory stays bounded: a flow with an item waiting for the consumer does not ask for
        the next one, so the merge holds at most one item per flow
        (:data:`rxpipe.stages.fan_in.MERGE_AHEAD`), besides what each flow's own stages hold.

        - Emits when: any flow has an item and downstream asks.
        - Backpressures when: downstream backpressures; each flow then stops one item ahead.
        - Completes when: every flow completed (at once for ``Flow.merge()``).
        - Cancels when: downstream cancels (every flow is cancelled), or a flow fails: the
          others are cancelled and the original exception is raised.

        Raises:
            TypeError: an argument is not a Flow.
        """
        return Flow(MergeSource(_plans("merge", flows)), "merge", ())

    @staticmethod
    def concat(*flows: Flow[T]) -> Flow[T]:
        """The items of each of ``flows`` in turn: a flow runs only after the previous completed.

        Each flow runs as a run of its own on the concatenated run's engine (with its
        settings); their stages are not listed in the concatenated run's Report. The result is
        synchronous when every flow is, else it needs an event loop (sync terminals run one of
        their own).

        - Emits when: the running flow has an item and downstream asks.
        - Backpressures when: downstream backpressures.
        - Completes when: the last flow completed (at once for ``Flow.concat()``).
        - Cancels when: downstream cancels (the running flow is cancelled, the later ones
          never run), or a flow fails (its error is raised, the later ones never run).

        Raises:
            TypeError: an argument is not a Flow.
        """
        plans = _plans("concat", flows)
        if any(plan.is_async for plan in plans):
            return Flow(AsyncConcatSource(plans), "concat", ())
        return Flow(ConcatSource(plans), "concat", ())

    @staticmethod
    def queue(maxsize: int, overflow: Overflow) -> tuple[Flow[T], QueueHandle[T]]:
        """A flow fed through a handle by producers that cannot block (an HTTP handler).

        Returns ``(flow, handle)``. ``handle.offer(item)`` never waits, from any thread or
        event-loop callback: the item goes into a buffer of ``maxsize``, and when that is
        full ``overflow`` decides at once. ``offer`` returns ``False`` when the item was not
        accepted: under ``DROP_NEWEST``, and under ``FAIL``, which also fails the flow with
        :class:`~rxpipe.MissingBackpressureError` after the buffered items. Under
        ``DROP_OLDEST`` it returns ``True`` and the oldest buffered item is dropped.
        ``Overflow.BACKPRESSURE`` is refused: a producer that cannot wait cannot be slowed
        down, and ``False`` from ``offer`` (``DROP_NEWEST``) is its backpressure signal.
        ``handle.close()`` ends the flow after the buffered items; ``handle.fail(exc)`` ends it
        with ``exc`` after them. Every rejected or dropped item, offers after the end
        included, is counted in ``handle.dropped`` and as ``dropped`` of the ``"queue"`` stage
        in the Report of the run consuming the queue (an offer made after that run ended, in
        the next one's). ``pipeline.drain()`` of a :meth:`start`-ed flow closes the queue
        first, then lets what it accepted through.

        Offers made before the flow runs are buffered (up to ``maxsize``). The queue is one
        stream, consumed once: when a run ends (completed, failed, or stopped early, which
        also ends the queue, and later offers return ``False``) a later run, or a later
        ``subscribe`` to its publisher, sees that ending at once; items still buffered when a
        run stopped early are counted as ``lost``. A second run while one is consuming the
        queue is refused: it fails with ``RuntimeError``.

        A sync run waits for items on a condition, in the caller's thread; an async run awaits
        them without blocking its event loop.

        - Emits when: an item is buffered and downstream asks.
        - Backpressures when: never upstream (``offer`` never waits); the buffer absorbs
          what downstream does not take yet, then ``overflow`` applies.
        - Completes when: ``handle.close()`` was called and the buffer is empty.
        - Cancels when: downstream cancels: the queue ends (later offers return ``False``).

        Args:
            maxsize: the most items buffered, >= 1.
            overflow: ``Overflow.DROP_NEWEST``, ``Overflow.DROP_OLDEST`` or ``Overflow.FAIL``.

        Raises:
            TypeError: ``maxsize`` is not an int, or ``overflow`` is not an :class:`Overflow`.
            ValueError: ``maxsize`` < 1, or ``overflow`` is ``Overflow.BACKPRESSURE``.
        """
        state: QueueState[T] = QueueState(maxsize, overflow)
        return Flow(QueueSource(state), "queue", ()), QueueHandle(state)

    # -- operators -------------------------------------------------------------------------
    def _add(
        self,
        stage: Stage[Any, Any],
        name: str | None,
        errors: ErrorMode = "raise",
        restart: bool = False,
        observed: Observed | None = None,
    ) -> Flow[Any]:
        check_errors(errors)
        if not isinstance(restart, bool):
            raise TypeError(f"restart must be a bool, got {restart!r}")
        if restart and not stage.stateful:
            raise ValueError(f"restart=True applies to stateful stages; {stage.operator} is not")
        taken = set(self.stage_names)
        if name is None:
            name = stage.operator
            k = 1
            while name in taken:
                k += 1
                name = f"{stage.operator}#{k}"
        elif not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        elif name in taken:
            raise ValueError(
                f"a stage named {name!r} is already in this flow; names must be unique"
            )
        node = Node(name, stage, errors, restart, observed)
        return Flow(self._source, self._source_name, (*self._nodes, node), self._source_observed)

    def observe(self, name: str, metrics: Metrics | None = None) -> Flow[T_co]:
        """Name the stage before this call ``name`` and measure it in every run.

        ``observe`` is not a stage: it renames the stage (or the source) it follows, so that
        name keys the Report, metric labels, error notes and per-stage buffer sizes
        (``PushEngine(buffer={name: n})``). A run with an observed stage times every stage
        (``busy_seconds``, ``Report.bottleneck``) and keeps the item durations of observed
        ones (``duration_quantiles``, ``Report.suggested_buffers``); ``metrics`` also receives
        its counters, durations and queue depth (:class:`rxpipe.Metrics`: the Prometheus and
        OpenTelemetry exporters of :mod:`rxpipe.telemetry`, or your own). A run with no
        observed stage measures no time at all.

        - Emits when: as the stage it names (it adds no stage).
        - Backpressures when: as the stage it names.
        - Completes when: as the stage it names.
        - Cancels when: as the stage it names.

        Observed runs take the engines' generic paths where a fast path could not time each
        stage: the pull engine does not fuse them (see :doc:`telemetry`).

        Raises:
            TypeError: ``name`` is not a non-empty str, or ``metrics`` is not a
                :class:`rxpipe.Metrics`.
            ValueError: another stage of the flow is called ``name``.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"observe(name): name must be a non-empty str, got {name!r}")
        if metrics is not None and not isinstance(metrics, Metrics):
            raise TypeError(
                f"observe(metrics=) must be an rxpipe.Metrics (add_items, add_dropped, "
                f"add_errors, observe_durations, set_queue, set_demand), got {metrics!r}"
            )
        current = self._nodes[-1].name if self._nodes else self._source_name
        if name != current and name in self.stage_names:
            raise ValueError(
                f"a stage named {name!r} is already in this flow; names must be unique"
            )
        mark = Observed(metrics)
        if not self._nodes:
            return Flow(self._source, name, (), mark)
        last = dataclasses.replace(self._nodes[-1], name=name, observed=mark)
        nodes = (*self._nodes[:-1], last)
        return Flow(self._source, self._source_name, nodes, self._source_observed)

    @overload
    def map(
        self, f: Callable[[T_co], R], *, name: str | None = None, errors: Literal["result"]
    ) -> Flow[Result[R]]: ...
    @overload
    def map(
        self,
        f: Callable[[T_co], R],
        *,
        name: str | None = None,
        errors: Literal["raise", "skip"] | Callable[[BaseException, Any], None] = "raise",
    ) -> Flow[R]: ...
    def map(
        self, f: Callable[[T_co], R], *, name: str | None = None, errors: ErrorMode = "raise"
    ) -> Flow[Any]:
        """Apply ``f`` to each item.

        - Emits when: ``f`` returned for an item.
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes.
        - Cancels when: downstream cancels.

        Args:
            f: the function; it runs on the engine's thread and must not block for long.
            name: the stage's name (default ``"map"``, ``"map#2"``, ...).
            errors: what an exception from ``f`` does: ``"raise"`` (fail the run),
                ``"result"`` (emit :class:`rxpipe.Result` values), ``"skip"`` (drop the item
                and count it) or a callback ``(exc, item) -> None``.

        Raises:
            TypeError: ``f`` is not callable, or is an ``async def`` function (its
                coroutines would never be awaited: use :meth:`map_async`).
        """
        return self._add(Map(f), name, errors)

    @overload
    def filter(
        self,
        pred: Callable[[T_co], object],
        *,
        name: str | None = None,
        errors: Literal["result"],
    ) -> Flow[Result[T_co]]: ...
    @overload
    def filter(
        self,
        pred: Callable[[T_co], object],
        *,
        name: str | None = None,
        errors: Literal["raise", "skip"] | Callable[[BaseException, Any], None] = "raise",
    ) -> Flow[T_co]: ...
    def filter(
        self,
        pred: Callable[[T_co], object],
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
    ) -> Flow[Any]:
        """Keep the items for which ``pred`` is true; the others are counted as filtered.

        - Emits when: ``pred`` is true for an item.
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes.
        - Cancels when: downstream cancels.

        Raises:
            TypeError: ``pred`` is not callable.
        """
        return self._add(Filter(pred), name, errors)

    def flat_map(
        self,
        f: Callable[[T_co], Iterable[R]],
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
    ) -> Flow[R]:
        """Replace each item with the items of the iterable ``f`` returns, in order.

        The iterable is consumed lazily, one item per downstream request.

        - Emits when: the current iterable has a next item.
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes and the last iterable is exhausted.
        - Cancels when: downstream cancels.

        Raises:
            TypeError: ``f`` is not callable.
        """
        return self._add(FlatMap(f), name, errors)

    def map_async(
        self,
        f: Callable[[T_co], Awaitable[R]],
        *,
        concurrency: int = 1,
        ordered: bool = True,
        name: str | None = None,
        errors: ErrorMode = "raise",
        window: int | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Flow[R]:
        """Await ``f(item)`` for each item, with at most ``concurrency`` calls running at once.

        The flow then needs an event loop (sync terminals run one of their own). In ordered
        mode the outputs keep the input order; a finished result waiting for an earlier one
        does not hold a call slot, and at most ``window`` (default ``4 * concurrency``) items
        are running or waiting: a slow call stalls new ones once the window is full, so widen
        it to ride out long tails, at the cost of that many items held. Unordered mode emits
        each result as soon as it is ready and holds at most ``concurrency`` items.

        ``timeout=`` cancels a call that takes longer: it fails with :class:`TimeoutError`.
        ``retry=`` (an :class:`rxpipe.Retry`) calls again after a failure, backing off
        exponentially with jitter; a call slot stays taken while it backs off. An error left
        when the retries are spent goes to ``errors=``. The Report counts both per stage
        (``timeouts``, ``retries``).

        - Emits when: the next result (ordered) or any result (unordered) is ready.
        - Backpressures when: ``concurrency`` calls run, or the window is full, and
          downstream does not take the finished results.
        - Completes when: upstream completed and every call finished and was emitted.
        - Cancels when: downstream cancels (running calls are cancelled, counted as lost).

        Args:
            f: an ``async def`` function, or a lambda (a partial, a callable object)
                that returns an awaitable; a plain named function is refused (use
                :meth:`map`), and a lambda that returns a plain value fails on its call.
            concurrency: the most calls running at once, >= 1.
            ordered: keep the input order (``True``) or emit as results arrive.
            errors: as for :meth:`map`; ``"result"`` and ``"skip"`` keep the output order.
            window: ordered mode only: the most items running or waiting for their turn,
                >= ``concurrency``; ``None`` means ``4 * concurrency``.
            timeout: seconds each attempt may take (``None``: no limit).
            retry: how to retry a failed call (``None``: never).

        Raises:
            TypeError: ``f`` is not callable or is a plain (not async) named function,
                ``ordered`` is not a bool, ``window`` is not an int, ``timeout`` is not a
                number, or ``retry`` is not a :class:`rxpipe.Retry`.
            ValueError: ``concurrency`` < 1, ``window`` < ``concurrency``, ``window`` given
                with ``ordered=False``, or ``timeout`` is not a finite number > 0.
        """
        return self._add(MapAsync(f, concurrency, ordered, errors, window, timeout, retry), name)

    def parallel(
        self,
        n: int,
        stage: Stage[Any, R],
        *,
        ordered: bool = False,
        executor: Executor | None = None,
        batch: int = 1,
        name: str | None = None,
    ) -> Flow[R]:
        """Run ``n`` copies of ``stage`` (a Stage or a ``rxpipe.stage()`` fragment), fanned
        out and merged.

        Each copy has its own state and takes one item at a time while any is free. Without
        an executor the copies run on the engine: they overlap where they wait (a
        ``map_async`` inside them). With ``executor=`` (threads, processes, a Dask client's
        ``get_executor()``) each batch of ``batch`` items runs the stage afresh there, with
        ``n`` batches running and ``n`` more queued so no worker idles while results travel;
        what goes to another process must pickle.

        - Emits when: a copy produced an output (``ordered=False``), or the outputs of the
          next item in input order are ready (``ordered=True``).
        - Backpressures when: every copy is busy, or the merged outputs wait for downstream.
        - Completes when: upstream completed and every copy finished.
        - Cancels when: downstream cancels, or a copy fails (every copy stops).

        Args:
            n: the number of copies (and of batches in flight on an executor), >= 1.
            stage: what each copy runs.
            ordered: keep the input order of outputs.
            executor: a ``concurrent.futures.Executor`` to run the stage on.
            batch: items per executor task (amortizes per-task overhead, e.g. on Dask).

        Raises:
            TypeError: ``stage`` is not a Stage or fragment, ``executor`` not an Executor.
            ValueError: ``n`` < 1, ``batch`` < 1, or ``batch`` without ``executor``.
        """
        return self._add(Parallel(n, stage, ordered, executor, batch), name)

    def partition(
        self,
        key: Callable[[T_co], Hashable],
        n: int,
        stage: Stage[Any, R],
        *,
        name: str | None = None,
    ) -> Flow[R]:
        """Route each item by ``key(item)`` to one of ``n`` copies of ``stage``.

        Items with the same key go to the same copy, in order, so their order holds; items
        of different keys run on different copies. Memory is bounded by the copies, not by
        the number of keys: an item whose copy is busy waits, and the stage stops pulling.

        - Emits when: a copy produced an output.
        - Backpressures when: the copy of the next item is busy.
        - Completes when: upstream completed and every copy finished.
        - Cancels when: downstream cancels, or a copy fails.

        Raises:
            TypeError: ``key`` is not callable, ``stage`` not a Stage or fragment.
            ValueError: ``n`` < 1.
        """
        return self._add(Partition(key, n, stage), name)

    def take(self, n: int, *, name: str | None = None) -> Flow[T_co]:
        """The first ``n`` items, then cancel upstream and complete.

        - Emits when: an item arrives and fewer than ``n`` were emitted.
        - Backpressures when: downstream backpressures.
        - Completes when: ``n`` items were emitted (at once for ``take(0)``), or upstream
          completes.
        - Cancels when: ``n`` items were emitted, or downstream cancels.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0.
        """
        return self._add(Take(n), name)

    def skip(self, n: int, *, name: str | None = None) -> Flow[T_co]:
        """Drop the first ``n`` items (counted as filtered), then pass the rest.

        - Emits when: an item arrives after the first ``n``.
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes.
        - Cancels when: downstream cancels.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0.
        """
        return self._add(Skip(n), name)

    def take_while(
        self,
        pred: Callable[[T_co], object],
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
    ) -> Flow[T_co]:
        """Pass items while ``pred`` is true; at the first false one, complete.

        The first item that fails ``pred`` is not emitted (counted as filtered).

        - Emits when: ``pred`` is true for an item.
        - Backpressures when: downstream backpressures.
        - Completes when: ``pred`` is false for an item, or upstream completes.
        - Cancels when: ``pred`` is false for an item, or downstream cancels.

        Raises:
            TypeError: ``pred`` is not callable.
        """
        return self._add(TakeWhile(pred), name, errors)

    def scan(
        self,
        f: Callable[[R, T_co], R],
        initial: R,
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
        restart: bool = False,
    ) -> Flow[R]:
        """Emit ``initial``, then each running accumulation ``acc = f(acc, item)``.

        Like ``itertools.accumulate(items, f, initial=initial)``, Reactor's and Akka's scan.

        - Emits when: downstream first asks (``initial``), then for each item.
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes.
        - Cancels when: downstream cancels.

        Args:
            restart: on an error from ``f``, drop the item and start again with fresh state
                (Akka's restart supervision) instead of failing: the fresh scan emits
                ``initial`` again, then accumulates from it.

        Raises:
            TypeError: ``f`` is not callable.
        """
        return self._add(Scan(f, initial), name, errors, restart)

    def chunk(
        self, n: int, *, within: float | None = None, name: str | None = None
    ) -> Flow[list[T_co]]:
        """Group items into lists of ``n`` (the last list may be shorter).

        With ``within=seconds``, a list is also closed ``within`` seconds after its first item
        arrived, whichever comes first (Akka's ``groupedWithin``, Reactor's
        ``bufferTimeout``): a database writer batches "100 rows or 50 ms". No list is ever
        empty. A closed list waits for downstream's pull, and meanwhile nothing more is read.
        The timer makes the stage asynchronous (on the pull engine it runs on an event loop).

        - Emits when: ``n`` items were gathered, or ``within`` elapsed since the list's first
          item, or upstream completes with some gathered.
        - Backpressures when: downstream backpressures (with ``within``: once a list closed
          that downstream has not taken yet).
        - Completes when: upstream completes and the last list was emitted.
        - Cancels when: downstream cancels (a partial list is counted as lost).

        Raises:
            TypeError: ``n`` is not an int, or ``within`` is not a number.
            ValueError: ``n`` < 1, or ``within`` is not a finite number > 0.
        """
        return self._add(Chunk(n, within), name)

    def tap(
        self, f: Callable[[T_co], object], *, name: str | None = None, errors: ErrorMode = "raise"
    ) -> Flow[T_co]:
        """Call ``f`` on each item for its side effect (a log line, a metric), pass the item on.

        What ``f`` returns is ignored; with ``errors="skip"`` an item whose ``f`` raised is
        dropped and counted, with ``errors="result"`` it becomes a failed ``Result``.

        - Emits when: ``f`` returned for an item (the item itself).
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes.
        - Cancels when: downstream cancels.

        Raises:
            TypeError: ``f`` is not callable, or is an ``async def`` function.
        """
        return self._add(Tap(f), name, errors)

    def throttle(
        self, rate: float, *, per: float = 1.0, burst: int = 1, name: str | None = None
    ) -> Flow[T_co]:
        """Let at most ``rate`` items through per ``per`` seconds: a token bucket.

        The bucket holds ``burst`` tokens and starts full; it refills at ``rate / per`` tokens
        a second, and each item takes one. An item that finds the bucket empty waits for the
        next token, and upstream waits with it: nothing is dropped (Go's ``time.Tick`` rate
        limiting, Akka's ``throttle``). ``burst`` lets that many items pass at once after a
        quiet spell. The timer makes the stage asynchronous.

        - Emits when: an item arrived and a token is available (at once, or when it refills).
        - Backpressures when: the bucket is empty, or downstream backpressures.
        - Completes when: upstream completes and the item waiting for a token was emitted.
        - Cancels when: downstream cancels (an item waiting for a token is counted as lost).

        Args:
            rate: items per ``per`` seconds, a finite number > 0.
            per: the period of ``rate``, in seconds.
            burst: the bucket's size: how many items may pass back to back, >= 1.

        Raises:
            TypeError: ``rate`` or ``per`` is not a number, or ``burst`` is not an int.
            ValueError: ``rate`` or ``per`` is not finite and > 0, or ``burst`` < 1.
        """
        return self._add(Throttle(rate, per, burst), name)

    def idle_timeout(self, seconds: float, *, name: str | None = None) -> Flow[T_co]:
        """Fail the flow when no item passed this stage for ``seconds``: a stalled-pipeline alarm.

        The clock starts when the run starts and restarts with each item that passes,
        whatever kept items away (a silent source, a stuck stage upstream, or a downstream
        that stopped asking). The failure is :class:`~rxpipe.errors.IdleTimeoutError` (a
        ``TimeoutError``), raised from the terminal like any stage error. The timer makes the
        stage asynchronous; it costs one timer per idle period, not one per item.

        - Emits when: an item arrives (passed through unchanged).
        - Backpressures when: downstream backpressures.
        - Completes when: upstream completes.
        - Cancels when: downstream cancels; it fails (and cancels upstream) when idle for
          ``seconds``.

        Raises:
            TypeError: ``seconds`` is not a number.
            ValueError: ``seconds`` is not a finite number > 0.
        """
        return self._add(IdleTimeout(seconds), name)

    def buffer(
        self, n: int, *, overflow: Overflow = Overflow.BACKPRESSURE, name: str | None = None
    ) -> Flow[T_co]:
        """An explicit buffer of ``n`` items between the stages around it.

        On the push engine it is a channel of ``n`` (Go's ``make(chan T, n)``); on the pull
        engine an asynchronous boundary: upstream runs ahead by up to ``n`` items, refilled in
        batches once 75% were consumed (in its own task when the flow runs async).

        - Emits when: downstream asks and the buffer holds an item.
        - Backpressures when: the buffer is full (``Overflow.BACKPRESSURE``); the other
          policies never slow upstream down: they keep reading while downstream is busy and
          drop (counted as dropped) or fail.
        - Completes when: upstream completed and the buffer is empty.
        - Cancels when: downstream cancels (buffered items are counted as lost).

        Args:
            n: the capacity, >= 1.
            overflow: what a full buffer does with one more item, on every engine. On the
                pull engine downstream is busy elsewhere only while it awaits (an async
                stage or terminal after the buffer); a sync-only pull run takes turns with
                downstream on one thread, so it never overflows.

        Raises:
            TypeError: ``n`` is not an int, or ``overflow`` is not an :class:`Overflow`.
            ValueError: ``n`` < 1.
        """
        return self._add(Buffer(n, overflow), name)

    def via(
        self,
        stage: Stage[Any, R],
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
        restart: bool = False,
    ) -> Flow[R]:
        """Attach any :class:`rxpipe.stages.Stage`, such as one you wrote yourself.

        The stage's logic decides when it emits, backpressures, completes and cancels.

        A fragment (``rxpipe.stage()...``) is spliced in, each of its stages keeping its name
        (prefixed with ``name/`` when ``name`` is given). ``errors=`` then applies to every
        stage of the fragment that runs a user function (``map``, ``filter``, ``map_async``,
        ...) and left ``errors=`` at its default, as Akka's supervision attribute on a
        composite flow does; ``errors="result"`` needs exactly one such stage (the next one
        would be fed ``Result`` values). ``restart=True`` applies to its stateful stages.

        Raises:
            TypeError: ``stage`` is not a Stage, or ``errors=``/``restart=`` have a wrong type.
            ValueError: ``errors=`` or ``restart=`` cannot apply to any stage of the fragment,
                or ``errors="result"`` to a fragment with several user functions.
        """
        if not isinstance(stage, Stage):
            raise TypeError(f"via() needs a Stage, got {type(stage).__name__} {stage!r}")
        nodes = getattr(stage, "nodes", None)
        if isinstance(nodes, tuple):  # a Fragment: splice its stages, so each is reported
            flow: Flow[Any] = self
            for node in _supervised(nodes, errors, restart):
                label: str | None = node.name if name is None else f"{name}/{node.name}"
                if label in flow.stage_names:
                    label = None
                flow = flow._add(node.stage, label, node.errors, node.restart, node.observed)
            return flow
        return self._add(stage, name, errors, restart)

    # -- terminals -------------------------------------------------------------------------
    def _open(self, engine: EngineArg, progress: Progress = False) -> Run[Any]:
        view = _view(progress)
        resolved = resolve_engine(engine)
        if view is None:
            return resolved.open(self.plan)
        return watch(engine_for(resolved).open(self.plan), view)

    def _sync(self, what: str, engine: EngineArg, progress: Progress = False) -> Run[Any]:
        """Open a run for the sync terminal ``what``; inside a running event loop, refuse
        where it would block the loop (see ``Engine.refuses_running_loop``), naming the twin.
        A live view (``progress=``, or a ``LiveView.watch()`` block) shows the run.
        """
        view = _view(progress)
        resolved = resolve_engine(engine)
        if view is not None:
            resolved = engine_for(resolved)
        run = resolved.open(self.plan)
        if resolved.refuses_running_loop(self.plan):
            if what == "__iter__":
                ensure_no_running_loop("`for x in flow`", "`async for x in flow`")
            else:
                ensure_no_running_loop(f"`flow.{what}()`", f"`await flow.{what}_async()`")
        return watch(run, view)

    def __iter__(self) -> Iterator[T_co]:
        """Iterate the items (pull engine); leaving the loop early cancels the run.

        Inside a running event loop a flow with an async part refuses (``RuntimeError``):
        use ``async for x in flow`` there.
        """
        return iter(self._sync("__iter__", "pull"))

    def __aiter__(self) -> AsyncIterator[T_co]:
        """Iterate the items with ``async for`` (pull engine)."""
        return aiter(self._open("pull"))

    def to_list(self, *, engine: EngineArg = "pull") -> list[T_co]:
        """Run the flow and return every item, in order."""
        return self._sync("to_list", engine).collect()

    async def to_list_async(self, *, engine: EngineArg = "pull") -> list[T_co]:
        """Async twin of :meth:`to_list`."""
        return await self._open(engine).collect_async()

    def first(self, *, default: Any = _MISSING, engine: EngineArg = "pull") -> T_co:
        """The first item, then cancel the run.

        Raises:
            ValueError: the flow is empty and no ``default`` was given.
        """
        run = self._sync("first", engine)
        it = iter(run)
        try:
            for item in it:
                return item  # type: ignore[no-any-return]
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            run.close()
        if default is _MISSING:
            raise ValueError("first() of an empty flow (pass default= to get a value instead)")
        return default  # type: ignore[no-any-return]

    async def first_async(self, *, default: Any = _MISSING, engine: EngineArg = "pull") -> T_co:
        """Async twin of :meth:`first`."""
        run = self._open(engine)
        try:
            async for item in run:
                return item  # type: ignore[no-any-return]
        finally:
            await run.aclose()
        if default is _MISSING:
            raise ValueError("first() of an empty flow (pass default= to get a value instead)")
        return default  # type: ignore[no-any-return]

    def count(self, *, engine: EngineArg = "pull") -> int:
        """Run the flow and return how many items it produced."""
        n = 0

        def tally(_: object) -> None:
            nonlocal n
            n += 1

        self._sync("count", engine).consume(tally)
        return n

    async def count_async(self, *, engine: EngineArg = "pull") -> int:
        """Async twin of :meth:`count`."""
        n = 0
        async for _ in self._open(engine):
            n += 1
        return n

    def fold(self, f: Callable[[R, T_co], R], initial: R, *, engine: EngineArg = "pull") -> R:
        """Run the flow and reduce its items with ``f``, starting from ``initial``."""
        check_sync_callable(f, "fold(f, initial): f", "fold takes a sync function")
        acc = initial

        def step(item: Any) -> None:
            nonlocal acc
            acc = f(acc, item)

        self._sync("fold", engine).consume(step)
        return acc

    async def fold_async(
        self, f: Callable[[R, T_co], R], initial: R, *, engine: EngineArg = "pull"
    ) -> R:
        """Async twin of :meth:`fold`."""
        check_sync_callable(f, "fold(f, initial): f", "fold takes a sync function")
        acc = initial
        async with closing(aiter(self._open(engine))) as items:  # stopped at once if f raises
            async for item in items:
                acc = f(acc, item)
        return acc

    def foreach(self, f: Callable[[T_co], object], *, engine: EngineArg = "pull") -> Report:
        """Run the flow, calling ``f`` on each item; returns the run's Report.

        Raises:
            TypeError: ``f`` is not callable, or is an ``async def`` function (use
                :meth:`foreach_async`, which awaits it); also, during the run, if ``f``
                returns an awaitable (it would never be awaited).
        """
        check_sync_callable(f, "foreach(f): f", "use `await flow.foreach_async(f)`")
        run = self._sync("foreach", engine)
        run.consume(_never_awaitable(f))
        return run.report()

    async def foreach_async(
        self, f: Callable[[T_co], object], *, engine: EngineArg = "pull"
    ) -> Report:
        """Run the flow, calling ``f`` on each item and awaiting what it returns when that is
        awaitable (an ``async def`` sink: one item is stored at a time, the run waits for it).

        Returns the run's Report. A plain function works too (the async twin of
        :meth:`foreach`).

        Raises:
            TypeError: ``f`` is not callable.
        """
        check_callable(f, "foreach_async(f): f")
        run = self._open(engine)
        async with closing(aiter(run)) as items:  # stopped at once if f raises
            if is_async_callable(f):
                async for item in items:
                    await f(item)  # type: ignore[misc]
            else:
                async for item in items:
                    result = f(item)
                    if result is not None and inspect.isawaitable(result):
                        await result
        return run.report()

    def run(self, *, engine: EngineArg = "pull", progress: Progress = False) -> Report:
        """Run the flow to completion, discarding items; returns the run's Report.

        ``progress=True`` shows a live table while the run goes (items in and out, items per
        second and queue depth per stage; see :class:`~rxpipe.telemetry.LiveView`, which can
        be passed instead), drawn with ``rich`` (``pip install rxpipe[progress]``) from a
        thread that ends with the run; the final table stays printed. A watched pull run is
        not fused (the fused loop counts only at its end).

        Raises:
            ImportError: ``progress=True`` and ``rich`` is not installed.
            TypeError: ``progress`` is neither a bool nor a ``LiveView``.
        """
        run = self._sync("run", engine, progress)
        run.consume(_discard)
        return run.report()

    async def run_async(self, *, engine: EngineArg = "pull", progress: Progress = False) -> Report:
        """Async twin of :meth:`run` (``progress=`` as there)."""
        run = self._open(engine, progress)
        async for _ in run:
            pass
        return run.report()

    # -- running in the background, and iteration a user can stop ------------------------------
    def start(
        self,
        *,
        engine: EngineArg = "pull",
        on_item: Callable[[T_co], object] | None = None,
        progress: Progress = False,
    ) -> Pipeline[T_co]:
        """Run the flow in the background; returns its :class:`~rxpipe.Pipeline` handle.

        The run is consumed on an event loop of its own, in a thread of its own, which calls
        ``on_item`` with each delivered item (default: discard; an awaitable it returns is
        awaited). Stop it with ``drain()``, ``cancel()`` or ``shutdown(deadline)``, or wait
        for its end with ``join()`` (see the "Stopping a pipeline" guide).

        ``progress=``: a live view of the run, as for :meth:`run`; it lives until the
        pipeline ends (completed, drained, cancelled, shut down or failed).

        Raises:
            TypeError: ``on_item`` is not callable, or ``progress`` is neither a bool nor a
                ``LiveView``.
            ImportError: ``progress=True`` and ``rich`` is not installed.
        """
        view = _view(progress)
        return _pipeline.start(_engine(engine, view), self.plan, on_item, view)

    async def start_async(
        self,
        *,
        engine: EngineArg = "pull",
        on_item: Callable[[T_co], object] | None = None,
        progress: Progress = False,
    ) -> Pipeline[T_co]:
        """Async twin of :meth:`start`: the run is consumed by a task on the running loop.

        ``async with await flow.start_async(...) as pipeline:`` drains it when the block ends
        and cancels it when the block raises.
        """
        view = _view(progress)
        return await _pipeline.start_async(_engine(engine, view), self.plan, on_item, view)

    def iter(self, *, engine: EngineArg = "pull") -> Iteration[T_co]:
        """Iterate on any engine: ``with flow.iter(engine="push") as items: for x in items``.

        Leaving the block stops the run (every task and thread joined, what was in flight
        counted lost), and so does ``items.close()`` from another thread (the loop then
        simply ends); ``items.report()`` is the run's Report. Inside a running event loop a
        run that needs a loop of its own refuses: use :meth:`aiter` there.
        """
        view = watching()
        resolved = _engine(engine, view)
        run = resolved.open(self.plan)
        if resolved.refuses_running_loop(self.plan):
            ensure_no_running_loop("`flow.iter()`", "`async with flow.aiter() as items`")
        return Iteration(watch(run, view))

    def aiter(self, *, engine: EngineArg = "pull") -> AsyncIteration[T_co]:
        """Async twin of :meth:`iter`:
        ``async with flow.aiter(engine="push") as items: async for x in items``.

        ``await items.aclose()`` from another task stops the run; the ``async for`` then
        simply ends.
        """
        return AsyncIteration(self._open(engine))

    def to_publisher(self, *, engine: EngineArg = "pull") -> Publisher[T_co]:
        """A cold, spec-compliant Publisher: each ``subscribe`` runs the flow anew."""
        resolved = resolve_engine(engine)
        resolved.open(self.plan)  # bad engine settings fail here, when the publisher is made
        return FlowPublisher(self.plan, resolved)

    def subscribe(self, subscriber: Subscriber[T_co], *, engine: EngineArg = "pull") -> None:
        """Shorthand for ``flow.to_publisher(engine=engine).subscribe(subscriber)``."""
        self.to_publisher(engine=engine).subscribe(subscriber)

    def to_observable(
        self,
        *,
        engine: EngineArg = "pull",
        on_report: Callable[[Report], object] | None = None,
    ) -> reactivex.Observable[T_co]:
        """A cold RxPY (``reactivex``) observable: each subscription runs the flow anew.

        The run goes through :meth:`to_publisher`, requesting demand in bounded batches
        (:data:`rxpipe.interop.rx.BATCH` at a time, more once 3/4 were delivered), so RxPY
        operators downstream see a well-behaved push source. Disposing the subscription
        cancels the run (what was in flight is counted as ``lost``). The run starts on the
        subscription's scheduler (``subscribe(..., scheduler=)``, ``ops.subscribe_on``;
        the ``CurrentThreadScheduler`` by default). A synchronous flow on the pull engine
        is produced right there: on the ``CurrentThreadScheduler`` it delivers everything
        inside ``subscribe()``. Any other run (every push-engine run; a flow that waits:
        async stages, a ``Flow.queue`` or ``from_observable`` source) is served from the
        publisher's thread: ``subscribe()`` returns at once and the signals come from that
        thread, so wait for ``on_completed``/``on_error`` and use ``ops.observe_on`` to
        choose where the observer runs. An exception raised by the observer's ``on_next``
        is logged on the ``"rxpipe"`` logger and cancels the run.

        Args:
            engine: the engine each subscription's run uses.
            on_report: called with each subscription's :class:`~rxpipe.Report` when its run
                ended: before the observer's ``on_completed``/``on_error``; after a
                disposal, once the run stopped (for a run delivering inside ``subscribe()``,
                before it returns; otherwise from the thread ending the run).

        Raises:
            ImportError: ``reactivex`` is not installed (``pip install 'rxpipe[rx]'``).
        """
        if on_report is not None and not callable(on_report):
            raise TypeError(f"to_observable(on_report=) must be callable, got {on_report!r}")
        from rxpipe.interop.rx import to_observable

        resolved = resolve_engine(engine)
        resolved.open(self.plan)  # bad engine settings fail here, when the observable is made
        observable: reactivex.Observable[T_co] = to_observable(self.plan, resolved, on_report)
        return observable
