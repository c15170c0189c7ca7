"""Running pipelines: the :class:`Pipeline` handle of ``flow.start()``, and the iteration
context managers of ``flow.iter()``/``flow.aiter()``.

A pipeline is one run of a flow, consumed by one task that hands each item to ``on_item``:
on an event loop of its own in a thread of its own (``flow.start()``), or as a task on the
caller's loop (``await flow.start_async()``). Whatever the engine, stopping it is one of three
operations, written once here over what every engine's run already offers:

- **drain**: the source stops producing (:mod:`rxpipe.stages.draining`), and the run ends the
  ordinary way: every item in flight finishes, nothing is lost;
- **cancel**: the consuming task is cancelled; its run stops as a run left early does
  (channels closed, tasks cancelled, threads woken and joined, ``map_async`` calls cancelled),
  and what was in flight is counted ``lost``;
- **shutdown(deadline)**: a drain, and a cancel of what is left at the deadline.

Every call is idempotent and safe from any thread. The sync calls wait on a
``threading.Event``; their ``_async`` twins wait on the caller's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, final

from rxpipe.engines._live import WatchedRun, watch
from rxpipe.engines.base import Engine, Plan, Run
from rxpipe.errors import PipelineCancelledError
from rxpipe.stages.draining import DrainGate, gated
from rxpipe.telemetry.live import LiveView
from rxpipe.telemetry.report import Report

__all__ = ("AsyncIteration", "Iteration", "Pipeline", "PipelineState")

T = TypeVar("T")

#: What :attr:`Pipeline.state` says.
PipelineState = Literal["running", "completed", "failed", "cancelled"]

#: Pipelines running in threads of their own: cancelled when the interpreter exits.
_IN_THREADS: Final[set[_Core]] = set()
_lock: Final = threading.Lock()


def _discard(_: object) -> None:
    """The default ``on_item``."""


@final
class _Core:
    """A pipeline's state and its consuming task. The :class:`Pipeline` handle holds it,
    never the other way round, so a handle nobody holds any more is collected (and cancels)."""

    __slots__ = (
        "_iterating",
        "_lock",
        "_waiters",
        "cancel_requested",
        "done",
        "drain_requested",
        "engine",
        "error",
        "loop",
        "loop_thread",
        "on_item",
        "report",
        "run",
        "source",
        "state",
        "task",
    )

    def __init__(
        self,
        engine: Engine,
        plan: Plan,
        on_item: Callable[[Any], object],
        view: LiveView | None = None,
    ) -> None:
        source = gated(plan.source, DrainGate())
        self.source = source
        self.engine = engine.name
        # a live view lives until the pipeline ends: _end tells it how
        self.run: Run[Any] = watch(
            engine.open(Plan(source, plan.source_name, plan.nodes)), view, owned=True
        )
        self.on_item = on_item
        self._lock = threading.Lock()
        self._waiters: list[Callable[[], None]] = []
        self._iterating = False
        self.done = threading.Event()
        self.cancel_requested = False
        self.drain_requested = False
        self.state: PipelineState = "running"
        self.error: BaseException | None = None
        self.report: Report | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.task: asyncio.Task[None] | None = None

    # -- the consuming task ----------------------------------------------------------------------
    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        with self._lock:
            self.loop, self.task, self.loop_thread = loop, task, threading.get_ident()
        run, on_item = self.run, self.on_item
        state: PipelineState = "completed"
        error: BaseException | None = None
        try:
            if not self.cancel_requested:
                items = aiter(run)
                self._iterating = True
                try:
                    async for item in items:
                        result = on_item(item)
                        if result is not None and inspect.isawaitable(result):
                            await result
                        del item
                        if self.cancelling():  # a run that never waits notices here
                            break
                finally:
                    self._iterating = False  # from here on, a cancel must not interrupt
                    aclose = getattr(items, "aclose", None)
                    if aclose is not None:
                        await aclose()
            await run.aclose()
            if self.cancel_requested:
                state = "cancelled"
        except asyncio.CancelledError:
            if not self.cancel_requested or task is None:
                self._end("cancelled", None)
                raise  # not ours: the caller's loop is stopping the task
            task.uncancel()
            await run.aclose()
            state = "cancelled"
        except BaseException as exc:  # KeyboardInterrupt in a stage too: the pipeline ends
            state, error = "failed", exc
        self._end(state, error)

    def cancelling(self) -> bool:
        """Whether a cancel was asked for (read anew each time: another thread sets it)."""
        return self.cancel_requested

    def _end(self, state: PipelineState, error: BaseException | None) -> None:
        try:
            report = self.run.report()
        except BaseException as exc:  # the run could not even count
            report, state, error = None, "failed", error or exc
        if isinstance(self.run, WatchedRun):  # before anyone waiting hears of the end
            self.run.end(state)
        with self._lock:
            self.state, self.error, self.report = state, error, report
            waiters, self._waiters = self._waiters, []
            self.done.set()
        with _lock:
            _IN_THREADS.discard(self)
        for wake in waiters:
            wake()

    def _cancel_on_loop(self) -> None:
        task = self.task
        if self._iterating and task is not None and not task.done():
            task.cancel()

    # -- requests (any thread) --------------------------------------------------------------------
    def request_drain(self) -> None:
        with self._lock:
            if self.drain_requested or self.done.is_set():
                return
            self.drain_requested = True
        self.source.stop_producing()

    def request_cancel(self) -> None:
        with self._lock:
            if self.cancel_requested or self.done.is_set():
                return
            self.cancel_requested = True
            loop = self.loop
        if loop is not None:
            self.run.hurry()  # a run reading a sync source inline gives the loop a turn now
            try:
                loop.call_soon_threadsafe(self._cancel_on_loop)
            except RuntimeError:  # the loop closed: the pipeline has ended
                pass

    # -- waiting ----------------------------------------------------------------------------------
    def check_waitable(self, what: str) -> None:
        """Refuse, before asking anything, a sync call that would wait for itself."""
        if not self.done.is_set() and threading.get_ident() == self.loop_thread:
            raise RuntimeError(
                f"pipeline.{what}() called from the pipeline's own thread or event loop would "
                f"wait for itself: use `await pipeline.{what}_async()` on its loop, or call it "
                "from another thread (to stop from on_item, raise an exception)"
            )

    def wait(self, timeout: float | None) -> bool:
        return self.done.wait(timeout)

    def check_awaitable(self, what: str) -> None:
        """Refuse, before asking anything, an async call that would wait for itself."""
        if not self.done.is_set() and asyncio.current_task() is self.task:
            raise RuntimeError(
                f"pipeline.{what}_async() called from the pipeline's own task (on_item) would "
                "wait for itself (to stop from on_item, raise an exception)"
            )

    async def wait_async(self, timeout: float | None) -> bool:  # noqa: ASYNC109 (the API's)
        if self.done.is_set():
            return True
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_set_done, ready)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

        with self._lock:
            if self.done.is_set():
                return True
            self._waiters.append(wake)
        try:
            await asyncio.wait((ready,), timeout=timeout)
        finally:
            with self._lock:
                if wake in self._waiters:
                    self._waiters.remove(wake)
        return self.done.is_set()

    def outcome(self, *, raise_cancelled: bool) -> Report:
        """The Report; raises the pipeline's error (and, for ``join``, its cancellation)."""
        assert self.done.is_set()
        if self.state == "failed":
            assert self.error is not None
            raise self.error
        report = self.report
        assert report is not None
        if raise_cancelled and self.state == "cancelled":
            raise PipelineCancelledError(
                f"the pipeline was cancelled ({report.lost} item(s) in flight lost)", report
            )
        return report


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check_seconds(value: float | None, what: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{what} must be a number of seconds >= 0, got {value!r}")


def _check_on_item(on_item: Callable[[Any], object] | None) -> Callable[[Any], object]:
    if on_item is None:
        return _discard
    if not callable(on_item):
        raise TypeError(f"start(on_item=) must be callable, got {on_item!r}")
    return on_item


def _in_thread(core: _Core) -> None:
    try:
        asyncio.run(core.main())
    except BaseException as exc:  # main ends the core itself; this only guards the loop
        if not core.done.is_set():
            core._end("failed", exc)


def start(
    engine: Engine,
    plan: Plan,
    on_item: Callable[[Any], object] | None,
    view: LiveView | None = None,
) -> Pipeline[Any]:
    """``flow.start()``: a pipeline consumed on its own thread's event loop."""
    core = _Core(engine, plan, _check_on_item(on_item), view)
    with _lock:
        _IN_THREADS.add(core)
    thread = threading.Thread(
        target=_in_thread, args=(core,), name=f"rxpipe-pipeline-{plan.source_name}", daemon=True
    )
    thread.start()
    return Pipeline(core, thread)


async def start_async(
    engine: Engine,
    plan: Plan,
    on_item: Callable[[Any], object] | None,
    view: LiveView | None = None,
) -> Pipeline[Any]:
    """``await flow.start_async()``: a pipeline consumed by a task on the running loop."""
    core = _Core(engine, plan, _check_on_item(on_item), view)
    loop = asyncio.get_running_loop()
    core.loop, core.loop_thread = loop, threading.get_ident()
    core.task = loop.create_task(core.main(), name=f"rxpipe-pipeline-{plan.source_name}")
    await asyncio.sleep(0)  # it starts now: a drain or cancel right away finds it running
    return Pipeline(core, None)


@final
class Pipeline(Generic[T]):
    """A flow running in the background; created by ``flow.start()`` and
    ``await flow.start_async()`` only.

    Stop it with one of the three modes, and read its :class:`~rxpipe.Report`:

    - :meth:`drain`: graceful: the source stops producing, every item in flight finishes, the
      sink completes; loses nothing. A ``Flow.queue`` source is closed (what it accepted is
      still delivered); any other source ends before its next read.
    - :meth:`cancel`: abrupt: everything stops at once; items in flight are counted ``lost``.
    - :meth:`shutdown`: a drain, and a cancel of what is left at the deadline. A stage never
      has its callback interrupted: it finishes the item it holds, and at the deadline its
      result, if it cannot be delivered, is counted lost; ``map_async`` calls still running
      are cancelled and counted lost.
    - :meth:`join`: wait for natural completion (a finite flow, a closed queue).

    Every call is idempotent and safe from any thread (the ``_async`` twins from any event
    loop). A pipeline that is garbage-collected while running is cancelled, with a
    ``ResourceWarning``, and so is one still running when the interpreter exits. ``with``
    (``async with`` for the async twins) drains on leaving the block, and cancels when the
    block raises.

    Where it runs: ``flow.start()`` consumes the run on an event loop of its own, in a thread
    of its own (``on_item`` is called there); ``flow.start_async()`` as a task on the caller's
    loop. ``on_item`` may return an awaitable; it is awaited before the next item.
    """

    __slots__ = ("__weakref__", "_core", "_thread")

    def __init__(self, core: _Core, thread: threading.Thread | None) -> None:
        self._core = core
        self._thread = thread

    def __repr__(self) -> str:
        core = self._core
        return f"<Pipeline {core.state}, engine={core.engine!r}>"

    @property
    def state(self) -> PipelineState:
        """``"running"``, ``"completed"``, ``"failed"`` or ``"cancelled"``."""
        return self._core.state

    @property
    def running(self) -> bool:
        """Whether the pipeline has not ended yet."""
        return not self._core.done.is_set()

    # -- sync ------------------------------------------------------------------------------------
    def drain(self, timeout: float | None = None) -> Report:
        """Stop gracefully and wait: the source stops producing, every item in flight
        finishes; returns the Report.

        Raises:
            TimeoutError: ``timeout`` seconds passed first; the pipeline keeps draining.
            Exception: the pipeline failed (its original exception).
        """
        _check_seconds(timeout, "drain(timeout)", optional=True)
        core = self._core
        core.check_waitable("drain")
        core.request_drain()
        if not core.wait(timeout):
            raise TimeoutError(f"drain(timeout={timeout}): the pipeline is still draining")
        self._joined()
        return core.outcome(raise_cancelled=False)

    def cancel(self) -> Report:
        """Stop at once and wait until everything stopped; items in flight are counted
        ``lost``. Returns the Report (also for a pipeline that had already ended, however
        it ended: :meth:`join` raises its error)."""
        core = self._core
        core.check_waitable("cancel")
        core.request_cancel()
        core.wait(None)
        self._joined()
        assert core.report is not None or core.error is not None
        if core.report is None:
            assert core.error is not None
            raise core.error
        return core.report

    def shutdown(self, deadline: float) -> Report:
        """Drain, and cancel what is left ``deadline`` seconds from now; returns the Report.

        Raises:
            Exception: the pipeline failed (its original exception).
        """
        _check_seconds(deadline, "shutdown(deadline)", optional=False)
        core = self._core
        core.check_waitable("shutdown")
        core.request_drain()
        if not core.wait(deadline):
            core.request_cancel()
            core.wait(None)
        self._joined()
        return core.outcome(raise_cancelled=False)

    def join(self, timeout: float | None = None) -> Report:
        """Wait for the pipeline to end by itself; returns the Report.

        Raises:
            TimeoutError: ``timeout`` seconds passed first; the pipeline keeps running.
            PipelineCancelledError: it was cancelled (``.report`` is its Report).
            Exception: it failed (its original exception).
        """
        _check_seconds(timeout, "join(timeout)", optional=True)
        core = self._core
        core.check_waitable("join")
        if not core.wait(timeout):
            raise TimeoutError(f"join(timeout={timeout}): the pipeline is still running")
        self._joined()
        return core.outcome(raise_cancelled=True)

    def _joined(self) -> None:
        """The pipeline ended: its thread ends right after (it only closes its loop)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Pipeline[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.drain()
        else:
            self.cancel()

    # -- async -----------------------------------------------------------------------------------
    async def drain_async(self, timeout: float | None = None) -> Report:  # noqa: ASYNC109
        """Async twin of :meth:`drain`."""
        _check_seconds(timeout, "drain_async(timeout)", optional=True)
        core = self._core
        core.check_awaitable("drain")
        core.request_drain()
        if not await core.wait_async(timeout):
            raise TimeoutError(f"drain(timeout={timeout}): the pipeline is still draining")
        await self._joined_async()
        return core.outcome(raise_cancelled=False)

    async def cancel_async(self) -> Report:
        """Async twin of :meth:`cancel`."""
        core = self._core
        core.check_awaitable("cancel")
        core.request_cancel()
        await core.wait_async(None)
        await self._joined_async()
        if core.report is None:
            assert core.error is not None
            raise core.error
        return core.report

    async def shutdown_async(self, deadline: float) -> Report:
        """Async twin of :meth:`shutdown`."""
        _check_seconds(deadline, "shutdown_async(deadline)", optional=False)
        core = self._core
        core.check_awaitable("shutdown")
        core.request_drain()
        if not await core.wait_async(deadline):
            core.request_cancel()
            await core.wait_async(None)
        await self._joined_async()
        return core.outcome(raise_cancelled=False)

    async def join_async(self, timeout: float | None = None) -> Report:  # noqa: ASYNC109
        """Async twin of :meth:`join`."""
        _check_seconds(timeout, "join_async(timeout)", optional=True)
        core = self._core
        core.check_awaitable("join")
        if not await core.wait_async(timeout):
            raise TimeoutError(f"join(timeout={timeout}): the pipeline is still running")
        await self._joined_async()
        return core.outcome(raise_cancelled=True)

    async def _joined_async(self) -> None:
        task = self._core.task
        if self._thread is None and task is not None and task is not asyncio.current_task():
            await asyncio.wait((task,))  # it ended: this only lets the task return
        elif self._thread is not None:
            thread = self._thread
            while thread.is_alive():  # noqa: ASYNC110 (closing its loop: a moment)
                await asyncio.sleep(0.001)

    async def __aenter__(self) -> Pipeline[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.drain_async()
        else:
            await self.cancel_async()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or core.done.is_set():
            return
        core.request_cancel()  # first: the warning may be turned into an error
        warnings.warn(
            f"a running rxpipe Pipeline was garbage-collected: cancelled (engine={core.engine}); "
            "end it with drain(), cancel(), shutdown() or join()",
            ResourceWarning,
            stacklevel=1,
            source=self,
        )


@atexit.register
def _cancel_at_exit() -> None:
    """Pipelines still running in their threads at exit are cancelled (and joined briefly),
    rather than frozen mid-item when the interpreter stops its daemon threads."""
    with _lock:
        running = list(_IN_THREADS)
    unwarned = [core for core in running if not core.cancel_requested]  # not warned already
    for core in running:
        core.request_cancel()
    if unwarned:
        warnings.warn(
            f"{len(unwarned)} rxpipe Pipeline(s) still running at interpreter exit: cancelled",
            ResourceWarning,
            stacklevel=1,
        )
    for core in running:
        core.done.wait(5.0)


# -- iteration that a user can stop from anywhere ------------------------------------------------
@final
class Iteration(Generic[T]):
    """``with flow.iter(engine=...) as items: for x in items: ...``; then ``items.report()``.

    Created by :meth:`rxpipe.Flow.iter` only. Leaving the block (or the loop, or calling
    :meth:`close`, from any thread: the consumer's loop then simply ends) stops the run: every
    task and thread is joined and what was in flight is counted ``lost``.
    """

    __slots__ = ("_run",)

    def __init__(self, run: Run[T]) -> None:
        self._run = run

    def __iter__(self) -> Iterator[T]:
        return iter(self._run)

    def __enter__(self) -> Iteration[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the run and wait until it stopped (idempotent, any thread)."""
        self._run.close()

    def report(self) -> Report:
        """The run's Report (complete once the run ended)."""
        return self._run.report()


@final
class AsyncIteration(Generic[T]):
    """``async with flow.aiter(engine=...) as items: async for x in items: ...``; then
    ``items.report()``.

    Created by :meth:`rxpipe.Flow.aiter` only. Leaving the block (or calling :meth:`aclose`
    from another task of the loop: the consumer's ``async for`` then simply ends) stops the
    run: every task and thread is joined and what was in flight is counted ``lost``.
    """

    __slots__ = ("_run",)

    def __init__(self, run: Run[T]) -> None:
        self._run = run

    def __aiter__(self) -> AsyncIterator[T]:
        return aiter(self._run)

    async def __aenter__(self) -> AsyncIteration[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run and wait until it stopped (idempotent)."""
        await self._run.aclose()

    def report(self) -> Report:
        """The run's Report (complete once the run ended)."""
        return self._run.report()
