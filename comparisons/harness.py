"""Timing helpers: every contender in one process, interleaved by rounds, checked for equal output.

How a measurement runs (``measure``):

1. The baseline runs once untimed; its output is the *expected* output.
2. ``warmup`` untimed rounds run every contender once (imports, caches, code generation and
   the specialising interpreter all warm up here); each output is checked. With a live view
   (``python -m comparisons --live``) these rounds show their rxpipe runs live; a watched pull
   run is not fused, so the fused loop's code generation then moves to the first timed round.
3. ``rounds`` timed rounds run every contender once each, round-robin, so that a burst of
   machine noise hits all contenders rather than one. Each round starts one contender later
   than the previous one, so no contender always runs first (or right after the slowest).
4. Each timed call is bracketed by ``gc.collect()`` then ``gc.disable()`` (the collector is
   re-enabled afterwards), and timed with ``time.perf_counter_ns``. Output building is inside
   the timed region: a contender returns its whole result.
5. Each contender's output must equal the baseline's (``==``), in every round, or
   :class:`ResultMismatch` is raised: a contender doing the wrong (or less) work cannot look fast.

A contender's time is the median of its timed rounds. Per-item figures divide it by the
workload's item count, which the workload defines (and states in its table caption).

Ratios between two contenders are *paired*: the median, over rounds, of the ratio of their
times in the same round (:func:`paired_ratio`), not the ratio of their medians. A shared
machine drifts between fast and slow phases; two runs of one round are close in time and more
often share a phase than two independent medians do (one quick run here measured a ratio of
medians of 0.68x for a contender whose paired ratio is about 1.2x). Paired ratios still move
from run to run on a noisy machine, by 10-20% on the 2-core CI box, so target checks also
show the range of the per-round ratios: a target missed by less than that range is noise.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, final

__all__ = (
    "Contender",
    "Measurement",
    "ResultMismatch",
    "Target",
    "TargetResult",
    "Timing",
    "measure",
    "paired_ratio",
    "progress",
    "reporting_progress",
    "round_ratios",
    "speed",
    "time_once",
)

#: Who hears :func:`progress` calls (the command line's display); empty: nobody.
_listeners: list[Callable[[str], None]] = []


def progress(step: str) -> None:
    """Say what runs now (``"reactivex, round 2/5"``), for a progress display.

    Measuring code calls this between timed calls, never inside one; with no listener
    (tests, plain imports) it does nothing.
    """
    for listener in _listeners:
        listener(step)


#: The live views (``rxpipe.telemetry.LiveView``) that show warm-up rounds' rxpipe runs.
_views: list[Any] = []


@contextmanager
def reporting_progress(listener: Callable[[str], None], view: Any = None) -> Iterator[None]:
    """Send every :func:`progress` step to ``listener`` inside the ``with`` block, and show
    the rxpipe runs of warm-up rounds in ``view`` (a ``LiveView``; None: nowhere). Timed
    rounds are never watched: the view would time itself too."""
    _listeners.append(listener)
    if view is not None:
        _views.append(view)
    try:
        yield
    finally:
        _listeners.remove(listener)
        if view is not None:
            _views.remove(view)


def _watched() -> AbstractContextManager[object]:
    return _views[-1].watch() if _views else nullcontext()


def speed(speedup: float) -> str:
    """A speed-up as words that cannot be misread: ``2.10x faster``, ``1.43x slower``."""
    if speedup <= 0:
        return "infinitely slower"
    if round(speedup, 2) == 1.0:
        return "as fast (1.00x)"
    return f"{speedup:.2f}x faster" if speedup > 1 else f"{1 / speedup:.2f}x slower"


@final
@dataclass(frozen=True, slots=True)
class Contender:
    """One way of doing a workload's job.

    Args:
        name: short display name; unique within a workload, and the key targets refer to.
        run: does the whole job (building the pipeline included) and returns its output.
        code: the code that runs, as shown in the table.
        note: an optional remark shown next to the name (``"informational"``).
    """

    name: str
    run: Callable[[], object]
    code: str = ""
    note: str = ""


class ResultMismatch(AssertionError):
    """A contender's output differs from the baseline's: its timing would mean nothing."""

    def __init__(self, contender: str, baseline: str, detail: str) -> None:
        super().__init__(
            f"contender {contender!r} returned a different result than baseline "
            f"{baseline!r}: {detail}"
        )
        self.contender = contender
        self.baseline = baseline


def _difference(got: object, expected: object) -> str:
    """Say briefly how ``got`` differs from ``expected``."""
    if type(got) is not type(expected):
        return f"type {type(got).__name__}, expected {type(expected).__name__}"
    if isinstance(got, list | tuple) and isinstance(expected, list | tuple):
        if len(got) != len(expected):
            return f"{len(got)} items, expected {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            if a != b:
                return f"item {i} is {a!r}, expected {b!r}"
    return f"{got!r:.80} != {expected!r:.80}"


def _check(name: str, got: object, baseline: str, expected: object) -> None:
    if got != expected:
        raise ResultMismatch(name, baseline, _difference(got, expected))


def time_once(fn: Callable[[], object]) -> tuple[int, object]:
    """Run ``fn`` once with the garbage collector off; return (elapsed ns, its result).

    A full collection first, so that garbage left by earlier calls is not collected on this
    call's time; the collector is re-enabled afterwards only if it was enabled before.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        result = fn()
        elapsed = time.perf_counter_ns() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed, result


