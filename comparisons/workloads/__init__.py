"""The workload registry: one module per workload, found by name.

To add a workload, add one module here (``comparisons/workloads/<name>.py``) that defines

    WORKLOAD = Workload(name="<name>", title="...", run=run)

where ``run(quick: bool, out: Path) -> Section`` measures (with
:func:`comparisons.harness.measure`) and returns a :class:`comparisons.report.Section`: the
Markdown section (a ``##`` heading, a caption, the contender table and, if it has any, its
target table; :mod:`comparisons.report` renders both), one headline line and the target
results for the closing summary. Nothing else changes: ``python -m comparisons`` runs every
module of this package whose name does not start with ``_``, in name order, and writes
``<out>/<name>.md`` (``--out docs/results`` refreshes the copy the docs include). Long steps
outside :func:`~comparisons.harness.measure` (starting a cluster, calibrating) call
:func:`comparisons.harness.progress` so the display keeps moving. Keep the sizes and the
number of rounds of ``quick=True`` small: the whole quick run must stay under about two
minutes. Expose a sized entry point (``measure(n, rounds=...)``) so a test can run
the workload on a tiny size.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import final

from comparisons.report import Section

__all__ = ("Workload", "load", "load_all", "names")


@final
@dataclass(frozen=True, slots=True)
class Workload:
    """A registered benchmark.

    Args:
        name: the module's name; the table is written to ``<out>/<name>.md``.
        title: one line, for ``--list``.
        run: ``run(quick, out)`` measures and returns its :class:`Section`; files beside it
            (a plot) go to the directory ``out``.
    """

    name: str
    title: str
    run: Callable[[bool, Path], Section]


def names() -> list[str]:
    """Every workload module's name, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> Workload:
    """Import ``comparisons.workloads.<name>`` and return its ``WORKLOAD``.

    Raises:
        KeyError: there is no such workload.
        TypeError: the module defines no ``WORKLOAD`` of the right type or name.
    """
    if name not in names():
        raise KeyError(f"no workload {name!r}; known: {', '.join(names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    workload = getattr(module, "WORKLOAD", None)
    if not isinstance(workload, Workload) or workload.name != name:
        raise TypeError(f"{module.__name__} must define WORKLOAD = Workload(name={name!r}, ...)")
    return workload


def load_all() -> list[Workload]:
    """Every registered workload, in name order."""
    return [load(name) for name in names()]
