"""``python -m comparisons [--quick] [--only NAME] [--out DIR] [--list]``.

Runs every registered workload (``comparisons/workloads/``), showing progress (workload,
contender, round) while it runs, then prints one short summary: per workload its headline
comparison and each target as met or missed, with its figure. The full Markdown tables go to
``<out>/<workload>.md`` (plus plots and ``<out>/environment.md``); ``<out>`` is
``comparison-results/`` at the top of the checkout (gitignored) unless ``--out`` says
otherwise: ``--out docs/results`` refreshes the copy the documentation includes.

On a terminal the progress is a ``rich`` display; elsewhere (CI, a pipe, or without ``rich``)
it is one plain line per workload. Missed targets are reported, never fatal; a contender
whose output differs from its baseline's is fatal (exit status 1), since its timing would be
meaningless.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from comparisons import workloads
from comparisons.harness import ResultMismatch, TargetResult, reporting_progress
from comparisons.report import ROOT, Environment, Section, environment

DEFAULT_OUT = ROOT / "comparison-results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comparisons",
        description="Side-by-side benchmarks of rxpipe and its peers: a progress display, a "
        "closing summary, and the full Markdown tables written to a folder.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes and fewer rounds (the whole run takes a minute or two)",
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        choices=workloads.names(),
        help="run only this workload (repeatable); choices: %(choices)s",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the tables and plots (default: comparison-results/ at the top of "
        "this checkout, gitignored; --out docs/results refreshes the documentation's copy)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain lines instead of the live display, even on a terminal",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="under the progress display, show the rxpipe pipeline of each warm-up round live "
        "(items/s and queue depth per stage); timed rounds are never watched",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    return parser


def _write(path: Path, text: str) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def _plain(text: str) -> str:
    """Markdown inline code marks dropped, for the terminal."""
    return text.replace("`", "")


@dataclass(frozen=True, slots=True)
class _Done:
    name: str
    seconds: float
    section: Section


def summary_lines(done: Sequence[_Done], out: Path, seconds: float, mode: str) -> list[str]:
    """The closing summary as plain lines (the rich display prints the same facts)."""
    lines = [f"Summary ({mode} mode, {seconds:.0f} s)"]
    width = max((len(d.name) for d in done), default=0)
    for d in done:
        lines.append(f"{d.name:<{width}}  {_plain(d.section.headline)}")
        lines.extend(f"  {_target_line(r)}" for r in d.section.targets)
    lines.append(_tally([r for d in done for r in d.section.targets]))
    lines.append(f"Full tables and plots: {out}")
    return lines


def _target_line(r: TargetResult) -> str:
    return f"{r.status:<7} {_plain(r.text)}: {r.figure}"


def _tally(results: Sequence[TargetResult]) -> str:
    met = sum(r.met is True for r in results)
    missed = sum(r.met is False for r in results)
    unmeasured = sum(r.met is None for r in results)
    text = f"Targets: {met} met, {missed} missed"
    return text + (f", {unmeasured} not measured." if unmeasured else ".")


class _PlainDisplay:
    """A few plain lines: one per workload, when it starts and how long it took."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def header(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    @contextmanager
    def workload(self, index: int, total: int, name: str) -> Iterator[Callable[[str], None]]:
        print(f"[{index}/{total}] {name} ...", end="", file=self.stream, flush=True)
        started = time.perf_counter()
        try:
            yield lambda step: None
        finally:
            print(f" {time.perf_counter() - started:.1f} s", file=self.stream, flush=True)

    def summary(self, done: Sequence[_Done], out: Path, seconds: float, mode: str) -> None:
        print(file=self.stream)
        for line in summary_lines(done, out, seconds, mode):
            print(line, file=self.stream)
        self.stream.flush()

    def close(self) -> None:
        pass


