"""Smoke tests of the workloads that test the guide's claims, on tiny sizes.

No timing is asserted; what is checked: every contender runs and returns the right output
(the harness compares them every round), the tables name every row, the bounds and models
compute what they say, and plots are written or skipped with a reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comparisons import plots, probe, workloads
from comparisons.harness import Contender, ResultMismatch, measure
from comparisons.workloads import bottleneck, buffer_sizing, fan_scale, image_memory


def test_claim_workloads_are_registered() -> None:
    names = set(workloads.names())
    assert {"fan_scale", "buffer_sizing", "bottleneck", "image_memory"} <= names
    for name in ("fan_scale", "buffer_sizing", "bottleneck", "image_memory"):
        assert workloads.load(name).name == name


def test_fan_in_and_out_run_every_contender_with_the_right_output(tmp_path: Path) -> None:
    fin = fan_scale.measure_fanin((3, 20), 60, rounds={3: 1, 20: 1})
    fout = fan_scale.measure_fanout((3, 20), {3: 9, 20: 40}, rounds={3: 1, 20: 1})
    assert fin.timings[3].names == tuple(c.name for c in fan_scale.fanin_contenders(3, 60))
    assert fout.timings[20].names == tuple(c.name for c in fan_scale.fanout_contenders(20, 40))
    for k in (3, 20):
        for usage in (*fin.usage[k].values(), *fout.usage[k].values()):
            assert usage.peak_bytes is not None
            assert usage.peak_bytes > 0
            assert usage.threads >= 1
    # k threads really run at once in the hand-written threads fan-out
    assert fout.usage[20][fan_scale.FANOUT_THREADQ].threads >= 20
    text = fan_scale.render(fin, fout, fan_scale.plot(fin, fout, tmp_path))
    assert "](fan_scale.png)" in text or "plot not drawn" in text
    assert len(fan_scale.targets(fin, fout)) == 4
    for name in (fan_scale.FANIN_PULL, fan_scale.FANOUT_PULL, fan_scale.FANOUT_RX):
        assert name in text


def test_fan_contenders_return_the_sorted_items() -> None:
    rs = fan_scale._ranges(4, 40)
    expected = sorted(fan_scale.f(x) for x in range(40))
    assert asyncio.run(fan_scale.asyncio_fanin(rs)) == expected
    assert fan_scale.thread_fanin(rs) == expected
    assert fan_scale.rx_fanin(rs) == expected
    assert fan_scale.thread_fanout(list(range(12)), 4) == list(range(12))


def test_profile_traces_memory_only_when_asked() -> None:
    def run() -> list[bytearray]:
        probe.sample()
        return [bytearray(1 << 16)]

    traced, _ = probe.profile(run)
    untraced, result = probe.profile(run, memory=False)
    assert traced.peak_bytes is not None
    assert traced.peak_bytes >= 1 << 16
    assert untraced.peak_bytes is None
    assert untraced.peak_mib is None
    assert untraced.threads >= 1
    assert isinstance(result, list)


def test_tandem_model_gains_from_a_buffer_and_saturates() -> None:
    lat = buffer_sizing.latencies(200)
    assert lat.median == pytest.approx(buffer_sizing.MEDIAN_S)
    assert 6 < lat.p99 / lat.median < 16
    spans = [buffer_sizing.tandem_makespan(lat, b) for b in buffer_sizing.BUFFERS]
    assert spans == sorted(spans, reverse=True)  # more buffer never slower in the model
    assert spans[-1] >= len(lat.bursty) * lat.steady  # the steady stage is the floor
    assert buffer_sizing.suggested_buffer(lat) == round(2 * lat.p99 / lat.median)


def test_buffer_sizing_runs_every_buffer_with_the_right_output(tmp_path: Path) -> None:
    m, lat = buffer_sizing.measure_buffers(6, rounds=1)
    for b in buffer_sizing.BUFFERS:
        assert buffer_sizing.push_threads_name(b) in m
        assert buffer_sizing.push_asyncio_name(b) in m
    assert buffer_sizing.pull_name(1) in m
    assert buffer_sizing.pull_name(0) not in m
    assert buffer_sizing.asyncio_tandem is not None
    assert asyncio.run(buffer_sizing.asyncio_tandem(6, lat, 1)) == list(range(6))
    assert buffer_sizing.thread_tandem(6, lat, 2) == list(range(6))
    line = buffer_sizing.plot(m, lat, tmp_path, None)
    text = buffer_sizing.render(m, lat, line, None)
    assert f"= **{buffer_sizing.suggested_buffer(lat)}**" in text
    assert "zero-overhead model" in text


def test_bottleneck_io_counts_where_the_queue_builds() -> None:
    bottleneck.LAST.clear()
    io = bottleneck.measure_io(12, rounds=1)
    assert set(io) == set(bottleneck.WORKERS)
    assert bottleneck.SLOW_ONLY in io[1]
    for n in bottleneck.WORKERS:
        q = bottleneck.LAST[bottleneck.push_name(n)]
        assert q.parsed == q.started == q.finished == q.stored == 12
        assert len(q.before) == len(q.after) == 12
        assert min(q.after) >= 0
    text = bottleneck.render(io, {})
    assert "queue before / after" in text


def test_bottleneck_cpu_contenders_agree_on_a_thread_pool() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    from comparisons.workloads.cpu_fanout import cpu_work

    work = partial(cpu_work, loops=10)
    items = list(range(20))
    with ThreadPoolExecutor(2) as pool:
        m = measure(
            bottleneck.cpu_contenders(items, 2, pool, work),
            baseline=bottleneck.CPU_BASELINE,
            items=20,
            rounds=1,
        )
    assert bottleneck.cpu_name(2) in m


def test_image_memory_stays_under_the_documented_bounds(tmp_path: Path) -> None:
    size = 1 << 16
    m = image_memory.measure_images(30, repeats=1, size=size, pause=0.001)
    assert len(m.results) == 3 * len(image_memory.BUFFERS) + 1
    for r in m.results:
        assert r.target.met, r.case.name
    push16 = next(r for r in m.results if r.case.name == "push asyncio, buffer 16")
    assert push16.case.bound == 5 * 16 + 2 * 5
    text = image_memory.render(m, image_memory.plot(m, tmp_path))
    assert "guide: K x B" in text


def test_image_memory_catches_lost_images(monkeypatch: pytest.MonkeyPatch) -> None:
    real = image_memory.cases

    def lossy(items: int, size: int, pause: float) -> list[image_memory.Case]:
        first = real(items, size, pause)[0]
        return [image_memory.Case(first.name, first.engine, 1, 1, "", lambda: 0)]

    monkeypatch.setattr(image_memory, "cases", lossy)
    with pytest.raises(ResultMismatch):
        image_memory.measure_images(3, repeats=1, size=16, pause=0.0)


def test_plots_are_skipped_with_a_reason_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    result = plots.line_plot(
        tmp_path / "x.png", [("t", {"a": [(1.0, 2.0)]})], xlabel="x", ylabel="y"
    )
    assert result.path is None
    assert "matplotlib" in result.reason
    assert "plot not drawn" in plots.plot_markdown(result, "alt")
    assert not (tmp_path / "x.png").exists()


def test_plot_is_written_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = plots.line_plot(
        tmp_path / "x.png",
        [("t", {"a": [(1.0, 2.0), (2.0, None), (4.0, 3.0)]})],
        xlabel="x",
        ylabel="y",
        markers=[plots.Marker(2.0, "m")],
        symlog_x=True,
    )
    assert result.path is not None
    assert result.path.read_bytes().startswith(b"\x89PNG")
    assert plots.plot_markdown(result, "alt") == "![alt](x.png)"


def test_a_wrong_fan_out_contender_is_caught() -> None:
    good = fan_scale.fanout_contenders(2, 4)[0]
    bad = Contender("bad", lambda: [0, 1, 2])
    with pytest.raises(ResultMismatch):
        measure([good, bad], baseline=good.name, items=4, rounds=1)
