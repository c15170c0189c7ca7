"""The pull engine's fast lowering: a run of simple stages becomes one generated loop.

Each stage of a run of ``map``/``filter``/``flat_map``/``take``/``skip``/``take_while`` (with
the default error surface) contributes a few lines to one Python function, compiled once per
shape of run and cached. Per item, the loop does the user's calls and almost nothing else:
``try`` blocks are free in CPython 3.11+ until something raises, so every user call still gets
its stage's name attached to an exception, and the counters the ``Report`` needs are kept only
where they cannot be derived afterwards (rejections, flat_map inputs, output count).

The generic interpreter (``_core/interpreter.py``) runs the same stages through their logic objects;
the test suite runs every operator both ways.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import lru_cache
from types import CodeType
from typing import Any, Final

from rxpipe._core.stats import StageStats
from rxpipe.engines.lowerings import FUSED_LOOP
from rxpipe.stages._base import Stage
from rxpipe.stages.errors import Node, annotate
from rxpipe.stages.simple import Filter, FlatMap, Map, Skip, Take, TakeWhile

__all__ = ("FUSIBLE", "FusedRun", "is_fusible")

#: The code of each stage type of :data:`~rxpipe.engines.lowerings.FUSED_LOOP` in the generator.
FUSIBLE: Final[dict[type[Stage[Any, Any]], str]] = {
    Map: "map",
    Filter: "filter",
    FlatMap: "flat_map",
    Take: "take",
    Skip: "skip",
    TakeWhile: "take_while",
}


def is_fusible(node: Node) -> bool:
    """Whether ``node`` can join a fused run (see :data:`rxpipe.engines.lowerings.FUSED_LOOP`)."""
    return FUSED_LOOP.applies(node)


def _code_of(fn: Any) -> CodeType | None:
    """The code object a call of ``fn`` runs, if it is Python code (else None: a builtin)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        code = getattr(getattr(fn, "__func__", None), "__code__", None)  # bound method
    if code is None and callable(fn) and not isinstance(fn, type):
        code = getattr(type(fn).__call__, "__code__", None)  # a callable object
    return code if isinstance(code, CodeType) else None


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
            emit(f"    it{i} = ()")
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
        # BaseException: a KeyboardInterrupt in a stage is counted too, and ends the run
        emit(f"{ind()}except BaseException as e:")
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
            emit(f"{ind()}except BaseException as e:")
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
    # what each flat_map still held when the run ended early: lost, as on the generic path
    held = [f"lh(it{i})" for i, kind in enumerate(kinds) if kind == "flat_map"]
    emit("    finally:")
    emit(f"        counts[:] = [{', '.join([*cnt, 'out', *held])}]")
    if mode == "agen":
        emit("        close = getattr(src, 'aclose', None)")
        emit("        if close is not None: await close()")
    else:
        emit("        close = getattr(src, 'close', None)")
        emit("        if close is not None: close()")
    namespace: dict[str, Any] = {"lh": operator.length_hint}
    exec(compile("\n".join(lines), f"<rxpipe fused {'+'.join(kinds)}>", "exec"), namespace)
    fn: Callable[..., Any] = namespace["fused"]
    return fn


