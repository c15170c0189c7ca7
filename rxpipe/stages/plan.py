"""A plan (a flow as engines see it) and the context a run opens its source with.

Both belong to the blueprint layer: a source that runs other flows (``Flow.merge``,
``Flow.concat``) holds their plans, and asks the run that opens it for runs of them through
:class:`RunContext`, a protocol the engines' runs satisfy. So the inputs run on the engine
the user chose, with its settings, and no blueprint imports an engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, final

if TYPE_CHECKING:
    from rxpipe._core.stats import StageStats
    from rxpipe._core.telemetry import Observed
    from rxpipe.stages.errors import Node
    from rxpipe.stages.sources import Source

__all__ = ("InputRun", "Plan", "RunContext")


@final
@dataclass(frozen=True, slots=True)
class Plan:
    """A flow as engines see it: a named source and the nodes after it, in order."""

    source: Source[Any]
    source_name: str
    nodes: tuple[Node, ...]
    #: ``observe()`` right after the source marks the source.
    source_observed: Observed | None = None

    @property
    def observed(self) -> bool:
        """Whether a run of the plan is measured (some stage was marked with ``observe()``)."""
        return self.source_observed is not None or any(n.observed for n in self.nodes)

    def marks(self) -> tuple[Observed | None, ...]:
        """The ``observe()`` mark of each stage, the source first (None: not observed)."""
        return (self.source_observed, *(n.observed for n in self.nodes))

    @property
    def is_async(self) -> bool:
        """Whether the plan needs an event loop to run."""
        return self.source.is_async or any(n.stage.is_async for n in self.nodes)

    def names(self) -> Sequence[str]:
        """Stage names in pipeline order, the source first."""
        return (self.source_name, *(n.name for n in self.nodes))


class InputRun(Protocol):
    """A run of another plan, as a source reads it: iterate it once, sync or async.

    Closing the iterator (``close()``/``aclose()``, as ``for`` and ``async for`` do when they
    stop early) stops the run.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...


class RunContext(Protocol):
    """What a run offers the source it opens (``Source.open(ctx)``/``open_async(ctx)``).

    Each engine's run satisfies it; most sources ignore it.
    """

    @property
    def source_stats(self) -> StageStats:
        """This run's statistics of its source: a source that drops or loses items on its
        own (a bridge from a producer that cannot wait) counts them here, in its own run's
        Report, however many runs of the same flow are going on."""
        ...

    def open_input(self, plan: Plan) -> InputRun:
        """A run of ``plan`` on this run's engine, with its settings: an input of the source.

        Nothing happens until it is iterated; it is not listed in this run's Report.
        """
        ...
