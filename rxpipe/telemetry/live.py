"""A live view of long runs: items per second per stage and queue depth, drawn with ``rich``.

``flow.run(progress=True)`` (and ``run_async``, ``start``, ``start_async``) shows a table that
refreshes a few times a second while the run goes, and stays printed once when it ends. A
:class:`LiveView` made by hand can be passed as ``progress=`` instead, or made with
``display=False`` and rendered inside a ``rich`` display of one's own (it is a ``rich``
renderable); ``with view.watch():`` shows every run opened in the block, whatever terminal
opens it (``to_list()``, ``for x in flow``...).

The view reads what every run counts anyway (the stages' counters, the push engine's channel
statistics) and the stages' input queues, from a thread of its own (``rxpipe-live``), never
from the pipeline's hot path; the thread ends with the run. ``rich`` is an optional extra
(``pip install rxpipe[progress]``), imported only when a view is made.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, final

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.table import Table

    from rxpipe._core.stats import StageStats
    from rxpipe.telemetry.report import Report

__all__ = ("Counts", "CountsReader", "LiveView", "QueueReader", "check_progress", "watching")

#: ``{stage index: (items held, capacity)}`` of the stages' input queues, read now.
QueueReader = Callable[[], dict[int, tuple[int, int]]]
#: One stage's ``(received, emitted, errored, lost)`` as far as the run counted them.
Counts = tuple[int, int, int, int]
#: Every stage's :data:`Counts` now, in pipeline order.
CountsReader = Callable[[], Sequence[Counts]]


def stats_reader(stats: Sequence[StageStats]) -> CountsReader:
    """Read the stages' own counters (engines that count as items move)."""
    return lambda: [(st.received, st.emitted, st.errored, st.lost) for st in stats]


#: What ``progress=True`` without ``rich`` says.
INSTALL_HINT: Final = "progress=True needs rich: pip install rxpipe[progress]"

#: The view that :meth:`LiveView.watch` set for this thread or task (None: none).
_watching: ContextVar[LiveView | None] = ContextVar("rxpipe_live_view", default=None)


def watching() -> LiveView | None:
    """The view of a ``with view.watch():`` block around this code, if any."""
    return _watching.get()


def check_progress(progress: object) -> LiveView | None:
    """Turn a terminal's ``progress=`` into a view (None: off), checked at call time.

    Raises:
        ImportError: ``progress=True`` and ``rich`` is not installed (names the extra).
        TypeError: neither a bool nor a :class:`LiveView`.
    """
    if progress is False:
        return None
    if progress is True:
        return LiveView()
    if isinstance(progress, LiveView):
        return progress
    raise TypeError(
        f"progress must be True, False or a rxpipe.telemetry.LiveView, got {progress!r}"
    )


def _count(n: int) -> str:
    return f"{n:,}"


def _rate(per_second: float | None) -> str:
    if per_second is None:
        return "-"
    if per_second >= 100:
        return f"{per_second:,.0f}"
    return f"{per_second:,.1f}"


@final
class _Watched:
    """One run as the view sees it: its counters, its queues, and the samples taken."""

    __slots__ = (
        "counts",
        "depths",
        "engine",
        "names",
        "peaks",
        "queues",
        "read",
        "report",
        "samples",
        "started",
        "state",
    )

    def __init__(
        self,
        names: Sequence[str],
        read: CountsReader,
        queues: QueueReader,
        engine: str,
        started: float,
    ) -> None:
        self.names = tuple(names)
        self.read = read
        self.counts: Sequence[Counts] = [(0, 0, 0, 0)] * len(self.names)
        self.queues = queues
        self.engine = engine
        self.started = started
        #: ``(time, emitted per stage)``, oldest first, within the window.
        self.samples: deque[tuple[float, tuple[int, ...]]] = deque()
        #: The last queue reading, and the fullest each queue was seen.
        self.depths: dict[int, tuple[int, int]] = {}
        self.peaks: dict[int, tuple[int, int]] = {}
        self.report: Report | None = None
        self.state = "running"


