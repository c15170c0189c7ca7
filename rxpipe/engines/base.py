"""What every engine offers the terminals: open a run of a plan, iterate it, get its Report."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import MappingProxyType
from typing import Any, Generic, TypeVar, final

from rxpipe._core.loops import ASYNC_TWIN_HINT, ensure_no_running_loop
from rxpipe._core.work import settle_tasks
from rxpipe.stages.plan import Plan, RunContext
from rxpipe.telemetry.report import Report

__all__ = (
    "ASYNC_TWIN_HINT",
    "Engine",
    "Plan",
    "Run",
    "RunContext",
    "StopRequest",
    "closing",
    "ensure_no_running_loop",
    "settle_tasks",
)

T = TypeVar("T")


class Run(ABC, Generic[T]):
    """One execution of a plan. Iterate it (sync or async, as the engine allows), then read
    :meth:`report`. Closing it early cancels the run; what was in flight is counted as lost.
    """

    _given_back = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        report = cls.__dict__.get("report")
        # every engine's report() applies give_back(): written once, here
        if report is not None and not getattr(report, "__isabstractmethod__", False):
            cls.report = _counting_given_back(report)  # type: ignore[method-assign,assignment]

    def give_back(self, n: int) -> None:
        """``n`` items this run delivered were not taken after all (a publisher fetched them
        for a subscriber that went away): :meth:`report` counts them lost at the last stage,
        not delivered. Call it before the run is closed: a Report read earlier stays as it was.
        """
        if n > 0:
            self._given_back += n

    # -- stopping a run that is being iterated elsewhere (written once, for every engine) ----
    _stop: StopRequest | None = None

    def _stop_request(self) -> StopRequest:
        stop = self._stop
        if stop is None:
            stop = self._stop = StopRequest()
        return stop

    def hurry(self) -> None:
        """The task consuming this run is about to be cancelled from another thread: yield to
        the loop at the next item, so the cancellation lands there (thread-safe)."""
        self._stop_request().hurry = True

    def _guarded(self, inner: Iterator[T]) -> Iterator[T]:
        """The engine's sync iterator as the consumer sees it: another thread's :meth:`close`
        stops it (see :meth:`_close_elsewhere`), and leaving the loop closes the run at once
        (the run keeps no reference to this generator, so dropping it finalizes it)."""
        stop = self._stop_request()
        stop.consumer = threading.get_ident()
        try:
            while not stop.requested:
                try:
                    item = next(inner)
                except StopIteration:
                    return
                if stop.is_requested():  # asked while this step ran: the item is not delivered
                    self.give_back(1)
                    return
                yield item
                del item
        finally:
            # Nobody iterates any more: the close below must not wait for this consumer's
            # next step (closed from another thread, or finalised by a collection on another
            # thread, this generator would wait for itself).
            stop.consumer = None
            try:
                close = getattr(inner, "close", None)
                if close is not None:
                    close()
                self.close()
            finally:
                stop.ended.set()

    async def _aguarded(self, inner: AsyncIterator[T]) -> AsyncIterator[T]:
        """The engine's async iterator as the consumer sees it: ``aclose()`` from another
        task ends the consumer's ``async for`` quietly, after the run stopped."""
        stop = self._stop_request()
        stop.consumer_task = task = asyncio.current_task()
        try:
            while not stop.requested:
                stop.stepping = True
                try:
                    item = await anext(inner)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    # the stop of another task's aclose(), and nobody else's: end quietly
                    if stop.is_requested() and task is not None and task.uncancel() == 0:
                        return
                    raise
                finally:
                    stop.stepping = False
                yield item
                del item
        finally:
            # Nobody iterates any more: a close need not wait for this consumer's next step.
            # Left by a ``break``, this generator is finalised in a task of its own, maybe
            # while the consumer's task closes the run (``async with`` does): that close
            # stops the run, and this one leaves it alone.
            stop.consumer_task = None
            closer = stop.closer
            try:
                if closer is None or closer.done() or closer is asyncio.current_task():
                    aclose = getattr(inner, "aclose", None)
                    if aclose is not None and not getattr(inner, "ag_running", False):
                        await aclose()
                    await self.aclose()
            finally:
                stop.ended.set()

    def _close_elsewhere(self) -> bool:
        """Called by ``close()``: when another thread is iterating this run right now, ask it
        to stop, wait until the run ended, and return True (the caller then has nothing left
        to do). The consumer's loop ends at its next step: one blocked inside a step is woken
        where the engine can wake it (a private event loop's wait is cancelled); a sync stage
        or source call in progress finishes first, and so does the consumer's loop body."""
        stop = self._stop
        if stop is None or stop.ended.is_set():
            return False
        if stop.consumer is None or stop.consumer == threading.get_ident():
            return False
        stop.request()
        stop.ended.wait()
        return True

    async def _aclose_elsewhere(self) -> bool:
        """Called by ``aclose()``: when another task of this loop is iterating this run, stop
        it (its ``async for`` simply ends), wait until the run ended, and return True."""
        stop = self._stop
        if stop is None:
            return False
        current = asyncio.current_task()
        closer = stop.closer
        if closer is not None and closer is not current and not closer.done():
            await asyncio.wait({closer})  # another task's close is under way: its end is ours
            return True
        task = stop.consumer_task
        if stop.ended.is_set() or task is None or task is current or task.done():
            stop.closer = current  # this caller closes the run
            return False
        stop.requested = True  # in its loop body, its next step sees this and ends
        if stop.stepping:  # awaiting inside the run: interrupt the wait
            task.cancel()
        # the consumer ends its loop at its next step; ``ended`` is a thread event (a sync
        # close may wait on it too), so it is polled here, briefly
        while not stop.ended.is_set() and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        return True

    @abstractmethod
    def __iter__(self) -> Iterator[T]:
        """Items in order, pulled as the caller iterates."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[T]:
        """Items in order, for ``async for``."""

    def collect(self) -> list[T]:
        """All items as a list (engines may override with a faster path)."""
        out: list[T] = []
        self.consume(out.append)
        return out

    async def collect_async(self) -> list[T]:
        """All items as a list, from async code (engines may override with a faster path)."""
        return [item async for item in self]

    def consume(self, fn: Callable[[T], object]) -> None:
        """Run to the end from sync code, calling ``fn`` on each item in order.

        Engines override it when they can run the whole consumption in one go (the push
        engine runs it inside a single event-loop call instead of one per item).
        """
        try:
            for item in self:
                fn(item)
        finally:
            self.close()  # at once, also when fn raised: nothing may wait for a GC pass

    @abstractmethod
    def close(self) -> None:
        """Stop the run now (idempotent)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop the run now, from async code (idempotent)."""

    @abstractmethod
    def report(self) -> Report:
        """The run's Report; complete once the run ended."""


