"""Smoke tests of the push-versus-pull workloads: every contender runs, on tiny sizes.

No timing and no memory figure is asserted: targets are reported by ``make bench``, never
tested. What is checked: every contender appears in the table, outputs are compared, the plot
is written, and the memory measurement sees the items and computes the bounds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comparisons import workloads
from comparisons.workloads import push_memory, push_pipeline
from rxpipe import Flow, PushEngine

TINY = 300


def _expected(n: int) -> list[int]:
    return [y for y in map(push_pipeline.f, range(n)) if push_pipeline.p(y)]


def _rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("| ")]


def test_push_workloads_are_registered() -> None:
    assert {"push_pipeline", "push_memory"} <= set(workloads.names())
    assert workloads.load("push_pipeline").name == "push_pipeline"
    assert workloads.load("push_memory").name == "push_memory"


@pytest.mark.parametrize("maxsize", [1, 16])
def test_hand_written_pipelines_give_the_expected_items(maxsize: int) -> None:
    expected = _expected(TINY)
    assert asyncio.run(push_pipeline.asyncio_queue_pipeline(TINY, maxsize)) == expected
    assert push_pipeline.thread_queue_pipeline(TINY, maxsize) == expected
    with pytest.raises(ValueError, match="unbounded"):
        asyncio.run(push_pipeline.asyncio_queue_pipeline(TINY, 0))


def test_push_pipeline_table_lists_every_contender_and_target() -> None:
    m = push_pipeline.measure_pipeline(TINY, rounds=1, warmup=0)
    names = [c.name for c in push_pipeline.contenders(TINY)]
    assert m.names == tuple(names)
    assert m.baseline == push_pipeline.BASELINE
    assert {
        push_pipeline.BASELINE,
        push_pipeline.PUSH_B16,
        push_pipeline.PUSH_SYNC,
        push_pipeline.PUSH_THREADS,
        push_pipeline.THREAD_QUEUE,
        push_pipeline.PULL_FUSED,
        *(push_pipeline.push_name(b) for b in push_pipeline.TABLE_BUFFERS),
        *(push_pipeline.queue_name(q) for q in (1, 16, 256)),
    } <= set(names)
    assert (push_pipeline.PULL_BOUNDARIES in names) == push_pipeline.has_buffer()
    for c in push_pipeline.contenders(TINY):  # what measure compared, checked once more here
        assert c.run() == _expected(TINY), c.name

    sweep = push_pipeline.measure_sweep(TINY, rounds=1)
    for b in push_pipeline.SWEEP_BUFFERS:
        assert push_pipeline.push_name(b) in sweep
        assert push_pipeline.queue_name(max(b, 1)) in sweep

    text = push_pipeline.render(m, sweep, TINY)
    assert text.startswith("## ")
    assert f"![throughput vs buffer size]({push_pipeline.PLOT_NAME})" in text
    rows = _rows(text)
    for name in names:
        assert any(r.startswith(f"| {name} ") or f"**{name}**" in r for r in rows), name
    for target in push_pipeline.TARGETS:
        row = next(r for r in rows if r.startswith(f"| {target.text} |"))
        assert "**MET**: " in row or "**MISSED**: " in row
    for b in push_pipeline.SWEEP_BUFFERS:
        assert any(row.startswith(f"| {b} |") for row in rows), b


def test_pull_boundaries_row_says_not_available_without_flow_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(push_pipeline, "has_buffer", lambda: False)
    names = [c.name for c in push_pipeline.contenders(TINY)]
    assert push_pipeline.PULL_BOUNDARIES not in names
    sweep_names = [c.name for c in push_pipeline.sweep_contenders(TINY)]
    assert not any(n.startswith("pull, buffer(") for n in sweep_names)
    m = push_pipeline.measure_pipeline(TINY, rounds=1, warmup=0)
    text = push_pipeline.render(m, None, TINY)
    row = next(r for r in _rows(text) if r.startswith(f"| {push_pipeline.PULL_BOUNDARIES} "))
    assert "not available" in row


def test_plot_is_written(tmp_path: Path) -> None:
    sweep = push_pipeline.measure_sweep(100, rounds=1)
    path = push_pipeline.plot_sweep(sweep, tmp_path / "plot.png", fused_rate=1e6)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_plot_goes_where_the_tables_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out DIR`` puts the plot in DIR too, never into this checkout's docs."""
    monkeypatch.setattr(push_pipeline, "N_QUICK", 60)
    monkeypatch.setattr(push_pipeline, "ROUNDS_QUICK", 1)
    monkeypatch.setattr(push_pipeline, "SWEEP_ROUNDS_QUICK", 1)
    written: list[Path] = []
    draw = push_pipeline.plot_sweep

    def spy(sweep: object, path: Path, **kw: object) -> Path:
        written.append(path)
        return draw(sweep, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(push_pipeline, "plot_sweep", spy)
    text = push_pipeline.WORKLOAD.run(True, tmp_path).markdown
    assert written == [tmp_path / push_pipeline.PLOT_NAME]
    assert (tmp_path / push_pipeline.PLOT_NAME).read_bytes().startswith(b"\x89PNG")
    assert f"]({push_pipeline.PLOT_NAME})" in text


def _cell(row: str) -> str:
    """The first cell of a Markdown table row."""
    return row.split(" | ")[0].removeprefix("| ")


def _add_up(formula: str) -> int:
    """``"3 x 4 + 3 + 1"`` -> 16: the bound's formula as the table shows it."""
    total = 0
    for term in formula.split(" + "):
        factors = [int(f) for f in term.split(" x ")]
        total += factors[0] * factors[1] if len(factors) == 2 else factors[0]
    return total


def test_push_memory_measures_a_peak_and_computes_the_bounds() -> None:
    size = 64 * 1024
    m = push_memory.measure_memory(6, repeats=1, size=size, pause=0.0)
    names = m.names
    last = push_memory.BUFFERS[-1]
    for b in push_memory.BUFFERS:
        for name in (
            f"push asyncio, buffer {b}",
            f"push threads, buffer {b}",
            f"push asyncio, buffer {b}, async for + await",
        ):
            assert name in names
    for runtime in ("asyncio", "threads"):
        assert f"push {runtime}, buffer {last}, foreach_async" in names
    window = push_memory.WINDOW
    boundaries = f"pull, buffer({window}) boundaries"
    assert {"pull, fused", boundaries, f"{boundaries}, foreach_async"} <= set(names)
    assert m.footprint >= size

    plan = Flow.from_iterable([]).map(push_memory.touch).filter(push_memory.keep).plan
    stages = len(plan.names())
    for r in m.results:
        assert r.peak_bytes > 0, r.case.name
        assert r.bound_bytes == r.case.bound_items * m.footprint
        # the formula shown next to the bound adds up to it
        assert _add_up(r.case.bound_text) == r.case.bound_items, r.case.name
        assert r.case.note in push_memory.NOTES, r.case.name
    # push: sum(buffers) + 2 * stages, as the engine documents it
    for b in push_memory.BUFFERS:
        for engine in (PushEngine(buffer=b), PushEngine(buffer=b, runtime="threads")):
            bound = engine.in_flight_bound(plan)
            assert bound == 3 * b + 2 * stages
            assert m[f"push {engine.runtime}, buffer {b}"].case.bound_items == bound
        assert m[f"push asyncio, buffer {b}, async for + await"].case.bound_items == (
            3 * b + 2 * stages
        )
    for runtime in ("asyncio", "threads"):
        assert m[f"push {runtime}, buffer {last}, foreach_async"].case.bound_items == (
            3 * last + 2 * stages
        )
    # pull: one item per (non-boundary) stage, n per buffer(n) boundary, the consumer's item
    assert m["pull, fused"].case.bound_items == stages + 1
    bplan = (
        Flow.from_iterable([])
        .buffer(window)
        .map(push_memory.touch)
        .buffer(window)
        .filter(push_memory.keep)
        .plan
    )
    assert push_memory.pull_in_flight_bound(bplan) == stages + 2 * window + 1
    assert m[boundaries].case.bound_items == stages + 2 * window + 1
    assert m[f"{boundaries}, foreach_async"].case.bound_items == stages + 2 * window + 1

    text = push_memory.render(m)
    assert text.startswith("## ")
    rows = _rows(text)
    for r in m.results:
        row = next(row for row in rows if _cell(row) == r.case.name)
        assert "**MET**: " in row or "**MISSED**: " in row
        assert row.endswith(f"| ({r.case.note}) |")
        assert push_memory.NOTES[r.case.note] in text


def test_memory_bound_is_a_ceiling_met_under_it_and_missed_above() -> None:
    def result(bound: int, held: int) -> push_memory.MemoryResult:
        case = push_memory.MemoryCase("c", "code", bound, "text", lambda sink: None, "a")
        return push_memory.MemoryResult(case, held * 1000 + 10, 1000, 1)

    under, exact, above = result(10, 4), result(10, 10), result(10, 12)
    assert under.status == "MET"  # staying under the ceiling is the goal
    assert exact.status == "MET"
    assert above.status == "MISSED"
    assert under.target.verdict == "MET: peak 4 items (target: at most 10 items)"
    assert above.target.figure == "peak 12 items, 2 above the bound"
