"""How a :class:`~rxpipe.telemetry.LiveView` watches a run, on every engine.

The view needs counters that move while the run goes, and the stages' input queues. Every
engine keeps the first in its runs' ``StageStats``, except the pull engine's fused loop, which
keeps its counts in local variables until the run ends: a watched pull run is therefore not
fused (it runs on the generic interpreter, as an observed run does). Queues are the push
engine's channels (each is the input of the stage after it) and the pull engine's buffers.

:class:`WatchedRun` wraps a run so that the view hears when it ends, however it ends (every
terminal reaches ``collect``, ``consume``, the end of an iteration, ``close`` or ``aclose``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, final

from rxpipe.engines.base import Engine, Run
from rxpipe.engines.pull.boundary import Boundary
from rxpipe.engines.pull.engine import PullEngine, PullRun
from rxpipe.engines.push.engine import PushRun
from rxpipe.telemetry.live import Counts, CountsReader, LiveView, QueueReader, stats_reader

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe.telemetry.report import Report

__all__ = ("WatchedRun", "engine_for", "watch")

T = TypeVar("T")
R = TypeVar("R")


def engine_for(engine: Engine) -> Engine:
    """The engine to run a watched plan on: a fused pull engine's unfused copy (see above)."""
    if isinstance(engine, PullEngine) and engine.fuse:
        unfused = copy.copy(engine)
        unfused.fuse = False
        return unfused
    return engine


def _no_queues() -> dict[int, tuple[int, int]]:
    return {}


def counters(run: Run[Any]) -> tuple[list[str], CountsReader, QueueReader] | None:
    """A run's stage names, how to read its counts and its input queues while it goes
    (None: an engine this module does not know)."""
    if isinstance(run, PushRun):
        stats = run.stats

        def counts() -> list[Counts]:
            # the asyncio runtime's lowered map/filter add their counts when they end; the
            # channels count every item as it moves: stage i sends into channel i
            chans = [ch.statistics() for ch in list(run.channels)]
            out: list[Counts] = []
            for i, st in enumerate(stats):
                received = max(st.received, chans[i - 1].received) if 0 < i <= len(chans) else 0
                emitted = max(st.emitted, chans[i].sent) if i < len(chans) else st.emitted
                out.append((max(received, st.received), emitted, st.errored, st.lost))
            return out

        def channels() -> dict[int, tuple[int, int]]:
            out: dict[int, tuple[int, int]] = {}
            for i, ch in enumerate(list(run.channels)):
                out[i + 1] = ch.statistics().depth()
            return out

        return [st.name for st in stats], counts, channels
    if isinstance(run, PullRun):
        # PullRun keeps these private; read only, from the view's thread. An unfused run
        # counts every item as it moves.
        pstats: Sequence[StageStats] = run._stats
        buffers: list[tuple[int, Boundary]] = []
        position = 1
        for seg in run._segments:
            position += seg.width
            if isinstance(seg, Boundary):
                buffers.append((position, seg))

        def held() -> dict[int, tuple[int, int]]:
            return {i: (len(b.held), b.n) for i, b in buffers}

        return [st.name for st in pstats], stats_reader(pstats), held if buffers else _no_queues
    return None


def watch(run: Run[T], view: LiveView | None, *, owned: bool = False) -> Run[T]:
    """``run``, shown by ``view`` from now until it ends (``run`` itself when no view).

    ``owned``: the caller tells the view how the run ended (``WatchedRun.end``); otherwise
    the run's end does (completed, failed, cancelled, or stopped early).
    """
    if view is None:
        return run
    found = counters(run)
    if found is None:  # an engine of someone else's: nothing to read while it goes
        return run
    names, counts, queues = found
    engine = getattr(run, "_engine", None)
    name = getattr(engine, "name", type(run).__name__)
    return WatchedRun(run, view, view.attach(names, counts, queues, name), owned=owned)


@final
class WatchedRun(Run[T]):
    """A run the view watches: everything is the inner run's; its end finishes the view."""

    __slots__ = ("_inner", "_owned", "_token", "_view")

    def __init__(self, inner: Run[T], view: LiveView, token: object, *, owned: bool) -> None:
        self._inner = inner
        self._view = view
        self._token = token
        #: Whoever owns the run (a Pipeline) says how it ended, by calling :meth:`end`.
        self._owned = owned

    def end(self, state: str) -> None:
        """Tell the view the run ended (idempotent): its Report, and how it ended."""
        try:
            report: Report | None = self._inner.report()
        except Exception:
            report = None
        self._view.finish(self._token, report, state)

    def _ended(self, error: BaseException | None) -> None:
        if self._owned:
            return
        if error is None:
            self.end("completed")
        elif isinstance(error, GeneratorExit):
            self.end("stopped")
        elif isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
            self.end("cancelled")
        else:
            self.end("failed")

    def _ending(self, fn: Callable[[], R]) -> R:
        try:
            result = fn()
        except BaseException as exc:
            self._ended(exc)
            raise
        self._ended(None)
        return result

    def __iter__(self) -> Iterator[T]:
        error: BaseException | None = None
        try:
            yield from self._inner
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._ended(error)

    async def __aiter__(self) -> AsyncIterator[T]:
        error: BaseException | None = None
        try:
            async for item in self._inner:
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._ended(error)

    def collect(self) -> list[T]:
        return self._ending(self._inner.collect)

    async def collect_async(self) -> list[T]:
        try:
            result = await self._inner.collect_async()
        except BaseException as exc:
            self._ended(exc)
            raise
        self._ended(None)
        return result

    def consume(self, fn: Callable[[T], object]) -> None:
        self._ending(lambda: self._inner.consume(fn))

    def hurry(self) -> None:
        self._inner.hurry()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._ended(GeneratorExit())

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._ended(GeneratorExit())

    def give_back(self, n: int) -> None:
        self._inner.give_back(n)

    def report(self) -> Report:
        return self._inner.report()