class _RichDisplay:
    """A live line (workload, contender, round) over a log of finished workloads."""

    def __init__(self, console: Any, total: int, live: bool = False) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[step]}", table_column=Column(no_wrap=True, overflow="ellipsis")
            ),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=total, step="")
        #: The live view of warm-up rounds' rxpipe runs (``--live``), drawn under the bar.
        self.view: Any = None
        if live:
            from rxpipe.telemetry import LiveView

            self.view = LiveView(console=console, display=False)
            self.live = Live(Group(self.progress, self.view), console=console, transient=True)
            self.live.start()
        else:
            self.progress.start()

    def header(self, text: str) -> None:
        self.console.print(text, highlight=False)

    @contextmanager
    def workload(self, index: int, total: int, name: str) -> Iterator[Callable[[str], None]]:
        self.progress.update(self.task, description=name, step="")
        started = time.perf_counter()

        def step(text: str) -> None:
            self.progress.update(self.task, step=text)

        try:
            yield step
        finally:
            seconds = time.perf_counter() - started
            self.progress.advance(self.task)
            self.console.print(f"[green]done[/] {name} [dim]{seconds:.1f} s[/]", highlight=False)

    def summary(self, done: Sequence[_Done], out: Path, seconds: float, mode: str) -> None:
        from rich.table import Table
        from rich.text import Text

        self.close()
        table = Table(
            title=f"Summary ({mode} mode, {seconds:.0f} s)",
            title_justify="left",
            show_lines=True,
            expand=False,
        )
        table.add_column("workload", style="bold", no_wrap=True)
        table.add_column("headline, then each target")
        styles = {"MET": "green", "MISSED": "red", "NOT MEASURED": "yellow"}
        for d in done:
            cell = Text(_plain(d.section.headline))
            for r in d.section.targets:
                cell.append("\n")
                cell.append(f"{r.status:<7}", style=f"bold {styles[r.status]}")
                cell.append(f" {_plain(r.text)}: {r.figure}")
            table.add_row(d.name, cell)
        self.console.print(table)
        self.console.print(_tally([r for d in done for r in d.section.targets]), highlight=False)
        self.console.print(f"Full tables and plots: [bold]{out}[/]", highlight=False)

    def close(self) -> None:
        if self.view is not None:
            self.live.stop()
        else:
            self.progress.stop()


def _display(plain: bool, total: int, live: bool = False) -> _PlainDisplay | _RichDisplay:
    """Rich on a terminal (when installed), plain lines otherwise."""
    if not plain:
        try:
            from rich.console import Console
        except ImportError:
            pass
        else:
            console = Console()
            if console.is_terminal and not console.is_dumb_terminal:
                return _RichDisplay(console, total, live)
    return _PlainDisplay(sys.stdout)


def _header(env: Environment, count: int, out: Path) -> str:
    return (
        f"rxpipe benchmarks, {env.mode.split(' ')[0]} mode: {count} workload"
        f"{'s' if count != 1 else ''} on {env.python}, {env.machine}, {env.cpus}; "
        f"tables go to {out}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for w in workloads.load_all():
            print(f"{w.name}: {w.title}")
        return 0
    selected = [workloads.load(n) for n in args.only] if args.only else workloads.load_all()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    env = environment(quick=args.quick)
    _write(out / "environment.md", env.page([w.name for w in selected]))

    display = _display(args.plain, len(selected), args.live)
    done: list[_Done] = []
    started = time.perf_counter()
    try:
        display.header(_header(env, len(selected), out))
        for i, w in enumerate(selected, 1):
            t0 = time.perf_counter()
            cm: AbstractContextManager[Callable[[str], None]] = display.workload(
                i, len(selected), w.name
            )
            view = getattr(display, "view", None)
            with cm as step, reporting_progress(step, view):
                try:
                    section = w.run(args.quick, out)
                except ResultMismatch as exc:
                    display.close()
                    print(f"error: workload {w.name!r}: {exc}", file=sys.stderr)
                    return 1
            _write(out / f"{w.name}.md", f"{section.markdown.rstrip()}\n\n{env.footer()}\n")
            done.append(_Done(w.name, time.perf_counter() - t0, section))
        mode = "quick" if args.quick else "full"
        display.summary(done, out, time.perf_counter() - started, mode)
    finally:
        display.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
