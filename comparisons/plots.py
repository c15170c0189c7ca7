"""Line plots for the workloads (matplotlib, headless ``Agg`` backend), skipped when it is missing.

A workload calls :func:`line_plot` with its series; the PNG goes next to its Markdown table,
and :func:`plot_markdown` gives the line the section shows: the image, or a sentence saying why
there is none (``pip install -e ".[bench]"`` brings matplotlib). Nothing here is fatal: a run
without matplotlib still writes every table.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

__all__ = ("Marker", "PlotResult", "have_matplotlib", "line_plot", "plot_markdown")

MISSING: str = "matplotlib is not installed (`pip install -e '.[bench]'`)"


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported here."""
    return importlib.util.find_spec("matplotlib") is not None


@final
@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at ``x`` with a label (the guide's suggestion on a curve)."""

    x: float
    label: str


@final
@dataclass(frozen=True, slots=True)
class PlotResult:
    """Where a plot went, or why it was not drawn (``path is None``)."""

    path: Path | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Panel:
    title: str
    series: Mapping[str, Sequence[tuple[float, float | None]]]
    markers: Sequence[Marker] = field(default_factory=tuple)


def line_plot(
    path: Path,
    panels: Sequence[tuple[str, Mapping[str, Sequence[tuple[float, float | None]]]]],
    *,
    xlabel: str,
    ylabel: str,
    xlog: bool = False,
    ylog: bool = False,
    symlog_x: bool = False,
    markers: Sequence[Marker] = (),
    xticks: Sequence[float] | None = None,
) -> PlotResult:
    """Draw one row of panels, each ``(title, {label: [(x, y), ...]})``; ``y`` of ``None`` is
    left out. Returns where the PNG went, or the reason it was not drawn."""
    if not have_matplotlib():
        return PlotResult(None, MISSING)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cells = [_Panel(title, series, markers) for title, series in panels]
    fig = Figure(figsize=(6.5 * len(cells), 4.5), dpi=100)
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    styles = ("o", "s", "^", "v", "D", "x", "P", "*", "<", ">", "h")
    for ax, cell in zip(axes, cells, strict=True):
        for i, (label, points) in enumerate(cell.series.items()):
            pts = [(x, y) for x, y in points if y is not None]
            if pts:
                ax.plot(
                    [x for x, _ in pts],
                    [y for _, y in pts],
                    marker=styles[i % len(styles)],
                    label=label,
                )
        for m in cell.markers:
            ax.axvline(m.x, linestyle=":", color="black", alpha=0.7, label=m.label)
        if symlog_x:
            ax.set_xscale("symlog", linthresh=1)
        elif xlog:
            ax.set_xscale("log")
        if ylog:
            ax.set_yscale("log")
        if xticks is not None:
            ax.set_xticks(list(xticks))
            ax.set_xticklabels([f"{t:g}" for t in xticks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(cell.title, fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return PlotResult(path)


def plot_markdown(result: PlotResult, alt: str) -> str:
    """The section's line for a plot: the image (relative to the table), or why it is absent."""
    if result.path is None:
        return f"*(plot not drawn: {result.reason})*"
    return f"![{alt}]({result.path.name})"
