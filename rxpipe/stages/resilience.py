"""Timeouts and retries: :class:`Retry`, :func:`resilient` (``map_async``'s calls) and
:class:`RestartSource` (``Flow.restart``: a failing flow run again with backoff).

Both wrap the user's call inside the piece of work the stage schedules, so they run on the
engine's one scheduler like the call itself, and a call slot stays taken while an attempt
backs off (the concurrency limit covers the retries too). A timeout is per attempt: the call is
cancelled (``asyncio.timeout``) and the attempt fails with :class:`TimeoutError`, which the
stage's ``errors=`` surfaces like any error once no retry is left. Each timeout and each
retry is counted in the stage's Report (``timeouts``, ``retries``).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from rxpipe._core.interpreter import Interpreter
from rxpipe._core.stats import Done, StageStats
from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.errors import Node, interpreter
from rxpipe.stages.sources import Source

if TYPE_CHECKING:
    from rxpipe.stages.plan import Plan, RunContext

__all__ = ("RestartSource", "RestartStage", "Retry", "resilient")


def _check_number(value: object, what: str, *, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not (low <= value <= high and math.isfinite(value)):
        bounds = f"between {low:g} and {high:g}" if high != math.inf else f">= {low:g}"
        raise ValueError(f"{what} must be a finite number {bounds}, got {value!r}")


def _is_exception_type(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseException)


@dataclass(frozen=True, slots=True)
class Retry:
    """Call again when a call fails: up to ``attempts`` calls in all, backing off exponentially.

    The wait before retry ``k`` (1, 2, ...) is ``backoff * 2 ** (k - 1)`` seconds, capped at
    ``max_backoff``, then spread by ``jitter``: drawn uniformly from ``wait * (1 - jitter)`` to
    ``wait * (1 + jitter)``, so that calls that failed together do not retry together
    (Reactor's ``Retry.backoff``, Akka's ``RestartSettings``). Only errors that are instances
    of ``on`` are retried; the others, and the last attempt's error, go to ``errors=``.

    Args:
        attempts: the most calls per item, the first one included, >= 1.
        backoff: the first wait, in seconds, >= 0.
        jitter: the spread of each wait, from 0 (none) to 1.
        on: the exception type(s) worth a retry (default: every ``Exception``, a timeout
            included).
        max_backoff: the longest wait, in seconds (``None``: no cap).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``attempts`` < 1, or a duration or ``jitter`` out of range.
    """

    attempts: int = 3
    backoff: float = 0.1
    jitter: float = 0.2
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception
    max_backoff: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry(attempts=) must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"Retry(attempts=) must be >= 1, got {self.attempts}")
        _check_number(self.backoff, "Retry(backoff=)", low=0)
        _check_number(self.jitter, "Retry(jitter=)", low=0, high=1)
        if self.max_backoff is not None:
            _check_number(self.max_backoff, "Retry(max_backoff=)", low=0)
        kinds = self.on if isinstance(self.on, tuple) else (self.on,)
        if not kinds or not all(
            isinstance(k, type) and issubclass(k, BaseException) for k in kinds
        ):
            raise TypeError(f"Retry(on=) must be exception types, got {self.on!r}")

    def wait(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1 for the second call), jitter applied."""
        wait = self.backoff * 2.0 ** (retry - 1)
        if self.max_backoff is not None:
            wait = min(wait, self.max_backoff)
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            wait *= 1.0 + spread
        return wait


def resilient(
    call: Callable[[Any], Awaitable[Any]],
    timeout: float | None,
    retry: Retry | None,
    stats: StageStats,
) -> Callable[[Any], Awaitable[Any]]:
    """``call`` with a timeout per attempt and retries, counting both into ``stats``."""
    if timeout is None and retry is None:
        return call

    async def attempt(item: Any) -> Any:
        if timeout is None:
            return await call(item)
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await call(item)
        except TimeoutError:
            if not scope.expired():
                raise  # the call raised it itself
            stats.timeouts += 1
            raise TimeoutError(f"the call took longer than timeout={timeout:g} s") from None

    if retry is None:
        return attempt
    attempts, on = retry.attempts, retry.on

    async def with_retries(item: Any) -> Any:
        k = 1
        while True:
            try:
                return await attempt(item)
            except on:
                if k >= attempts:
                    raise
            stats.retries += 1
            await asyncio.sleep(retry.wait(k))
            k += 1

    return with_retries


@dataclass(frozen=True, slots=True)
class RestartSource(Source[Any]):
    """Blueprint of :meth:`rxpipe.Flow.restart`: a flow run again after it fails, backing off.

    Each run of the inner flow is an input run of this source (as ``concat`` runs its inputs);
    when one fails with an error that ``retry.on`` accepts, and fewer than ``retry.attempts``
    runs were made, the source waits ``retry.wait(k)`` and runs the flow again from its
    start (Akka's ``RestartSource.onFailuresWithBackoff``). Items emitted before a failure
    stay emitted. Each restart is counted as a retry of this source in the Report.
    """

    plan: Plan
    retry: Retry
    operator: ClassVar[str] = "restart"
    is_async: ClassVar[bool] = True  # the backoff is a timer on the run's event loop

    def open_async(self, ctx: RunContext) -> AsyncIterator[Any]:
        return _restarting(ctx, self.plan, self.retry)