def round_ratios(subject: Sequence[int], reference: Sequence[int]) -> tuple[float, ...]:
    """``subject[r] / reference[r]`` for every round ``r``.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(subject) != len(reference) or not subject:
        raise ValueError(
            f"need equal, non-empty sample lists; got {len(subject)}, {len(reference)}"
        )
    return tuple(s / r if r else float("inf") for s, r in zip(subject, reference, strict=True))


def paired_ratio(subject: Sequence[int], reference: Sequence[int]) -> float:
    """Median over rounds of ``subject[r] / reference[r]``: the paired time ratio.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    return float(statistics.median(round_ratios(subject, reference)))


@final
@dataclass(frozen=True, slots=True)
class Timing:
    """The timed rounds of one contender (``samples_ns[r]`` is round ``r``), and figures from them.

    ``ratio`` is the paired ratio to the baseline (:func:`paired_ratio`): lower is faster.
    """

    name: str
    code: str
    note: str
    samples_ns: tuple[int, ...]
    items: int
    ratio: float
    is_baseline: bool

    @property
    def median_ns(self) -> float:
        return float(statistics.median(self.samples_ns))

    @property
    def min_ns(self) -> int:
        return min(self.samples_ns)

    @property
    def max_ns(self) -> int:
        return max(self.samples_ns)

    @property
    def ns_per_item(self) -> float:
        """Median time divided by the workload's item count."""
        return self.median_ns / self.items

    @property
    def items_per_second(self) -> float:
        return self.items * 1e9 / self.median_ns if self.median_ns else float("inf")


@final
@dataclass(frozen=True, slots=True)
class Measurement:
    """Every contender's :class:`Timing`, in the order the contenders were given."""

    timings: tuple[Timing, ...]
    baseline: str
    items: int
    rounds: int
    warmup: int

    def __getitem__(self, name: str) -> Timing:
        for t in self.timings:
            if t.name == name:
                return t
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self.timings)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.timings)

    def ratio(self, subject: str, reference: str) -> float:
        """The paired time ratio of two contenders (lower: ``subject`` is faster)."""
        return paired_ratio(self[subject].samples_ns, self[reference].samples_ns)


