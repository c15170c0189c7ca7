"""What every engine offers the terminals: open a run of a plan, iterate it, get its Report."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import MappingProxyType
from typing import Any, Generic, TypeVar

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
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def iterate_on_private_loop(items: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code, on an event loop of its own.

    The loop lives and dies with the generator, in the thread that iterates it, so nothing
    outlives the run. Inside a running loop it refuses (see :func:`ensure_no_running_loop`).
    """
    ensure_no_running_loop("iterating a flow with an async part")
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                item = loop.run_until_complete(anext(items))
            except StopAsyncIteration:
                return
            yield item
    finally:
        try:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                loop.run_until_complete(aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
