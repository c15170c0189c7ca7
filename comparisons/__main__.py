"""``python -m comparisons [--quick] [--only NAME] [--out DIR] [--list]``.

Runs every registered workload (``comparisons/workloads/``), prints each Markdown table to
stdout and writes it to ``<out>/<workload>.md``, plus ``<out>/environment.md`` describing the
run. Missed speed targets are reported, never fatal; a contender whose output differs from
its baseline's is fatal (exit status 1), since its timing would be meaningless.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from comparisons import workloads
from comparisons.harness import ResultMismatch
from comparisons.report import ROOT, environment

DEFAULT_OUT = ROOT / "docs" / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comparisons",
        description="Side-by-side benchmarks of rxpipe and its peers; writes Markdown tables.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes and fewer rounds (the whole run takes under a minute)",
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
        help="where to write the tables (default: docs/results of this checkout)",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    return parser


def _write(path: Path, text: str) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for w in workloads.load_all():
            print(f"{w.name}: {w.title}")
        return 0
    selected = [workloads.load(n) for n in args.only] if args.only else workloads.load_all()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    env = environment(quick=args.quick)
    page = env.page([w.name for w in selected])
    _write(out / "environment.md", page)
    print(page, flush=True)

    started = time.perf_counter()
    for w in selected:
        t0 = time.perf_counter()
        try:
            section = w.run(args.quick, out)
        except ResultMismatch as exc:
            print(f"error: workload {w.name!r}: {exc}", file=sys.stderr)
            return 1
        text = f"{section.rstrip()}\n\n{env.footer()}\n"
        _write(out / f"{w.name}.md", text)
        print(text, flush=True)
        print(
            f"[{w.name}: {time.perf_counter() - t0:.1f} s, written to {out / (w.name + '.md')}]",
            file=sys.stderr,
            flush=True,
        )
    print(f"[total: {time.perf_counter() - started:.1f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