def measure(
    contenders: Sequence[Contender],
    *,
    baseline: str,
    items: int,
    rounds: int,
    warmup: int = 1,
) -> Measurement:
    """Time every contender, interleaved by rounds, and check their outputs (module docs).

    Args:
        contenders: the ways of doing the job; one of them is named ``baseline``.
        baseline: the name of the contender whose output is the expected one, and against
            whom every ratio is taken (paired by round).
        items: the workload's item count, the divisor of the per-item figures (> 0).
        rounds: timed rounds (>= 1); each contender's time is the median over them.
        warmup: untimed rounds before them (>= 0).

    Raises:
        ResultMismatch: a contender's output differs from the baseline's.
        ValueError: bad arguments (duplicate names, unknown baseline, rounds < 1, ...).
    """
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise ValueError(f"contender names must be unique, got {names}")
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the contenders {names}")
    if rounds < 1 or warmup < 0 or items < 1:
        raise ValueError(
            f"need rounds >= 1, warmup >= 0, items >= 1; got {rounds}, {warmup}, {items}"
        )

    base = contenders[names.index(baseline)]
    progress(f"{baseline}, expected output")
    expected = base.run()
    for w in range(warmup):
        for c in contenders:
            progress(f"{c.name}, warm-up {w + 1}/{warmup}")
            with _watched():
                result = c.run()
            _check(c.name, result, baseline, expected)

    samples: dict[str, list[int]] = {name: [] for name in names}
    count = len(contenders)
    for r in range(rounds):
        start = r % count
        for c in (*contenders[start:], *contenders[:start]):
            progress(f"{c.name}, round {r + 1}/{rounds}")
            elapsed, result = time_once(c.run)
            _check(c.name, result, baseline, expected)
            del result
            samples[c.name].append(elapsed)

    timings = tuple(
        Timing(
            name=c.name,
            code=c.code,
            note=c.note,
            samples_ns=tuple(samples[c.name]),
            items=items,
            ratio=paired_ratio(samples[c.name], samples[baseline]),
            is_baseline=c.name == baseline,
        )
        for c in contenders
    )
    return Measurement(timings, baseline, items, rounds, warmup)


@final
@dataclass(frozen=True, slots=True)
class Target:
    """A speed goal comparing two contenders' times (by their paired ratio).

    ``kind="within"``: ``subject`` takes at most ``factor`` times as long as ``reference`` (a
    ceiling: met at or under it).
    ``kind="faster"``: ``subject`` is at least ``factor`` times faster than ``reference`` (a
    floor on the speed-up; a speed-up below 1 is reported as "slower").
    """

    text: str
    subject: str
    reference: str
    kind: Literal["within", "faster"]
    factor: float

    @property
    def goal(self) -> str:
        """The target in a few words, for a status line."""
        if self.kind == "within":
            return f"at most {self.factor:g}x the time"
        return f"at least {self.factor:g}x faster"

    def evaluate(self, m: Measurement) -> TargetResult:
        """Check this target against a measurement (never raises on a missed target)."""
        missing = [n for n in (self.subject, self.reference) if n not in m]
        if missing:
            return TargetResult(self.text, None, f"not run ({', '.join(missing)})", self.goal)
        per_round = round_ratios(m[self.subject].samples_ns, m[self.reference].samples_ns)
        ratio = float(statistics.median(per_round))
        if self.kind == "within":
            figure = f"{ratio:.2f}x the time"
            spread = f"rounds {min(per_round):.2f} - {max(per_round):.2f}"
            return TargetResult(self.text, ratio <= self.factor, figure, self.goal, spread)
        speedup = 1 / ratio
        spread = f"rounds {speed(1 / max(per_round))} - {speed(1 / min(per_round))}"
        return TargetResult(self.text, speedup >= self.factor, speed(speedup), self.goal, spread)


@final
@dataclass(frozen=True, slots=True)
class TargetResult:
    """A target's outcome in one run: ``met`` is ``None`` when it could not be measured.

    Args:
        text: the target, as its table lists it.
        met: whether this run met it (``None``: not measured).
        figure: what this run measured, in words (``"1.12x the time"``, ``"1.43x slower"``).
        goal: the target's threshold in the same words (``"at most 1.3x the time"``).
        spread: optional detail after the figure (the per-round range).
    """

    text: str
    met: bool | None
    figure: str
    goal: str
    spread: str = ""

    @property
    def status(self) -> str:
        if self.met is None:
            return "NOT MEASURED"
        return "MET" if self.met else "MISSED"

    @property
    def measured(self) -> str:
        """The figure with its spread: the target table's "this run" cell."""
        return f"{self.figure} ({self.spread})" if self.spread else self.figure

    @property
    def verdict(self) -> str:
        """The status naming its figure and its target: ``MISSED: 1.43x slower (target: ...)``."""
        return f"{self.status}: {self.figure} (target: {self.goal})"
