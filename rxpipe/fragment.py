"""``Fragment``: a flow without a source, a reusable chain of stages.

``rxpipe.stage()`` starts one; it has the operator methods of :class:`~rxpipe.Flow`, each
returning a new fragment. A fragment is a :class:`~rxpipe.stages.Stage` wherever one is
accepted: ``flow.via(fragment)`` splices its stages into the flow (so each keeps its name in
the Report), and ``fragment.to_processor()`` runs it as a Reactive Streams processor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, final

from rxpipe._core.stats import StageStats
from rxpipe._core.telemetry import Metrics
from rxpipe.engines.pull.processor import FlowProcessor
from rxpipe.flow import Flow
from rxpipe.spec import Processor
from rxpipe.stages._base import Ports, Stage, StageLogic
from rxpipe.stages.buffering import Overflow
from rxpipe.stages.errors import ErrorMode, Node, interpreter
from rxpipe.stages.resilience import Retry
from rxpipe.stages.sources import Source

if TYPE_CHECKING:
    from rxpipe.stages.plan import RunContext

__all__ = ("Fragment", "stage")

InT = TypeVar("InT")
T = TypeVar("T")
R = TypeVar("R")

#: A fragment's stand-in source: its name is empty, so it can never clash with a stage name.
_INPUT: Final = ""


class _NoSource(Source[Any]):
    """Where a fragment's input will come from; it cannot be run on its own."""

    operator: ClassVar[str] = "fragment input"

    def open_async(self, ctx: RunContext) -> Any:
        raise TypeError("a Fragment has no source: attach it with flow.via(fragment)")

    def open(self, ctx: RunContext) -> Any:
        raise TypeError("a Fragment has no source: attach it with flow.via(fragment)")


_NO_SOURCE: Final = _NoSource()


def stage() -> Fragment[Any, Any]:
    """An empty fragment: ``rxpipe.stage().map(f).filter(p)`` is a reusable stage."""
    return Fragment(())


