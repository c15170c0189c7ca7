"""Every fast path an engine takes instead of the generic runner, declared in one place.

The generic path (the kernel's interpreter, driven by its step machine) runs every stage on
every engine. A lowering is a hand-written loop for a few stage types on one engine; it must
do exactly what the generic path does: the same outputs, the same errors (named after the
same stage), the same counters in the Report. Whoever changes an operator finds here every
lowering of it, and ``tests/engines/test_lowerings.py`` checks each lowering against the
generic path on random inputs.

Only stages with the default error surface are lowered (``errors=``/``restart=`` wrap the
logic in a supervisor, which the generic path runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, final

from rxpipe.stages._base import Stage
from rxpipe.stages.errors import Node
from rxpipe.stages.simple import Filter, FlatMap, Map, Skip, Take, TakeWhile
from rxpipe.stages.sources import Source

__all__ = (
    "CHANNEL_BATCHES",
    "FUSED_LOOP",
    "ITERATOR_SOURCE",
    "LOWERINGS",
    "Lowering",
    "generic_only",
)


@final
@dataclass(frozen=True, slots=True)
class Lowering:
    """One fast path: which engine takes it, for which stage types, and where it is written."""

    name: str
    #: ``"pull"``, ``"push"`` (both runtimes) or ``"push/asyncio"``.
    engine: str
    #: The stage types it runs (none for a source lowering).
    stages: tuple[type[Stage[Any, Any]], ...]
    #: Where its code is.
    code: str
    #: When the engine takes it, in words.
    when: str

    def applies(self, node: Node) -> bool:
        """Whether the engine runs ``node`` on this lowering."""
        return type(node.stage) in self.stages and not node.supervised and self not in _off

    def applies_to_source(self, source: Source[Any]) -> bool:
        """Whether the engine reads ``source`` through this (source) lowering."""
        return not (source.is_async or source.prefers_async) and self not in _off


FUSED_LOOP: Final = Lowering(
    "fused loop",
    "pull",
    (Map, Filter, FlatMap, Take, Skip, TakeWhile),
    "rxpipe/engines/pull/fused.py",
    "a run of these stages becomes one generated Python loop (a generator, an async "
    "generator, or a to_list loop); over a range/list/tuple source, map*[filter]map*[take] "
    "runs on the builtins map/filter/islice",
)
CHANNEL_BATCHES: Final = Lowering(
    "channel batches",
    "push",
    (Map, Filter),
    "rxpipe/engines/push/lowerings.py::simple_steps",
    "receive, call, send without the port protocol, as a step machine both runtimes' "
    "drivers run; every ready item that fits downstream moves in one wake-up",
)
ITERATOR_SOURCE: Final = Lowering(
    "iterator source batches",
    "push",
    (),
    "rxpipe/engines/push/lowerings.py::iterator_source_steps",
    "a source that is a plain iterator: on asyncio it sends as many items as its channel "
    "has room for; on threads each item as soon as it was read, without a step through the "
    "driver (a thread's source may block between items: a batch would hold them back)",
)

#: Every lowering, for the tests and the docs.
LOWERINGS: Final = (FUSED_LOOP, CHANNEL_BATCHES, ITERATOR_SOURCE)

_off: set[Lowering] = set()


@contextlib.contextmanager
def generic_only(*lowerings: Lowering) -> Iterator[None]:
    """Runs opened inside the block take the generic path instead of ``lowerings`` (all of
    them when none is named): the reference a lowering is checked against. Not thread-safe:
    for tests and benchmarks.
    """
    chosen = set(lowerings or LOWERINGS) - _off
    _off.update(chosen)
    try:
        yield
    finally:
        _off.difference_update(chosen)
