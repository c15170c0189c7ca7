"""The sampler of an observed run: queue depth, periodic flushes, and the stall detector.

One daemon thread per observed run (none for a run that observes nothing). Every
``interval`` it checks that items still move (a sum of counters); every ``flush_every`` it
reads each stage's input queue (push channels' ``statistics()``, pull buffers) and hands the
exporters what changed; and when no item moved for ``stall_after`` seconds it reads the
queues and logs one warning on the ``"rxpipe"`` logger naming who waits on whom. The queues
are read only then: reading them costs the running stages the GIL, 100 times a second for
nothing. The run stops the sampler (and joins it) when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from rxpipe.telemetry.collector import RunTelemetry

__all__ = ("DEFAULT_STALL_SECONDS", "Sampler", "stall_message")

log: Final = logging.getLogger("rxpipe")

#: An observed run that moves no item for this long logs a warning (engines' ``stall_after``).
DEFAULT_STALL_SECONDS: Final = 10.0
#: How often progress is checked.
INTERVAL: Final = 0.01
#: How often exporters receive what changed while the run goes.
FLUSH_EVERY: Final = 1.0


def stall_message(telemetry: RunTelemetry, queues: dict[int, tuple[int, int]], idle: float) -> str:
    """Who waits on whom, from the queues as they are now."""
    names = [st.name for st in telemetry.stats]
    full = sorted(i for i, (size, cap) in queues.items() if cap and size >= cap)
    head = f"rxpipe: no item moved for {idle:.1f} s"
    if full:
        i = full[-1]  # the most downstream full queue: everything before it waits on it
        sender = names[i - 1]
        size, cap = queues[i]
        if i >= len(names):
            return (
                f"{head}: {sender} waits on the consumer (its output channel is full, {size}/{cap})"
            )
        return f"{head}: {sender} waits on {names[i]} (its input channel is full, {size}/{cap})"
    if telemetry.engine == "pull":
        return (
            f"{head}: the consumer's demand is outstanding and no stage of "
            f"{names[0]}..{names[-1]} answers it"
        )
    return f"{head}: every channel is empty, so the stages wait on {names[0]} (the source)"


@final
class Sampler:
    """Samples one run's queues on a daemon thread until :meth:`stop`."""

    __slots__ = (
        "_flush_every",
        "_interval",
        "_stall_after",
        "_stop",
        "_telemetry",
        "_thread",
        "warned",
    )

    def __init__(
        self,
        telemetry: RunTelemetry,
        *,
        stall_after: float | None = DEFAULT_STALL_SECONDS,
        interval: float = INTERVAL,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        self._telemetry = telemetry
        self._stall_after = stall_after
        self._interval = interval
        self._flush_every = flush_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Whether the stall warning was logged (once per run).
        self.warned = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rxpipe-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread (idempotent; a no-op from the thread itself)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _progress(self) -> int:
        # timed items too: a fused loop's counts reach its stats only when it ends
        return sum(
            st.emitted + st.received + (0 if st.timing is None else st.timing.timed_items)
            for st in self._telemetry.stats
        )

    def _loop(self) -> None:
        telemetry = self._telemetry
        last_flush = last_move = time.monotonic()
        moved = self._progress()
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            progress = self._progress()
            if progress != moved:
                moved, last_move = progress, now
            elif (
                self._stall_after is not None
                and not self.warned
                and now - last_move >= self._stall_after
            ):
                self.warned = True
                log.warning(stall_message(telemetry, telemetry.read_queues(), now - last_move))
            if now - last_flush >= self._flush_every:
                last_flush = now
                if telemetry.exports:
                    telemetry.flush(telemetry.read_queues())
