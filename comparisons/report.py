"""Markdown rendering: contender tables, target tables, the environment page, and the
:class:`Section` a workload returns (its Markdown plus the few lines of the closing summary).

Every generated file is a MyST fragment that ``docs/benchmarks.md`` includes (see
``docs/conf.py``): it starts with a ``##`` heading and uses no further headings (bold
labels instead), so several tables never produce duplicate anchors.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import final

from comparisons.harness import Measurement, TargetResult

__all__ = (
    "Environment",
    "Section",
    "best_peer",
    "contender_table",
    "environment",
    "fmt_count",
    "fmt_rate",
    "headline",
    "markdown_table",
    "target_table",
)

ROOT = Path(__file__).resolve().parent.parent


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A GitHub/MyST pipe table; ``align`` has one ``l`` or ``r`` per column (default ``l``)."""
    align = align.ljust(len(header), "l")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def fmt_count(n: int) -> str:
    """``1000000`` -> ``1,000,000``."""
    return f"{n:,}"


def fmt_rate(per_second: float) -> str:
    """Items per second with an SI prefix: ``12.3 M``."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.2f} {prefix}"
    return f"{per_second:.0f}"


def contender_table(m: Measurement) -> str:
    """One row per contender: median and spread, per-item cost, throughput, ratio to baseline."""
    rows = []
    for t in m.timings:
        label = f"**{t.name}** (baseline)" if t.is_baseline else t.name
        if t.note:
            label += f" ({t.note})"
        rows.append(
            [
                label,
                f"`{t.code}`" if t.code else "",
                f"{t.median_ns / 1e6:.1f}",
                f"{t.min_ns / 1e6:.1f} - {t.max_ns / 1e6:.1f}",
                f"{t.ns_per_item:.1f}",
                fmt_rate(t.items_per_second),
                f"{t.ratio:.2f}x",
            ]
        )
    header = [
        "contender",
        "code",
        "median ms",
        "min - max ms",
        "ns / item",
        "items / s",
        f"vs {m.baseline}",
    ]
    return markdown_table(header, rows, "llrrrrr")


def status_cell(r: TargetResult) -> str:
    """``**MISSED**: 1.43x slower (target: at least 1.7x faster)``: status, figure, target."""
    return f"**{r.status}**: {r.figure} (target: {r.goal})"


def target_table(results: Sequence[TargetResult]) -> str:
    """One row per target: what it asks, its status with this run's figure, the per-round range."""
    rows = [[r.text, status_cell(r), r.spread] for r in results]
    return markdown_table(["target", "status", "per-round range"], rows, "lll")


@final
@dataclass(frozen=True, slots=True)
class Section:
    """What a workload's run returns.

    Args:
        markdown: the full section (heading, caption, tables), written to ``<out>/<name>.md``.
        headline: one line for the closing summary: the workload's key comparison.
        targets: its targets' outcomes, listed under the headline in the summary.
    """

    markdown: str
    headline: str = ""
    targets: tuple[TargetResult, ...] = ()


def best_peer(m: Measurement, peers: Sequence[str]) -> str | None:
    """The fastest of ``peers`` that ran (by paired ratio to the baseline), or ``None``."""
    ran = [name for name in peers if name in m]
    return min(ran, key=lambda name: m[name].ratio) if ran else None


def headline(m: Measurement, *, pull: str | None, push: str | None, peers: Sequence[str]) -> str:
    """``pull 1.05x, push 1.31x the time of the best peer (builtin)``: paired time ratios.

    ``pull`` and ``push`` name the rxpipe contenders that stand for each engine (``None``: the
    workload has none); ``peers`` the contenders that are not rxpipe.
    """
    peer = best_peer(m, peers)
    if peer is None:
        return "no peer ran"
    parts = [
        f"{engine} {m.ratio(name, peer):.2f}x" if name in m else f"{engine} n/a"
        for engine, name in (("pull", pull), ("push", push))
        if name is not None
    ]
    return f"{', '.join(parts)} the time of the best peer, {peer}"


@final
@dataclass(frozen=True, slots=True)
class Environment:
    """Where and how a run happened; rendered once as a page and as each table's footer."""

    date: str
    quick: bool
    python: str
    machine: str
    cpu: str
    cpus: str
    versions: tuple[tuple[str, str], ...]
    revision: str

    @property
    def mode(self) -> str:
        return "quick (`--quick`)" if self.quick else "full"

    def footer(self) -> str:
        """One italic line closing each table."""
        return (
            f"*Measured {self.date}, {self.mode.split(' ')[0]} mode, {self.python}, "
            f"{self.machine}, {self.cpus}.*"
        )

    def page(self, workloads: Sequence[str]) -> str:
        """The ``environment.md`` fragment."""
        rows = [
            ["date", self.date],
            ["mode", self.mode],
            ["workloads run", ", ".join(f"`{w}`" for w in workloads)],
            ["Python", self.python],
            ["machine", self.machine],
            ["CPU", self.cpu],
            ["CPUs usable", self.cpus],
            *([name, version] for name, version in self.versions),
            ["source", self.revision],
        ]
        return (
            "## Environment\n\n"
            "Where the latest `python -m comparisons` run (`make bench`, `make bench-full`) "
            "measured the tables below. Every contender of a table ran in the same process, "
            "interleaved round by round, so compare rows within a table; across machines and "
            "runs, only the ratios are meaningful.\n\n"
            + markdown_table(["what", "value"], rows)
            + "\n"
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _usable_cpus() -> str:
    total = os.cpu_count() or 0
    affinity = getattr(os, "sched_getaffinity", None)
    usable = len(affinity(0)) if affinity is not None else total
    return f"{usable} CPUs" if usable == total else f"{usable} of {total} CPUs"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"git `{commit}`" + (" with uncommitted changes" if dirty else "")


def environment(*, quick: bool) -> Environment:
    """Describe this process and machine."""
    import rxpipe

    now = datetime.datetime.now(datetime.UTC)
    impl = platform.python_implementation()
    return Environment(
        date=now.strftime("%Y-%m-%d %H:%M UTC"),
        quick=quick,
        python=f"{impl} {platform.python_version()}",
        machine=f"{platform.system()} {platform.machine()}",
        cpu=_cpu_model(),
        cpus=_usable_cpus(),
        versions=(("rxpipe", rxpipe.__version__), ("reactivex", _version("reactivex"))),
        revision=_revision(),
    )
