"""The pull engine's fast lowering: a run of simple stages becomes one generated loop.

Each stage of a run of ``map``/``filter``/``flat_map``/``take``/``skip``/``take_while`` (with
the default error surface) contributes a few lines to one Python function, compiled once per
shape of run and cached. Per item, the loop does the user's calls and almost nothing else:
``try`` blocks are free in CPython 3.11+ until something raises, so every user call still gets
its stage's name attached to an exception, and the counters the ``Report`` needs are kept only
where they cannot be derived afterwards (rejections, flat_map inputs, output count).

The generic interpreter (``interpreter.py``) runs the same stages through their logic objects;
the test suite runs every operator both ways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Final

from rxpipe.stages._base import Stage, StageStats
from rxpipe.stages.errors import Node, annotate
from rxpipe.stages.simple import Filter, FlatMap, Map, Skip, Take, TakeWhile

__all__ = ("FUSIBLE", "FusedRun", "is_fusible")

#: Stage types with a fused lowering, and the short code used in generated names.
FUSIBLE: Final[dict[type[Stage[Any, Any]], str]] = {
    Map: "map",
    Filter: "filter",
    FlatMap: "flat_map",
    Take: "take",
    Skip: "skip",
    TakeWhile: "take_while",
}


def is_fusible(node: Node) -> bool:
    """Whether ``node`` can join a fused run (default error surface, known stage type)."""
    return type(node.stage) in FUSIBLE and not node.supervised


def _param(stage: Stage[Any, Any]) -> Any:
    if isinstance(stage, Map | FlatMap):
        return stage.fn
    if isinstance(stage, Filter | TakeWhile):
        return stage.pred
    if isinstance(stage, Take | Skip):
        return stage.n
    raise TypeError(f"no fused lowering for {type(stage).__name__}")


@lru_cache(maxsize=256)
def _compile(kinds: tuple[str, ...], mode: str) -> Callable[..., Any]:
    """Generate the loop for one shape of run.

    ``mode`` is ``"gen"`` (a generator yielding outputs), ``"agen"`` (an async generator over an
    async source) or ``"list"`` (append outputs to a sink; the fastest way to ``to_list``).
    The function reports its counters into ``counts`` when it ends, however it ends.
    """
    lines: list[str] = []
    emit = lines.append
    prefix = "async " if mode == "agen" else ""
    emit(f"{prefix}def fused(src, P, fail, counts, sink):")
    cnt: list[str] = []  # counter names, in the order `counts` receives them
    for i, kind in enumerate(kinds):
        emit(f"    c{i} = P[{i}]")
        if kind in ("filter", "skip", "take_while"):
            emit(f"    r{i} = 0")
            cnt.append(f"r{i}")
        elif kind == "flat_map":
            emit(f"    n{i} = 0")
            cnt.append(f"n{i}")
        else:
            cnt.append("0")
    emit("    out = 0")
    emit("    try:")
    for i, kind in enumerate(kinds):
        if kind == "take":  # take(0) completes before pulling anything
            emit(f"        if c{i} == 0: return")
    loop = "async for" if mode == "agen" else "for"
    emit(f"        {loop} x in src:")
    depth = 3  # indentation of the current line
    level = 0  # loop nesting: 0 is the loop over src, each flat_map adds one
    takes: list[tuple[int, int]] = []  # (stage index, loop level) of each take so far

    def ind() -> str:
        return "    " * depth

    def leave(at_level: int, pad: str) -> list[str]:
        # A take that reached zero ends the run once its item is fully processed: at the
        # exits of the loop level it sits at (not inside a later flat_map's inner loop).
        return [f"{pad}if c{j} == 0: return" for j, tl in takes if tl == at_level]

    def guarded(stmt: str, i: int) -> None:
        emit(f"{ind()}try:")
        emit(f"{ind()}    {stmt}")
        emit(f"{ind()}except Exception as e:")
        emit(f"{ind()}    fail(e, {i})")
        emit(f"{ind()}    raise")

    for i, kind in enumerate(kinds):
        if kind == "map":
            guarded(f"x = c{i}(x)", i)
        elif kind == "filter":
            guarded(f"k = c{i}(x)", i)
            emit(f"{ind()}if not k:")
            depth += 1
            emit(f"{ind()}r{i} += 1")
            lines.extend(leave(level, ind()))
            emit(f"{ind()}continue")
            depth -= 1
        elif kind == "take_while":
            guarded(f"k = c{i}(x)", i)
            emit(f"{ind()}if not k:")
            emit(f"{ind()}    r{i} += 1")
            emit(f"{ind()}    return")
        elif kind == "skip":
            emit(f"{ind()}if c{i}:")
            depth += 1
            emit(f"{ind()}c{i} -= 1")
            emit(f"{ind()}r{i} += 1")
            lines.extend(leave(level, ind()))
            emit(f"{ind()}continue")
            depth -= 1
        elif kind == "take":
            emit(f"{ind()}c{i} -= 1")
            takes.append((i, level))
        elif kind == "flat_map":
            emit(f"{ind()}n{i} += 1")
            guarded(f"it{i} = iter(c{i}(x))", i)
            emit(f"{ind()}while True:")
            depth += 1
            level += 1
            emit(f"{ind()}try:")
            emit(f"{ind()}    x = next(it{i})")
            emit(f"{ind()}except StopIteration:")
            emit(f"{ind()}    break")
            emit(f"{ind()}except Exception as e:")
            emit(f"{ind()}    fail(e, {i})")
            emit(f"{ind()}    raise")
        else:  # pragma: no cover - FUSIBLE and this table are kept in step by tests
            raise AssertionError(kind)
    if mode == "list":
        emit(f"{ind()}sink(x)")
    else:
        emit(f"{ind()}out += 1")
        emit(f"{ind()}yield x")
    for lv in range(level, -1, -1):
        lines.extend(leave(lv, "    " * (3 + lv)))
    emit("    finally:")
    emit(f"        counts[:] = [{', '.join(cnt)}, out]")
    if mode == "agen":
        emit("        close = getattr(src, 'aclose', None)")
        emit("        if close is not None: await close()")
    else:
        emit("        close = getattr(src, 'close', None)")
        emit("        if close is not None: close()")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<rxpipe fused {'+'.join(kinds)}>", "exec"), namespace)
    fn: Callable[..., Any] = namespace["fused"]
    return fn


class FusedRun:
    """One run of a fused chain: builds the loop's arguments and turns counters into stats."""

    __slots__ = ("_counts", "_kinds", "_params", "stats")

    def __init__(self, nodes: Sequence[Node], stats: Sequence[StageStats]) -> None:
        self._kinds = tuple(FUSIBLE[type(n.stage)] for n in nodes)
        self._params = tuple(_param(n.stage) for n in nodes)
        self.stats = stats
        self._counts: list[int] = []

    def _fail(self, error: BaseException, index: int) -> None:
        st = self.stats[index]
        st.errored += 1
        annotate(error, st.name)

    @property
    def width(self) -> int:
        """How many stages the run covers."""
        return len(self.stats)

    def iterate(self, src: Iterator[Any], upstream: StageStats | None = None) -> Iterator[Any]:
        """The chain as a generator over ``src`` (closing it closes ``src``)."""
        gen: Iterator[Any] = _compile(self._kinds, "gen")(
            src, self._params, self._fail, self._counts, None
        )
        return gen

    def aiterate(
        self, src: AsyncIterator[Any], upstream: StageStats | None = None
    ) -> AsyncIterator[Any]:
        """The chain as an async generator over ``src``."""
        agen: AsyncIterator[Any] = _compile(self._kinds, "agen")(
            src, self._params, self._fail, self._counts, None
        )
        return agen

    def collect(self, src: Iterator[Any], sink: list[Any]) -> None:
        """Run the chain to its end, appending outputs to ``sink`` (the ``to_list`` fast path)."""
        try:
            _compile(self._kinds, "list")(src, self._params, self._fail, self._counts, sink.append)
        finally:
            if self._counts:
                self._counts[-1] = len(sink)

    def settle(self) -> int:
        """Write the counters into the stages' stats; return how many items the run received.

        Counts for one-to-at-most-one stages are derived backwards from the output count:
        what a stage received is what it emitted plus what it filtered or failed on.
        """
        counts = self._counts
        if not counts:  # never started
            return 0
        downstream = counts[-1]
        for i in range(len(self._kinds) - 1, -1, -1):
            st = self.stats[i]
            st.emitted = downstream
            if self._kinds[i] == "flat_map":
                st.received = counts[i]
            else:
                st.filtered = counts[i]
                st.received = downstream + counts[i] + st.errored
            downstream = st.received
        return downstream