class FusedRun:
    """One run of a fused chain: builds the loop's arguments and turns counters into stats."""

    __slots__ = ("_counts", "_kinds", "_params", "_settled", "stats")

    def __init__(self, nodes: Sequence[Node], stats: Sequence[StageStats]) -> None:
        self._kinds = tuple(FUSIBLE[type(n.stage)] for n in nodes)
        # an observed run times each user call (``StageTiming.timed``: a fast stage's calls
        # one in a few, at random), as the interpreter times a stage's callbacks
        self._params: tuple[Any, ...] = tuple(
            _param(n.stage)
            if st.timing is None or not isinstance(n.stage, Map | Filter | FlatMap | TakeWhile)
            else st.timing.timed(_param(n.stage))
            for n, st in zip(nodes, stats, strict=True)
        )
        self.stats = stats
        self._counts: list[int] = []
        self._settled = False

    def _fail(self, error: BaseException, index: int) -> None:
        st = self.stats[index]
        st.errored += 1
        if isinstance(error, Exception):  # KeyboardInterrupt & co. reach the caller as they are
            annotate(error, st.name)

    @property
    def width(self) -> int:
        """How many stages the run covers."""
        return len(self.stats)

    @property
    def reads_one_per_output(self) -> bool:
        """Whether each output reads at most one input item (no stage drops or skips any).

        Only then may an async run read the chain inline: a filter can read without end
        before it outputs, holding the event loop meanwhile.
        """
        return all(k in ("map", "take", "take_while") for k in self._kinds)

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

    def collect(self, src: Iterator[Any], sink: list[Any], sized: int | None = None) -> None:
        """Run the chain to its end, appending outputs to ``sink`` (the ``to_list`` fast path).

        ``sized`` is the exact length of the source when it is a range, list or tuple: then a
        chain the builtins can express runs on them (see :meth:`_collect_builtin`).
        """
        if sized is not None and self._builtin_ok():
            self._collect_builtin(src, sink, sized)
            return
        try:
            _compile(self._kinds, "list")(src, self._params, self._fail, self._counts, sink.append)
        finally:
            if self._counts:
                self._counts[len(self._kinds)] = len(sink)

    # -- the builtin lowering --------------------------------------------------------------------
    def _builtin_ok(self) -> bool:
        """Whether the chain is ``map* [filter] map* [take]`` with callables we can tell apart.

        Then ``map``/``filter``/``islice`` run it in C. Counts still come out exact (the source's
        length minus what is left in its iterator, and the output length, meet at the one
        filter), and an exception is attributed by the code object of the frame that raised:
        so every Python callable must be a distinct function, and at most one may be a builtin.
        """
        kinds = self._kinds
        if any(k not in ("map", "filter", "take") for k in kinds):
            return False
        if kinds.count("filter") > 1 or ("take" in kinds and kinds[-1] != "take"):
            return False
        if kinds.count("take") > 1:
            return False
        codes = [_code_of(p) for k, p in zip(kinds, self._params, strict=True) if k != "take"]
        python = [c for c in codes if c is not None]
        return len(set(python)) == len(python) and len(codes) - len(python) <= 1

    def _builtin_chain(self, src: Iterator[Any]) -> Iterator[Any]:
        it: Any = src
        for kind, param in zip(self._kinds, self._params, strict=True):
            if kind == "map":
                it = map(param, it)
            elif kind == "filter":
                it = filter(param, it)
            else:
                it = itertools.islice(it, param)
        chained: Iterator[Any] = it
        return chained

    def iterate_builtin(self, src: Iterator[Any], sized: int) -> Iterator[Any] | None:
        """The builtin lowering for item-by-item consumption, or None when it does not apply.

        One thin generator counts what it hands out, so closing it early settles the counts.
        """
        if not self._builtin_ok():
            return None
        return self._iterate_builtin(self._builtin_chain(src), src, sized)

    def _iterate_builtin(self, it: Iterator[Any], src: Iterator[Any], sized: int) -> Iterator[Any]:
        out = 0
        errored = -1
        try:
            for item in it:
                out += 1
                yield item
            self._check_complete(src, out)
        except GeneratorExit:  # closed early by the consumer: no stage failed
            raise
        except BaseException as exc:  # KeyboardInterrupt in a stage too: counted
            errored = self._attribute(exc)
            self._fail(exc, errored)
            raise
        finally:
            self._settle_builtin(sized - operator.length_hint(src), out, errored)

    def _collect_builtin(self, src: Iterator[Any], sink: list[Any], sized: int) -> None:
        it = self._builtin_chain(src)
        errored = -1
        try:
            sink.extend(it)
            self._check_complete(src, len(sink))
        except BaseException as exc:  # KeyboardInterrupt in a stage too: counted
            errored = self._attribute(exc)
            self._fail(exc, errored)
            raise
        finally:
            consumed = sized - operator.length_hint(src)
            self._settle_builtin(consumed, len(sink), errored)

    def _check_complete(self, src: Iterator[Any], out: int) -> None:
        """Raise if the builtins stopped before the source and the take ran out.

        A ``StopIteration`` raised by a user function ends a builtin ``map``/``filter`` as if
        the stream had ended (PEP 479's problem, without its fix). That must not pass silently.
        """
        if operator.length_hint(src) == 0:
            return
        if self._kinds and self._kinds[-1] == "take" and out >= self._params[-1]:
            return
        names = [st.name for k, st in zip(self._kinds, self.stats, strict=True) if k != "take"]
        raise RuntimeError(
            f"a function in stages {names} raised StopIteration, which would have silently "
            "ended the stream (PEP 479)"
        )

    def _attribute(self, exc: BaseException) -> int:
        """The index of the stage whose callable raised ``exc``."""
        tb = exc.__traceback__
        inner = tb.tb_next if tb is not None else None
        code = inner.tb_frame.f_code if inner is not None else None
        builtin = -1
        for i, (kind, param) in enumerate(zip(self._kinds, self._params, strict=True)):
            if kind == "take":
                continue
            c = _code_of(param)
            if c is None:
                builtin = i
            elif c is code:
                return i
        return builtin if builtin >= 0 else 0

    def _settle_builtin(self, consumed: int, out: int, errored: int) -> None:
        """Exact per-stage counts from the two ends: source consumption and output length."""
        kinds, stats = self._kinds, self.stats
        split = kinds.index("filter") if "filter" in kinds else len(kinds)
        cur = consumed
        for i in range(split):  # maps before the filter, walking forward from the source
            stats[i].received = cur
            cur -= i == errored
            stats[i].emitted = cur
        back = out
        for i in range(len(kinds) - 1, split, -1):  # after the filter, walking back
            stats[i].emitted = back
            back += i == errored
            stats[i].received = back
        if split < len(kinds):  # the filter: what came in, what went out, the rest it dropped
            st = stats[split]
            st.received = cur
            st.emitted = back
            st.filtered = cur - back - (split == errored)
        self._counts[:] = [0] * len(kinds) + [out]
        self._settled = True

    def settle(self) -> int:
        """Write the counters into the stages' stats; return how many items the run received.

        Counts for one-to-at-most-one stages are derived backwards from the output count:
        what a stage received is what it emitted plus what it filtered or failed on.
        """
        counts = self._counts
        if not counts:  # never started
            return 0
        if self._settled:
            return self.stats[0].received
        kinds = self._kinds
        downstream = counts[len(kinds)]
        held = iter(counts[len(kinds) + 1 :])  # one per flat_map, in order
        for i, kind in enumerate(kinds):
            if kind == "flat_map":
                self.stats[i].lost += next(held)
        for i in range(len(kinds) - 1, -1, -1):
            st = self.stats[i]
            st.emitted = downstream
            if kinds[i] == "flat_map":
                st.received = counts[i]
            else:
                st.filtered = counts[i]
                st.received = downstream + counts[i] + st.errored
            downstream = st.received
        return downstream