async def _restarting(ctx: RunContext, plan: Plan, retry: Retry) -> AsyncIterator[Any]:
    stats = ctx.source_stats
    run = 1
    while True:
        items: AsyncIterator[Any] = aiter(ctx.open_input(plan))
        error: BaseException | None = None
        try:
            while True:
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
                except retry.on as exc:
                    if run >= retry.attempts:
                        raise
                    error = exc
                    break
                yield item
                del item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
        del error  # this run failed: back off, then run the flow again
        stats.retries += 1
        await asyncio.sleep(retry.wait(run))
        run += 1


# --- a fragment restarted with backoff ---------------------------------------------------------

_NONE: Final[Any] = object()
_RESTART: Final = "restart"


@dataclass(frozen=True, slots=True)
class RestartStage(Stage[Any, Any]):
    """Blueprint of ``Flow.restart(fragment, retry=...)``: a fragment run as one stage and
    started afresh, after a growing delay, when it fails (Akka's
    ``RestartFlow.onFailuresWithBackoff``).

    The items the failed run held (the one that failed among them) are lost to it: the
    failure is counted as ``errored`` and the restart as a retry of this stage. Upstream is
    not cancelled and downstream sees no failure while restarts are left; a failure that
    ``retry.on`` does not accept, or the last run's, fails the stage.
    """

    stages: tuple[Node, ...]
    retry: Retry
    operator: ClassVar[str] = "restart"
    is_async: ClassVar[bool] = True  # the backoff is a timer

    def create_logic(self, ports: Ports[Any, Any]) -> StageLogic[Any, Any]:
        return _RestartLogic(ports, self.stages, self.retry)


class _RestartLogic(StageLogic[Any, Any]):
    """Runs the fragment on an interpreter of its own, fed through this stage's ports; the
    work (and timers) its stages schedule go through this stage's ports, tagged with the run
    they belong to, so the end of a dead run's work is ignored."""

    __slots__ = ("inner", "nodes", "pending", "retry", "run", "upstream_done", "waiting")

    def __init__(self, ports: Ports[Any, Any], nodes: tuple[Node, ...], retry: Retry) -> None:
        super().__init__(ports)
        self.nodes = nodes
        self.retry = retry
        self.run = 1
        self.inner = self._fresh()
        self.pending: Any = _NONE  # an item that arrived while backing off
        self.upstream_done = False
        self.waiting = False  # backing off

    def _fresh(self) -> Interpreter:
        return interpreter(self.nodes, [StageStats(n.name) for n in self.nodes])

    def pre_start(self) -> None:
        self.inner.start()
        self._step()

    def on_pull(self) -> None:
        self._step()

    def on_push(self) -> None:
        item = self.ports.grab()
        if self.waiting or not self.inner.input_wanted:
            self.pending = item
        else:
            self.inner.feed(item)
        self._step()

    def on_upstream_finish(self) -> None:
        self.upstream_done = True
        self._step()

    def on_downstream_finish(self) -> None:
        self.inner.cancel()
        self.ports.complete()

    def on_timer(self, key: Hashable) -> None:
        self.waiting = False
        self.run += 1
        self.inner = self._fresh()
        self.inner.start()
        self._step()

    def post_stop(self) -> None:
        self.inner.stop()

    def held_items(self) -> int:
        return self.inner.held() + (self.pending is not _NONE)

    def _forward(self) -> None:
        inner = self.inner
        while inner.scheduled:
            index, work, done = inner.scheduled.popleft()

            def back(
                result: Any,
                error: BaseException | None,
                run: Interpreter = inner,
                i: int = index,
                d: Done = done,
            ) -> None:
                if run is self.inner:  # else it belongs to a run that failed
                    run.work_done(i, d, result, error)
                    self._step()

            self.ports.schedule(work, back)

    def _step(self) -> None:
        ports = self.ports
        while not self.waiting:
            inner = self.inner
            if self.pending is not _NONE and inner.input_wanted:
                item, self.pending = self.pending, _NONE
                inner.feed(item)
            if self.upstream_done and self.pending is _NONE and not inner.input_closed:
                inner.feed_end()
            if ports.can_push() and not inner.output and not inner.finished:
                inner.demand()
            self._forward()
            if inner.output:
                if ports.can_push():
                    ports.push(inner.output.popleft())
                    continue
            elif inner.finished:
                self._ended(inner)
                return
            if (
                inner.input_wanted
                and self.pending is _NONE
                and not ports.has_pulled()
                and not ports.is_upstream_closed()
            ):
                ports.pull()
            return

    def _ended(self, inner: Interpreter) -> None:
        error, ports, retry = inner.error, self.ports, self.retry
        if error is None:
            ports.complete()
            return
        if not isinstance(error, retry.on) or self.run >= retry.attempts:
            ports.fail(error)
            return
        ports.stats.errored += 1  # absorbed: the run failed, the stage goes on
        ports.stats.retries += 1
        inner.stop()
        self.waiting = True
        ports.start_timer(_RESTART, retry.wait(self.run))