@final
class Fragment(Stage[InT, T], Generic[InT, T]):
    """A sourceless chain of stages, usable wherever a Stage is (``via``, processors)."""

    __slots__ = ("nodes",)
    operator: ClassVar[str] = "fragment"

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)

    def __repr__(self) -> str:
        return f"<Fragment {'.'.join(n.name for n in self.nodes) or '(empty)'}>"

    def _flow(self) -> Flow[Any]:
        return Flow(_NO_SOURCE, _INPUT, self.nodes)

    @staticmethod
    def _of(flow: Flow[Any]) -> Fragment[Any, Any]:
        return Fragment(flow.plan.nodes)

    # -- the operators: each is documented on the Flow method of the same name ----------------
    def map(
        self, f: Callable[[T], R], *, name: str | None = None, errors: ErrorMode = "raise"
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.map`."""
        return self._of(self._flow().map(f, name=name, errors=errors))

    def filter(
        self, pred: Callable[[T], object], *, name: str | None = None, errors: ErrorMode = "raise"
    ) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.filter`."""
        return self._of(self._flow().filter(pred, name=name, errors=errors))

    def flat_map(
        self,
        f: Callable[[T], Iterable[R]],
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.flat_map`."""
        return self._of(self._flow().flat_map(f, name=name, errors=errors))

    def take(self, n: int, *, name: str | None = None) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.take`."""
        return self._of(self._flow().take(n, name=name))

    def skip(self, n: int, *, name: str | None = None) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.skip`."""
        return self._of(self._flow().skip(n, name=name))

    def take_while(
        self, pred: Callable[[T], object], *, name: str | None = None, errors: ErrorMode = "raise"
    ) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.take_while`."""
        return self._of(self._flow().take_while(pred, name=name, errors=errors))

    def scan(
        self,
        f: Callable[[R, T], R],
        initial: R,
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
        restart: bool = False,
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.scan`."""
        flow = self._flow().scan(f, initial, name=name, errors=errors, restart=restart)
        return self._of(flow)

    def chunk(
        self, n: int, *, within: float | None = None, name: str | None = None
    ) -> Fragment[InT, list[T]]:
        """See :meth:`rxpipe.Flow.chunk`."""
        return self._of(self._flow().chunk(n, within=within, name=name))

    def tap(
        self, f: Callable[[T], object], *, name: str | None = None, errors: ErrorMode = "raise"
    ) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.tap`."""
        return self._of(self._flow().tap(f, name=name, errors=errors))

    def throttle(
        self, rate: float, *, per: float = 1.0, burst: int = 1, name: str | None = None
    ) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.throttle`."""
        return self._of(self._flow().throttle(rate, per=per, burst=burst, name=name))

    def restart(self, *, retry: Retry) -> Stage[InT, T]:
        """This fragment as one stage, restarted with backoff when it fails: see
        :meth:`rxpipe.Flow.restart` (``Flow.restart(fragment, retry=retry)``)."""
        return Flow.restart(self, retry=retry)

    def idle_timeout(self, seconds: float, *, name: str | None = None) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.idle_timeout`."""
        return self._of(self._flow().idle_timeout(seconds, name=name))

    def buffer(
        self, n: int, *, overflow: Overflow = Overflow.BACKPRESSURE, name: str | None = None
    ) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.buffer`."""
        return self._of(self._flow().buffer(n, overflow=overflow, name=name))

    def map_async(
        self,
        f: Callable[[T], Awaitable[R]],
        *,
        concurrency: int = 1,
        ordered: bool = True,
        name: str | None = None,
        errors: ErrorMode = "raise",
        window: int | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.map_async`."""
        flow = self._flow().map_async(
            f,
            concurrency=concurrency,
            ordered=ordered,
            name=name,
            errors=errors,
            window=window,
            timeout=timeout,
            retry=retry,
        )
        return self._of(flow)

    def parallel(
        self,
        n: int,
        stage: Stage[Any, R],
        *,
        ordered: bool = False,
        executor: Executor | None = None,
        batch: int = 1,
        name: str | None = None,
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.parallel`."""
        flow = self._flow().parallel(
            n, stage, ordered=ordered, executor=executor, batch=batch, name=name
        )
        return self._of(flow)

    def partition(
        self,
        key: Callable[[T], Hashable],
        n: int,
        stage: Stage[Any, R],
        *,
        name: str | None = None,
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.partition`."""
        return self._of(self._flow().partition(key, n, stage, name=name))

    def via(
        self,
        stage: Stage[Any, R],
        *,
        name: str | None = None,
        errors: ErrorMode = "raise",
        restart: bool = False,
    ) -> Fragment[InT, R]:
        """See :meth:`rxpipe.Flow.via`."""
        return self._of(self._flow().via(stage, name=name, errors=errors, restart=restart))

    def observe(self, name: str, metrics: Metrics | None = None) -> Fragment[InT, T]:
        """See :meth:`rxpipe.Flow.observe` (it names the fragment's last stage).

        Raises:
            ValueError: the fragment has no stage yet (its input is not a stage).
        """
        if not self.nodes:
            raise ValueError(
                "observe() names the stage before it: an empty fragment has none (add a stage)"
            )
        return self._of(self._flow().observe(name, metrics))

    # -- running it ----------------------------------------------------------------------------
    def to_processor(self, *, prefetch: int = 16) -> Processor[InT, T]:
        """A unicast Reactive Streams processor running these stages (pull engine).

        It requests ``prefetch`` items upstream at a time, when its stages need input.
        """
        from rxpipe.stages.simple import check_count

        check_count(prefetch, "to_processor(prefetch=)", minimum=1)
        if not self.nodes:
            raise ValueError("an empty fragment cannot be a processor: add a stage first")
        awaiting = [n.name for n in self.nodes if n.stage.is_async]
        if awaiting:
            raise TypeError(
                f"to_processor() runs its stages on the signalling threads, without an event "
                f"loop; {awaiting} need one (map_async, executors): run the fragment in a flow "
                "with flow.via(fragment) instead"
            )
        return FlowProcessor(self.nodes, prefetch=prefetch)

    def create_logic(self, ports: Ports[InT, T]) -> StageLogic[InT, T]:
        if not self.nodes:
            raise ValueError("an empty fragment has no logic: add a stage first")
        return _FragmentLogic(ports, self.nodes)


class _FragmentLogic(StageLogic[Any, Any]):
    """A fragment run as one stage: its own interpreter, fed through this stage's ports."""

    __slots__ = ("inner",)

    def __init__(self, ports: Ports[Any, Any], nodes: tuple[Node, ...]) -> None:
        super().__init__(ports)
        self.inner = interpreter(nodes, [StageStats(n.name) for n in nodes])

    def pre_start(self) -> None:
        self.inner.start()

    def on_pull(self) -> None:
        self._step()

    def on_push(self) -> None:
        self.inner.feed(self.ports.grab())
        self._step()

    def on_upstream_finish(self) -> None:
        self.inner.feed_end()
        self._step()

    def on_upstream_failure(self, error: BaseException) -> None:
        self.inner.feed_error(error)
        self._step()

    def on_downstream_finish(self) -> None:
        self.inner.cancel()
        self.ports.complete()

    def post_stop(self) -> None:
        self.inner.stop()

    def held_items(self) -> int:
        # what its stages hold now (its output included), and what they already lost
        return self.inner.held() + sum(s.lost for s in self.inner.stats)

    def _step(self) -> None:
        ports, inner = self.ports, self.inner
        if not ports.can_push():
            return
        if not inner.output and not inner.finished:
            inner.demand()
        if inner.output:
            ports.push(inner.output.popleft())
        elif inner.finished:
            if inner.error is not None:
                ports.fail(inner.error)
            else:
                ports.complete()
        elif inner.input_wanted and not ports.has_pulled():
            ports.pull()
