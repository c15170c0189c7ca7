"""Smoke tests of the benchmark package: it runs, its tables are complete, wrong work is caught.

No timing is asserted anywhere: speed targets are reported by ``make bench``, never tested.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from comparisons import workloads
from comparisons.__main__ import main
from comparisons.harness import (
    Contender,
    Measurement,
    ResultMismatch,
    Target,
    Timing,
    measure,
    paired_ratio,
    progress,
    reporting_progress,
    speed,
)
from comparisons.workloads import sync_chain

TINY = 2000


def test_sync_chain_table_lists_every_contender_and_target() -> None:
    m = sync_chain.measure_chain(TINY, rounds=1)
    n, k = sync_chain.sizes(TINY)
    names = [c.name for c in sync_chain.contenders(n, k)]
    assert m.names == tuple(names)
    assert {
        sync_chain.BASELINE,
        sync_chain.FUSED,
        sync_chain.ITERATED,
        sync_chain.UNFUSED,
        sync_chain.RX,
    } <= set(names)
    table = sync_chain.render(m, TINY)
    assert table.startswith("## ")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for name in names:
        assert any(name in row for row in rows), name
    for target in sync_chain.TARGETS:
        row = next(r for r in rows if r.startswith(f"| {target.text} |"))
        assert "**MET**: " in row or "**MISSED**: " in row


def test_sync_chain_consumed_counts_the_items_islice_pulls() -> None:
    n, k = sync_chain.sizes(TINY)
    pulled = 0

    def counting() -> Iterator[int]:
        nonlocal pulled
        for x in range(n):
            pulled += 1
            yield x

    expected = list(itertools.islice(filter(sync_chain.p, map(sync_chain.f, counting())), k))
    assert len(expected) == k
    assert sync_chain.consumed(n, k) == pulled


def test_measure_catches_a_contender_doing_the_wrong_work() -> None:
    n, k = sync_chain.sizes(TINY)

    def one_short() -> list[int]:  # looks like the chain, but takes K - 1 items
        return list(itertools.islice(filter(sync_chain.p, map(sync_chain.f, range(n))), k - 1))

    contenders = [*sync_chain.contenders(n, k), Contender("wrong", one_short)]
    with pytest.raises(ResultMismatch, match=r"'wrong'.*items, expected") as info:
        measure(contenders, baseline=sync_chain.BASELINE, items=n, rounds=1, warmup=0)
    assert info.value.contender == "wrong"


def test_measure_checks_every_round_not_only_the_first() -> None:
    calls = 0

    def drifts() -> list[int]:
        nonlocal calls
        calls += 1
        return [1, 2, 3] if calls < 3 else [1, 2, 4]

    contenders = [Contender("base", lambda: [1, 2, 3]), Contender("drifts", drifts)]
    with pytest.raises(ResultMismatch, match="item 2 is 4, expected 3"):
        measure(contenders, baseline="base", items=3, rounds=5, warmup=1)


def test_measure_rejects_bad_arguments() -> None:
    c = Contender("a", lambda: 1)
    with pytest.raises(ValueError, match="unique"):
        measure([c, c], baseline="a", items=1, rounds=1)
    with pytest.raises(ValueError, match="baseline"):
        measure([c], baseline="b", items=1, rounds=1)
    with pytest.raises(ValueError, match="rounds"):
        measure([c], baseline="a", items=1, rounds=0)


def _fake(samples: dict[str, tuple[int, ...]]) -> Measurement:
    timings = tuple(
        Timing(name, "", "", s, 10, paired_ratio(s, samples["base"]), name == "base")
        for name, s in samples.items()
    )
    return Measurement(timings, "base", 10, 3, 1)


def test_ratios_are_paired_by_round() -> None:
    # The machine slows down 2x in round 1 and 3x in round 2: each contender's own median
    # moves, but within a round "fast" always takes a quarter of "base"'s time.
    m = _fake({"base": (100, 200, 300), "fast": (25, 50, 75), "noisy": (400, 100, 150)})
    assert m["fast"].ratio == 0.25
    assert m.ratio("base", "fast") == 4.0
    assert m["noisy"].ratio == 0.5  # median of 4.0, 0.5, 0.5
    assert m["base"].ns_per_item == 20.0
    with pytest.raises(ValueError, match="equal"):
        paired_ratio((1, 2), (1,))


def test_targets_report_met_not_met_and_not_measured() -> None:
    m = _fake({"base": (90, 100, 110), "slow": (200, 250, 300), "fast": (20, 25, 30)})
    results = [
        Target("a", "fast", "base", "within", 1.3).evaluate(m),
        Target("b", "slow", "base", "within", 1.3).evaluate(m),
        Target("c", "fast", "slow", "faster", 3.0).evaluate(m),
        Target("d", "base", "fast", "faster", 3.0).evaluate(m),
        Target("e", "absent", "base", "within", 1.3).evaluate(m),
    ]
    assert [r.status for r in results] == ["MET", "MISSED", "MET", "MISSED", "NOT MEASURED"]
    assert results[1].verdict == "MISSED: 2.50x the time (target: at most 1.3x the time)"
    assert results[2].figure == "10.00x faster"


def test_a_speed_up_below_one_is_reported_as_slower() -> None:
    m = _fake({"base": (90, 100, 110), "fast": (20, 25, 30)})
    r = Target("d", "base", "fast", "faster", 3.0).evaluate(m)
    assert r.status == "MISSED"
    assert r.figure == "4.00x slower"
    assert "faster" not in r.figure
    assert r.verdict == "MISSED: 4.00x slower (target: at least 3x faster)"
    assert speed(1.0) == "as fast (1.00x)"


def test_steps_reach_a_progress_listener_and_stop_after_it_leaves() -> None:
    steps: list[str] = []
    contenders = [Contender("base", lambda: [1]), Contender("other", lambda: [1])]
    with reporting_progress(steps.append):
        measure(contenders, baseline="base", items=1, rounds=2, warmup=1)
    assert steps[0] == "base, expected output"
    assert "other, warm-up 1/1" in steps
    assert "other, round 2/2" in steps
    assert len(steps) == 1 + 2 + 4
    progress("nobody hears this")
    assert len(steps) == 7


def test_registry_finds_every_workload_module() -> None:
    assert "sync_chain" in workloads.names()
    for w in workloads.load_all():
        assert callable(w.run)
    with pytest.raises(KeyError):
        workloads.load("no_such_workload")


def test_cli_list_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list", "--out", str(tmp_path / "out")]) == 0
    assert "sync_chain" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_cli_run_prints_plain_progress_and_a_summary_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_chain, "N_QUICK", TINY)
    monkeypatch.setattr(sync_chain, "ROUNDS_QUICK", 1)
    out = tmp_path / "results"
    assert main(["--quick", "--only", "sync_chain", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].startswith("rxpipe benchmarks, quick mode: 1 workload")
    assert lines[1].startswith("[1/1] sync_chain ...")
    assert "Summary (quick mode" in printed
    assert "the time of the best peer" in printed
    for target in sync_chain.TARGETS:
        assert any(target.text.replace("`", "") in line for line in lines), target.text
    assert lines[-1] == f"Full tables and plots: {out.resolve()}"
    assert "| contender |" not in printed  # the tables go to files, not to the terminal
    assert sorted(p.name for p in out.iterdir()) == ["environment.md", "sync_chain.md"]
    assert (out / "sync_chain.md").read_text(encoding="utf-8").startswith("## ")