def _counting_given_back(report: Callable[[Run[Any]], Report]) -> Callable[[Run[Any]], Report]:
    """Wrap an engine's ``Run.report`` so that it applies :meth:`Run.give_back`."""

    @functools.wraps(report)
    def wrapper(self: Run[Any]) -> Report:
        result = report(self)
        n = self._given_back
        if not n or not result.stages:
            return result
        stages = dict(result.stages)
        last = next(reversed(stages))
        stages[last] = dataclasses.replace(stages[last], lost=stages[last].lost + n)
        return dataclasses.replace(
            result, delivered=result.delivered - n, stages=MappingProxyType(stages)
        )

    return wrapper


class Engine(ABC):
    """Runs plans. Engines know the port protocol, never the operators."""

    #: Shown in ``Report.engine``.
    name: str = "engine"

    @abstractmethod
    def open(self, plan: Plan) -> Run[Any]:
        """Prepare a run; nothing happens until it is iterated."""

    def runs_inline(self, plan: Plan) -> bool:
        """Whether a run of ``plan`` can be iterated synchronously by whichever thread asks.

        True only for runs that need no event loop of their own and never wait for another
        thread or task: the asking thread may itself be running an event loop (a flow that
        reads this one through ``from_publisher``), which such a run must neither nest a loop
        in nor block. ``to_publisher`` produces these runs inside ``request``; it serves every
        other run from a pump on an event loop in a thread of its own. The default, ``False``,
        is always safe.
        """
        return False

    def refuses_running_loop(self, plan: Plan) -> bool:
        """Whether a sync terminal (``to_list()``, ``for x in flow``, ...) of ``plan`` must
        refuse to run inside a running event loop, pointing at its ``_async`` twin.

        By default only a plan with an async part does: it needs an event loop of its own.
        A synchronous plan runs in the caller's thread like any sync function call.
        """
        return plan.is_async


