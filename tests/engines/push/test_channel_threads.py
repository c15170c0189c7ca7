"""ThreadChannel: the same Go channel semantics, between threads, with timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe.engines.push import ThreadChannel
from rxpipe.engines.push.thread_channel import (
    BrokenChannelError,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
)


class Worker:
    """A thread running ``fn``, keeping its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def join(self) -> Any:
        self.thread.join(5)
        assert not self.thread.is_alive(), "worker thread hung"
        if self.error is not None:
            raise self.error
        return self.result


@contextmanager
def workers() -> Iterator[list[Worker]]:
    """Every worker started in the block is joined at its end, even when a check fails."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for w in started:
            w.thread.join(5)
        assert not any(w.thread.is_alive() for w in started), "worker thread hung"


def spawn(pool: list[Worker], fn: Callable[[], Any]) -> Worker:
    w = Worker(fn)
    pool.append(w)
    return w


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def drain(ch: ThreadChannel[Any]) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            out.append(ch.receive(timeout=5))
        except EndOfChannel:
            return out


# -- blocking rules -------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_rendezvous_send_blocks_until_received() -> None:
    ch: ThreadChannel[int] = ThreadChannel(0)
    with workers() as pool:
        sender = spawn(pool, lambda: ch.send(1, timeout=5))
        wait_until(lambda: ch.statistics().blocked_senders == 1)
        time.sleep(0.02)
        assert not sender.finished.is_set()
        assert ch.statistics().current == 1
        assert ch.receive(timeout=5) == 1
        sender.join()
    stats = ch.statistics()
    assert (stats.current, stats.peak, stats.sent, stats.blocked_senders) == (0, 1, 1, 0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_buffer_n_lets_exactly_n_go_ahead(n: int) -> None:
    ch: ThreadChannel[int] = ThreadChannel(n)
    progress: list[int] = []

    def producer() -> None:
        for i in range(n + 1):
            ch.send(i, timeout=5)
            progress.append(i)

    with workers() as pool:
        w = spawn(pool, producer)
        wait_until(lambda: ch.statistics().blocked_senders == 1)
        assert len(progress) == n
        assert ch.statistics().current == n
        assert ch.receive(timeout=5) == 0
        w.join()
    assert len(progress) == n + 1
    assert ch.statistics().peak == n


@pytest.mark.timeout(10)
@pytest.mark.parametrize("buffer", [0, 1, 3, 64])
def test_fifo_through_a_concurrent_consumer(buffer: int) -> None:
    ch: ThreadChannel[int] = ThreadChannel(buffer)

    def producer() -> None:
        for i in range(500):
            ch.send(i, timeout=5)
        ch.close()

    with workers() as pool:
        w = spawn(pool, producer)
        assert drain(ch) == list(range(500))
        w.join()
    assert ch.statistics().peak <= max(buffer, 1)


# -- nowait and timeouts --------------------------------------------------------------------
def test_nowait_operations_raise_would_block() -> None:
    ch: ThreadChannel[int] = ThreadChannel(1)
    with pytest.raises(WouldBlock):
        ch.receive_nowait()
    ch.send_nowait(1)
    with pytest.raises(WouldBlock):
        ch.send_nowait(2)
    assert ch.receive_nowait() == 1
    rendezvous: ThreadChannel[int] = ThreadChannel(0)
    with pytest.raises(WouldBlock):
        rendezvous.send_nowait(1)


@pytest.mark.timeout(10)
def test_rendezvous_send_nowait_succeeds_with_a_blocked_receiver() -> None:
    ch: ThreadChannel[int] = ThreadChannel(0)
    with workers() as pool:
        receiver = spawn(pool, lambda: ch.receive(timeout=5))
        wait_until(lambda: ch.statistics().blocked_receivers == 1)
        ch.send_nowait(3)
        assert receiver.join() == 3


def test_timeouts_raise_and_leave_nothing_behind() -> None:
    ch: ThreadChannel[int] = ThreadChannel(1)
    with pytest.raises(TimeoutError):
        ch.receive(timeout=0.01)
    with pytest.raises(TimeoutError):
        ch.receive_batch(4, timeout=0.01)
    ch.send(1)
    with pytest.raises(TimeoutError):
        ch.send(2, timeout=0.01)
    with pytest.raises(TimeoutError):
        ch.send_many([2, 3], timeout=0.01)
    stats = ch.statistics()
    assert (stats.current, stats.sent, stats.blocked_senders, stats.blocked_receivers) == (
        1,
        1,
        0,
        0,
    )


def test_rendezvous_send_timeout_withdraws_the_item() -> None:
    ch: ThreadChannel[int] = ThreadChannel(0)
    with pytest.raises(TimeoutError):
        ch.send(1, timeout=0.02)
    stats = ch.statistics()
    assert (stats.current, stats.sent, stats.peak, stats.blocked_senders) == (0, 0, 1, 0)
    with pytest.raises(WouldBlock):
        ch.receive_nowait()


# -- ending ---------------------------------------------------------------------------------
def test_close_drains_then_ends() -> None:
    ch: ThreadChannel[int] = ThreadChannel(5)
    ch.send_many([0, 1, 2])
    ch.close()
    ch.close()
    assert ch.receive_batch(2) == [0, 1]
    assert ch.receive() == 2
    with pytest.raises(EndOfChannel):
        ch.receive()
    with pytest.raises(EndOfChannel):
        ch.receive_batch(3)
    with pytest.raises(EndOfChannel):
        ch.receive_nowait()
    with pytest.raises(ClosedChannelError):
        ch.send(9)
    for batch in ([9], []):
        with pytest.raises(ClosedChannelError):
            ch.send_many(batch)
    stats = ch.statistics()
    assert (stats.closed, stats.sent, stats.received) == (True, 3, 3)


@pytest.mark.timeout(10)
def test_close_wakes_every_blocked_receiver() -> None:
    ch: ThreadChannel[int] = ThreadChannel(2)
    with workers() as pool:
        receivers = [spawn(pool, lambda: ch.receive(timeout=5)) for _ in range(3)]
        receivers.append(spawn(pool, lambda: ch.receive_batch(4, timeout=5)))
        wait_until(lambda: ch.statistics().blocked_receivers == 4)
        ch.close()
        for r in receivers:
            with pytest.raises(EndOfChannel):
                r.join()
    assert ch.statistics().blocked_receivers == 0


@pytest.mark.timeout(10)
def test_close_wakes_blocked_senders_and_withdraws_a_rendezvous_item() -> None:
    ch: ThreadChannel[int] = ThreadChannel(0)
    with workers() as pool:
        senders = [spawn(pool, partial(ch.send, i, timeout=5)) for i in range(3)]
        wait_until(lambda: ch.statistics().blocked_senders == 3)
        ch.close()
        for s in senders:
            with pytest.raises(ClosedChannelError):
                s.join()
    stats = ch.statistics()
    assert (stats.current, stats.sent, stats.blocked_senders) == (0, 0, 0)


@pytest.mark.timeout(10)
def test_close_receiving_breaks_blocked_and_later_senders_and_counts_discarded() -> None:
    ch: ThreadChannel[int] = ThreadChannel(2)
    ch.send(1)
    ch.send(2)
    with workers() as pool:
        blocked = spawn(pool, lambda: ch.send(3, timeout=5))
        batch = spawn(pool, lambda: ch.send_many([4, 5], timeout=5))
        wait_until(lambda: ch.statistics().blocked_senders == 2)
        ch.close_receiving()
        ch.close_receiving()
        for w in (blocked, batch):
            with pytest.raises(BrokenChannelError):
                w.join()
    with pytest.raises(BrokenChannelError):
        ch.send(6)
    with pytest.raises(BrokenChannelError):
        ch.send_nowait(7)
    with pytest.raises(ClosedChannelError):
        ch.receive()
    stats = ch.statistics()
    assert (stats.current, stats.discarded, stats.sent, stats.received) == (0, 2, 2, 0)
    assert stats.receiving_closed


@pytest.mark.timeout(10)
def test_close_receiving_breaks_a_rendezvous_sender_and_wakes_receivers() -> None:
    ch: ThreadChannel[int] = ThreadChannel(0)
    with workers() as pool:
        sender = spawn(pool, lambda: ch.send(1, timeout=5))
        wait_until(lambda: ch.statistics().blocked_senders == 1)
        ch.close_receiving()
        with pytest.raises(BrokenChannelError):
            sender.join()
    stats = ch.statistics()
    assert (stats.sent, stats.discarded, stats.current) == (0, 0, 0)

    other: ThreadChannel[int] = ThreadChannel(1)
    with workers() as pool:
        receiver = spawn(pool, lambda: other.receive(timeout=5))
        wait_until(lambda: other.statistics().blocked_receivers == 1)
        other.close_receiving()
        with pytest.raises(ClosedChannelError):
            receiver.join()


@pytest.mark.timeout(10)
def test_fail_raises_after_drain_and_wakes_receivers() -> None:
    ch: ThreadChannel[int] = ThreadChannel(3)
    ch.send_many([1, 2])
    boom = ValueError("boom")
    ch.fail(boom)
    ch.fail(KeyError("later"))
    assert ch.receive_batch(10) == [1, 2]
    for _ in range(2):
        with pytest.raises(ValueError, match="boom"):
            ch.receive()

    blocked: ThreadChannel[int] = ThreadChannel(0)
    with workers() as pool:
        receiver = spawn(pool, lambda: blocked.receive(timeout=5))
        wait_until(lambda: blocked.statistics().blocked_receivers == 1)
        blocked.fail(RuntimeError("upstream"))
        with pytest.raises(RuntimeError, match="upstream"):
            receiver.join()


# -- statistics, None, batches --------------------------------------------------------------
@pytest.mark.timeout(10)
def test_statistics_track_peak_and_blocked_parties() -> None:
    ch: ThreadChannel[int] = ThreadChannel(2)
    with workers() as pool:
        for i in range(5):
            spawn(pool, partial(ch.send, i, timeout=5))
        wait_until(lambda: ch.statistics().blocked_senders == 3)
        stats = ch.statistics()
        assert (stats.current, stats.peak, stats.capacity) == (2, 2, 2)
        got: list[int] = []
        while len(got) < 5:
            got += ch.receive_batch(10, timeout=5)
        for w in pool:
            w.join()
    assert sorted(got) == [0, 1, 2, 3, 4]
    stats = ch.statistics()
    assert (stats.sent, stats.received, stats.current, stats.peak) == (5, 5, 0, 2)
    assert (stats.blocked_senders, stats.blocked_receivers) == (0, 0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("buffer", [0, 1, 4])
def test_none_is_a_valid_item(buffer: int) -> None:
    ch: ThreadChannel[int | None] = ThreadChannel(buffer)

    def producer() -> None:
        ch.send(None, timeout=5)
        ch.send_many([None, 1, None], timeout=5)
        ch.close()

    with workers() as pool:
        w = spawn(pool, producer)
        first = ch.receive(timeout=5)
        rest: list[int | None] = []
        while True:
            try:
                rest += ch.receive_batch(8, timeout=5)
            except EndOfChannel:
                break
        w.join()
    assert [first, *rest] == [None, None, 1, None]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("buffer", [0, 1, 3, 16])
def test_send_many_larger_than_the_buffer_never_exceeds_it(buffer: int) -> None:
    ch: ThreadChannel[int] = ThreadChannel(buffer)

    def producer() -> None:
        ch.send_many(range(200), timeout=5)
        ch.send_many((x for x in range(200, 250)), timeout=5)
        ch.close()

    out: list[int] = []
    with workers() as pool:
        w = spawn(pool, producer)
        while True:
            try:
                out += ch.receive_batch(7, timeout=5)
            except EndOfChannel:
                break
            assert ch.statistics().current <= max(buffer, 1)
        w.join()
    assert out == list(range(250))
    assert ch.statistics().peak <= max(buffer, 1)


_OPS = st.tuples(st.sampled_from(["one", "nowait", "many"]), st.integers(1, 10))


@pytest.mark.timeout(60)
@settings(deadline=None, max_examples=40)
@given(
    buffer=st.integers(0, 5),
    send_ops=st.lists(_OPS, min_size=1, max_size=15),
    batch_sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5),
)
def test_random_op_sequences_keep_order_and_the_bound(
    buffer: int, send_ops: list[tuple[str, int]], batch_sizes: list[int]
) -> None:
    ch: ThreadChannel[int] = ThreadChannel(buffer)
    expected: list[int] = []
    for op, n in send_ops:
        expected.extend(range(len(expected), len(expected) + (n if op == "many" else 1)))

    def producer() -> None:
        seq = 0
        for op, n in send_ops:
            if op == "many":
                ch.send_many(range(seq, seq + n), timeout=5)
                seq += n
                continue
            if op == "nowait":
                try:
                    ch.send_nowait(seq)
                except WouldBlock:
                    ch.send(seq, timeout=5)
            else:
                ch.send(seq, timeout=5)
            seq += 1
        ch.close()

    got: list[int] = []
    with workers() as pool:
        w = spawn(pool, producer)
        i = 0
        while True:
            try:
                got += ch.receive_batch(batch_sizes[i % len(batch_sizes)], timeout=5)
            except EndOfChannel:
                break
            assert ch.statistics().current <= max(buffer, 1)
            i += 1
        w.join()
    assert got == expected
    assert ch.statistics().peak <= max(buffer, 1)


# -- contention -----------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("buffer", [0, 1, 16])
@pytest.mark.parametrize("batched", [False, True])
def test_four_senders_keep_their_order_and_exact_counts(buffer: int, batched: bool) -> None:
    ch: ThreadChannel[tuple[int, int]] = ThreadChannel(buffer)
    per_sender = 1500 if buffer else 400
    remaining = [4]
    lock = threading.Lock()

    def sender(s: int) -> None:
        items = [(s, i) for i in range(per_sender)]
        if batched:
            for start in range(0, per_sender, 37):
                ch.send_many(items[start : start + 37], timeout=10)
        else:
            for item in items:
                ch.send(item, timeout=10)
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                ch.close()

    def receiver() -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        while True:
            try:
                if batched:
                    out += ch.receive_batch(50, timeout=10)
                else:
                    out.append(ch.receive(timeout=10))
            except EndOfChannel:
                return out

    with workers() as pool:
        senders = [spawn(pool, partial(sender, s)) for s in range(4)]
        receivers = [spawn(pool, receiver) for _ in range(2)]
        for w in senders:
            w.join()
        results = [r.join() for r in receivers]
    merged = [item for out in results for item in out]
    assert len(merged) == 4 * per_sender
    for out in results:  # each receiver sees each sender's items in order
        for s in range(4):
            seq = [i for (who, i) in out if who == s]
            assert seq == sorted(seq)
    for s in range(4):
        assert sorted(i for (who, i) in merged if who == s) == list(range(per_sender))
    stats = ch.statistics()
    assert stats.sent == stats.received == 4 * per_sender
    assert stats.peak <= max(buffer, 1)
    assert (stats.current, stats.blocked_senders, stats.blocked_receivers) == (0, 0, 0)


def test_wait_receivable_takes_nothing_and_returns_at_the_end() -> None:
    """A waiter that gives up loses no item: the async consumer of a threads run waits here
    on a helper thread and takes the item itself (a helper that took it could strand it)."""
    ch: ThreadChannel[int] = ThreadChannel(1)
    waiter = threading.Thread(target=ch.wait_receivable)
    waiter.start()
    ch.send(7)
    waiter.join(5)
    assert not waiter.is_alive()
    assert ch.receive_nowait() == 7  # still there: waiting took nothing
    with pytest.raises(TimeoutError):
        ch.wait_receivable(timeout=0.01)
    ch.close()
    ch.wait_receivable()  # the end is "receivable": receive_nowait now says how it ended
    with pytest.raises(EndOfChannel):
        ch.receive_nowait()