@final
class LiveView:
    """The live table of a run: per stage, items in and out, items per second (over the
    last ``window`` seconds), errors, lost items and input-queue depth, and the elapsed time.

    Pass it as ``progress=`` to ``run``/``run_async``/``start``/``start_async``, or wrap code
    in ``with view.watch():`` to show every run opened there. A view shows one run at a time
    (the last one opened); after the run it shows the final counts, taken from the
    :class:`~rxpipe.Report`.

    Args:
        console: the ``rich`` console to draw on (default: a new one, on stdout).
        display: draw itself with a ``rich.live.Live`` while a run goes, refreshed by a
            thread of its own (``rxpipe-live``) that ends with the run, and print the final
            table once when it ends. ``False``: draw nothing; the view is a ``rich``
            renderable that a display of one's own shows (sampled whenever it is rendered).
            On a console that is not a terminal, ``rich`` prints only the final table.
        refresh_per_second: how often the display is redrawn (and the counters sampled).
        window: the seconds over which items per second are measured.
        clock: the time source (seconds, monotonic); a test can pass a fake one.

    Raises:
        ImportError: ``rich`` is not installed (``pip install rxpipe[progress]``).
    """

    __slots__ = (
        "_clock",
        "_console",
        "_current",
        "_display",
        "_interval",
        "_live",
        "_lock",
        "_stop",
        "_thread",
        "_window",
    )

    def __init__(
        self,
        *,
        console: Console | None = None,
        display: bool = True,
        refresh_per_second: float = 4.0,
        window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import rich.console
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        if not refresh_per_second > 0 or not window > 0:
            raise ValueError(
                f"refresh_per_second and window must be > 0, got {refresh_per_second}, {window}"
            )
        self._console = console if console is not None else rich.console.Console()
        self._display = display
        self._interval = 1.0 / refresh_per_second
        self._window = float(window)
        self._clock = clock
        self._lock = threading.Lock()
        self._current: _Watched | None = None
        self._live: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        run = self._current
        return f"LiveView({'idle' if run is None else f'{run.engine}, {run.state}'})"

    @property
    def console(self) -> Console:
        return self._console

    @contextlib.contextmanager
    def watch(self) -> Iterator[LiveView]:
        """Show every run opened inside the block (in this thread, or this task and the
        tasks it creates) in this view, whatever terminal opens it."""
        token = _watching.set(self)
        try:
            yield self
        finally:
            _watching.reset(token)

    # -- what the runs call (through rxpipe.engines.live) ---------------------------------
    def attach(
        self, names: Sequence[str], read: CountsReader, queues: QueueReader, engine: str
    ) -> object:
        """Show a run that starts now: its stages' names, how to read their counts and
        their input queues; returns the token to :meth:`finish` it with."""
        watched = _Watched(names, read, queues, engine, self._clock())
        with self._lock:
            self._current = watched
            self._sample(watched)
        if self._display:
            self._start_display()
        return watched

    def finish(self, token: object, report: Report | None, state: str = "completed") -> None:
        """The run of ``token`` ended: show its Report's counts (idempotent)."""
        if not isinstance(token, _Watched):
            return
        with self._lock:
            if token.report is not None or token.state != "running":
                return
            token.report = report
            token.state = state
            last = self._current is token
        if last and self._display:
            self._stop_display()

    # -- the display -------------------------------------------------------------------------
    def _start_display(self) -> None:
        from rich.live import Live

        with self._lock:
            if self._live is not None:
                return
            self._stop.clear()
            live = Live(
                self,
                console=self._console,
                auto_refresh=False,
                refresh_per_second=1.0 / self._interval,
            )
            self._live = live
        live.start(refresh=True)
        thread = threading.Thread(
            target=self._refresh, args=(live,), name="rxpipe-live", daemon=True
        )
        self._thread = thread
        thread.start()

    def _stop_display(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            live, self._live = self._live, None
        if live is not None:
            live.stop()  # the last refresh: the final table stays printed
            console = live.console
            if not console.is_terminal and not console.is_jupyter:
                console.line()  # rich leaves the last line open when it only prints the end

    def _refresh(self, live: Any) -> None:
        while not self._stop.wait(self._interval):
            self.sample()  # also where rich draws nothing until the end (not a terminal)
            live.refresh()

    # -- sampling and rendering --------------------------------------------------------------
    def _sample(self, run: _Watched) -> None:
        """Take one sample of ``run`` now (under the lock)."""
        now = self._clock()
        samples = run.samples
        try:
            run.counts = run.read()
        except Exception:  # a run being torn down: keep what was read before
            pass
        samples.append((now, tuple(c[1] for c in run.counts)))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()
        try:
            queues = run.queues()
        except Exception:  # a run being torn down: keep what was read before
            queues = {}
        for index, (size, capacity) in queues.items():
            peak = run.peaks.get(index)
            if peak is None or size >= peak[0]:
                run.peaks[index] = (size, capacity)
        run.depths = queues

    def rates(self) -> dict[str, float | None]:
        """Items per second each stage emitted over the window (None: not measured yet)."""
        with self._lock:
            run = self._current
            if run is None:
                return {}
            return self._rates(run)

    def _rates(self, run: _Watched) -> dict[str, float | None]:
        samples = run.samples
        names = run.names
        if len(samples) < 2:
            return dict.fromkeys(names)
        (t0, first), (t1, last) = samples[0], samples[-1]
        if t1 <= t0:
            return dict.fromkeys(names)
        return {n: (b - a) / (t1 - t0) for n, a, b in zip(names, first, last, strict=True)}

    def sample(self) -> None:
        """Sample the run shown now (the display thread does this at each refresh)."""
        with self._lock:
            if self._current is not None and self._current.state == "running":
                self._sample(self._current)

    def table(self, *, sample: bool = True) -> Table:
        """The table as it is now (``sample``: sample the run first if it still goes)."""
        from rich.table import Table

        with self._lock:
            run = self._current
            if run is None:
                return Table(title="rxpipe: no run yet", title_justify="left")
            if sample and run.state == "running":
                self._sample(run)
            return self._table(run, Table)

    def _table(self, run: _Watched, table_type: type[Table]) -> Table:
        report = run.report
        running = run.state == "running"
        if running:
            elapsed = self._clock() - run.started
            title = f"rxpipe {run.engine}: running, {elapsed:.1f} s"
        else:
            elapsed = report.elapsed_seconds if report is not None else self._clock() - run.started
            delivered = f", {_count(report.delivered)} delivered" if report is not None else ""
            title = f"rxpipe {run.engine}: {run.state} in {elapsed:.1f} s{delivered}"
        table = table_type(title=title, title_justify="left")
        for column in ("stage", "in", "out", "items/s", "errors", "lost", "queue"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        rates = self._rates(run) if running else {}
        for index, (name, counts) in enumerate(zip(run.names, run.counts, strict=True)):
            if report is not None and name in report.stages:
                sr = report.stages[name]
                received, emitted, errored, lost = sr.received, sr.emitted, sr.errored, sr.lost
            else:
                received, emitted, errored, lost = counts
            if running:
                rate = rates.get(name)
                depth = run.depths.get(index)
            else:  # the whole run's mean rate, and the fullest the queue was seen
                rate = emitted / elapsed if elapsed > 0 else None
                depth = run.peaks.get(index)
            table.add_row(
                name,
                "-" if index == 0 else _count(received),
                _count(emitted),
                _rate(rate),
                _count(errored),
                _count(lost),
                "-" if depth is None else f"{depth[0]}/{depth[1]}",
            )
        if not running:
            table.caption = "items/s: run mean; queue: peak seen"
            table.caption_justify = "left"
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self._current is None:  # nothing to show before the first run
            return
        # a view that draws itself samples on its thread; one drawn by another display, here
        yield self.table(sample=not self._display)
