"""The live view (``progress=``, :class:`rxpipe.telemetry.LiveView`): what its table says,
how it measures items per second, and that its thread ends with the run, on every engine.

Nothing here asserts a duration: rates are checked on a fake clock, and "while the run goes"
is a pipeline that waits on an event the test sets.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import sys
import threading
import time
from collections.abc import Callable

import pytest
from rich.console import Console

from rxpipe import Flow, Report
from rxpipe._core.stats import StageStats
from rxpipe.engines import Engine
from rxpipe.telemetry import LiveView
from rxpipe.telemetry.live import stats_reader

pytestmark = pytest.mark.timeout(60)

COLUMNS = ("stage", "in", "out", "items/s", "errors", "lost", "queue")


def _view(**kwargs: object) -> tuple[LiveView, io.StringIO]:
    out = io.StringIO()
    return LiveView(console=Console(file=out, width=160), **kwargs), out  # type: ignore[arg-type]


def _rows(view: LiveView, *, sample: bool = False) -> dict[str, dict[str, str]]:
    """The view's table now, as ``{stage: {column: cell}}``."""
    out = io.StringIO()
    Console(file=out, width=160).print(view.table(sample=sample))
    return _parse(out.getvalue())


def _parse(text: str) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        rows[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    return rows


def _live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rxpipe-live"]


def _boom(x: int) -> int:
    if x == 14:
        raise ValueError("boom")
    return x


def _wait_for(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _flow() -> Flow[int]:
    return (
        Flow.range(200)
        .map(lambda x: x * 2, name="double")
        .filter(lambda x: x % 3 != 0, name="thirds")
        .map(_boom, name="careful", errors="skip")
    )


def _assert_matches(rows: dict[str, dict[str, str]], report: Report) -> None:
    assert list(rows) == list(report.stages)  # every stage, in order
    for name, st in report.stages.items():
        row = rows[name]
        assert row["out"] == f"{st.emitted:,}"
        assert row["in"] == ("-" if name == next(iter(report.stages)) else f"{st.received:,}")
        assert row["errors"] == f"{st.errored:,}"
        assert row["lost"] == f"{st.lost:,}"


# -- what the table says -----------------------------------------------------------------------
def test_final_table_names_every_stage_with_the_reports_counts(engine: Engine) -> None:
    view, out = _view()
    report = _flow().run(engine=engine, progress=view)
    assert report.stages["careful"].errored == 1
    _assert_matches(_rows(view), report)
    printed = _parse(out.getvalue())  # not a terminal: rich printed the final table once
    _assert_matches(printed, report)
    assert out.getvalue().count("completed in") == 1
    assert f"{report.delivered:,} delivered" in out.getvalue()
    assert not _live_threads()


def test_progress_true_prints_the_final_table_on_stdout(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _flow().run(engine=engine, progress=True)
    printed = capsys.readouterr().out
    _assert_matches(_parse(printed), report)
    # regression: rich left the table's last line open, so the user's next print joined it
    assert printed.endswith("\n")
    assert not printed.endswith("\n\n")
    assert not _live_threads()


def test_run_async_and_a_failed_run(engine: Engine) -> None:
    view, out = _view()
    report = asyncio.run(_flow().run_async(engine=engine, progress=view))
    _assert_matches(_rows(view), report)
    with pytest.raises(ValueError, match="boom"):
        Flow.range(50).map(_boom).run(engine=engine, progress=view)
    assert "failed in" in out.getvalue()
    assert not _live_threads()


def test_queue_depth_is_a_dash_where_nothing_is_measured() -> None:
    view, _ = _view()
    Flow.range(10).map(lambda x: x).run(engine="pull", progress=view)
    assert {row["queue"] for row in _rows(view).values()} == {"-"}


def test_live_rows_while_the_run_goes(engine: Engine) -> None:
    """Counts move while the run goes, and a buffer (a push channel) shows its depth."""
    gate = threading.Event()

    def held(x: int) -> int:
        if x >= 20:
            gate.wait()
        return x

    view, _ = _view(display=False)  # no thread: the test renders it
    p = (
        Flow.range(100)
        .map(lambda x: x, name="first")
        .buffer(8)
        .map(held, name="held")
        .start(engine=engine, progress=view)
    )
    try:
        # held waits at item 20: at least 21 in (the asyncio runtime takes ready items in
        # batches), at most 20 out, however the engine runs it
        _wait_for(lambda: int(_rows(view, sample=True)["held"]["in"]) >= 21)
        rows = _rows(view, sample=True)
        assert list(rows) == ["range", "first", "buffer", "held"]
        assert int(rows["held"]["out"]) <= 20
        assert int(rows["first"]["out"]) >= 21
        assert rows["range"]["queue"] == "-"  # a source has no input queue
        assert re.fullmatch(r"\d+/8", rows["held"]["queue"])  # the buffer before it
    finally:
        gate.set()
    report = p.join()
    _assert_matches(_rows(view), report)


# -- items per second ------------------------------------------------------------------------------
def test_items_per_second_over_the_window_on_a_fake_clock() -> None:
    now = [100.0]
    view, _ = _view(display=False, window=2.0, clock=lambda: now[0])
    stats = [StageStats("src"), StageStats("work")]
    token = view.attach(["src", "work"], stats_reader(stats), dict, "test")
    assert view.rates() == {"src": None, "work": None}  # one sample: nothing to divide yet
    for _ in range(4):  # 0.5 s apart: src emits 100 per step, work 50
        now[0] += 0.5
        stats[0].emitted += 100
        stats[1].emitted += 50
        view.sample()
    assert view.rates() == {"src": 200.0, "work": 100.0}
    now[0] += 0.5  # a stall: the window (2 s) forgets the oldest samples
    view.sample()
    now[0] += 0.5
    view.sample()
    rates = view.rates()
    assert rates["src"] == pytest.approx(100 * 2 / 2.0)  # 2 steps of 100 in the last 2 s
    row = _rows(view)["src"]
    assert row["items/s"] == "100"
    view.finish(token, None, "completed")
    assert _rows(view)["src"]["items/s"] == "133"  # the run's mean: 400 in 3 s


# -- the thread ends with the run ------------------------------------------------------------------
def _endless() -> Flow[int]:
    return Flow.from_iterable(itertools.count()).map(lambda x: x + 1)


@pytest.mark.parametrize("how", ["cancel", "drain", "shutdown"])
def test_a_started_pipelines_view_ends_with_it(engine: Engine, how: str) -> None:
    view, out = _view()
    got: list[int] = []
    p = _endless().start(engine=engine, on_item=got.append, progress=view)
    _wait_for(lambda: len(got) >= 50)
    assert len(_live_threads()) == 1
    report = {"cancel": p.cancel, "drain": p.drain, "shutdown": lambda: p.shutdown(1.0)}[how]()
    assert not _live_threads()
    state = "cancelled" if how == "cancel" else p.state
    assert f"{state} in" in out.getvalue()
    _assert_matches(_rows(view), report)


def test_a_started_pipeline_that_fails(engine: Engine) -> None:
    view, out = _view()
    p = Flow.range(100).map(_boom).start(engine=engine, progress=view)
    with pytest.raises(ValueError, match="boom"):
        p.join()
    assert not _live_threads()
    assert "failed in" in out.getvalue()


def test_start_async(engine: Engine) -> None:
    view, out = _view()

    async def main() -> Report:
        got: list[int] = []
        p = await _endless().start_async(engine=engine, on_item=got.append, progress=view)
        while len(got) < 50:  # noqa: ASYNC110 (on_item is a plain callback)
            await asyncio.sleep(0.001)
        return await p.cancel_async()

    report = asyncio.run(main())
    assert not _live_threads()
    assert "cancelled in" in out.getvalue()
    _assert_matches(_rows(view), report)


# -- watch(): every terminal ----------------------------------------------------------------------
def test_watch_shows_runs_of_any_terminal(engine: Engine) -> None:
    view, out = _view()
    with view.watch():
        assert _flow().to_list(engine=engine) == [x for x in _flow().to_list()]
        rows = _rows(view)
        assert list(rows) == ["range", "double", "thirds", "careful"]
        with _flow().iter(engine=engine) as items:
            first = next(iter(items))
        assert first == 2
    assert "stopped in" in out.getvalue()
    before = out.getvalue()
    assert Flow.range(5).to_list(engine=engine) == list(range(5))  # outside: not shown
    assert out.getvalue() == before
    assert not _live_threads()


def test_pull_runs_stay_fused_when_off() -> None:
    """Off costs nothing: the engine is the caller's, untouched."""
    from rxpipe import PullEngine

    engine = PullEngine()
    Flow.range(10).map(lambda x: x).run(engine=engine)
    assert engine.fuse


# -- wrong calls ---------------------------------------------------------------------------------
@pytest.fixture
def no_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "rich" or name.startswith("rich."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)


@pytest.mark.usefixtures("no_rich")
def test_progress_without_rich_says_which_extra_before_running() -> None:
    seen: list[int] = []
    flow = Flow.range(3).map(seen.append)
    with pytest.raises(ImportError, match=r"pip install rxpipe\[progress\]"):
        flow.run(progress=True)
    with pytest.raises(ImportError, match=r"rxpipe\[progress\]"):
        flow.start(progress=True)
    with pytest.raises(ImportError, match=r"rxpipe\[progress\]"):
        asyncio.run(flow.run_async(progress=True))
    assert seen == []
    assert flow.run().delivered == 3  # off: rich is never imported


@pytest.mark.parametrize("bad", ["yes", 1, None, object()])
def test_bad_progress_values_are_a_type_error_at_call_time(bad: object) -> None:
    seen: list[int] = []
    flow = Flow.range(3).map(seen.append)
    with pytest.raises(TypeError, match="progress"):
        flow.run(progress=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        flow.start(progress=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        asyncio.run(flow.run_async(progress=bad))  # type: ignore[arg-type]

    async def start_async() -> None:
        await flow.start_async(progress=bad)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="progress"):
        asyncio.run(start_async())
    assert seen == []