@final
class StopRequest:
    """A request to stop a run that another thread (or task) is iterating: thread-safe.

    The consumer checks :attr:`requested` before each step; a private event loop that the
    step runs registers its pending task here, so :meth:`request` can cancel the wait.
    """

    __slots__ = (
        "_loop",
        "_task",
        "_wake",
        "closer",
        "consumer",
        "consumer_task",
        "ended",
        "hurry",
        "requested",
        "stepping",
    )

    def __init__(self) -> None:
        self.requested = False
        #: A stop (this one, or a cancellation of the task running the run) is on its way to
        #: the run's event loop: a run that reads a sync iterator inline yields at once, not
        #: after its next few hundred reads, so the stop lands now.
        self.hurry = False
        self.stepping = False
        self.consumer: int | None = None
        self.consumer_task: asyncio.Task[Any] | None = None
        #: The task whose ``aclose()`` is stopping the run (a second closer waits for it).
        self.closer: asyncio.Task[Any] | None = None
        self.ended = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[Any] | None = None
        self._wake: Callable[[], object] | None = None

    def on_request(self, wake: Callable[[], object]) -> None:
        """Call ``wake`` (from the requesting thread) when a stop is requested: it must wake a
        consumer blocked in a step, thread-safely."""
        self._wake = wake

    def is_requested(self) -> bool:
        """Whether a stop was asked for (read anew each time: another thread sets it)."""
        return self.requested

    def request(self) -> None:
        """Ask for the stop (idempotent, any thread); cancel a private loop's wait."""
        self.requested = self.hurry = True
        if self._wake is not None:
            self._wake()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # that loop is closed: nothing waits any more
                pass

    def waiting(self, loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any] | None) -> None:
        """A private loop runs ``task`` now (``None``: nothing); cancelled if a stop comes."""
        self._loop, self._task = loop, task
        if task is not None and self.requested:
            task.cancel()


@contextlib.asynccontextmanager
async def closing(items: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``async with closing(aiter(run)) as items``: the iterator is closed when the block ends.

    A loop body that raises leaves its async generator suspended; Python closes it only when
    it is garbage-collected, in a task that can outlive the run's loop (PEP 533).
    """
    try:
        yield items
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


def run_on_private_loop(main: Coroutine[Any, Any, T], what: str, twin: str = ASYNC_TWIN_HINT) -> T:
    """Run ``main`` to its end from sync code, on an event loop of its own (closed after).

    One loop call for a whole consumption, where :func:`iterate_on_private_loop` needs one
    per item; inside a running loop it refuses (see :func:`ensure_no_running_loop`).
    """
    try:
        ensure_no_running_loop(what, twin)
    except RuntimeError:
        main.close()  # never awaited: say so quietly rather than with a warning
        raise
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running on a private loop, and let it end, before the loop closes.

    Only a ``BaseException`` that interrupted the loop itself (a Ctrl-C between two steps)
    leaves tasks behind; closing the loop under them would print "Task was destroyed but it
    is pending" and "Event loop is closed" (``asyncio.run`` does the same).
    """
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def iterate_on_private_loop(
    items: AsyncIterator[T], stop: StopRequest | None = None
) -> Iterator[T]:
    """Iterate an async iterator from sync code, on an event loop of its own.

    The loop lives and dies with the generator, in the thread that iterates it, so nothing
    outlives the run. Inside a running loop it refuses (see :func:`ensure_no_running_loop`).
    ``stop``: another thread may end the iteration through it, even while it waits.
    """
    ensure_no_running_loop("iterating a flow with an async part")
    loop = asyncio.new_event_loop()
    try:
        while True:
            if stop is None:
                try:
                    item = loop.run_until_complete(anext(items))
                except StopAsyncIteration:
                    return
            else:
                if stop.requested:
                    return
                step = loop.create_task(_anext(items))
                stop.waiting(loop, step)
                try:
                    item = loop.run_until_complete(step)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if stop.is_requested():
                        return
                    raise
                finally:
                    stop.waiting(loop, None)
            yield item
    finally:
        try:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                loop.run_until_complete(aclose())
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _anext(items: AsyncIterator[T]) -> T:
    return await anext(items)
