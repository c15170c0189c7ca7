"""AsyncChannel: Go channel semantics on one event loop (plain tests around ``asyncio.run``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe.engines.push import AsyncChannel
from rxpipe.engines.push.channel import (
    BrokenChannelError,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
)


async def settle(rounds: int = 10) -> None:
    """Let every ready task run until all of them are blocked again."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(5):
            return await main()

    return asyncio.run(bounded())


async def drain(ch: AsyncChannel[Any]) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            out.append(await ch.receive())
        except EndOfChannel:
            return out


# -- blocking rules -------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_rendezvous_send_blocks_until_received() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(0)
        sender = asyncio.create_task(ch.send(1))
        await settle()
        assert not sender.done()
        stats = ch.statistics()
        assert (stats.current, stats.blocked_senders, stats.sent) == (1, 1, 1)
        assert await ch.receive() == 1
        await settle()
        assert sender.done()
        await sender
        stats = ch.statistics()
        assert (stats.current, stats.peak, stats.blocked_senders) == (0, 1, 0)

    run(main)


@pytest.mark.timeout(10)
def test_rendezvous_send_completes_with_a_waiting_receiver() -> None:
    async def main() -> None:
        ch: AsyncChannel[str] = AsyncChannel(0)
        receiver = asyncio.create_task(ch.receive())
        await settle()
        await ch.send("x")
        assert await receiver == "x"
        assert ch.statistics().peak == 1

    run(main)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_buffer_n_lets_exactly_n_go_ahead(n: int) -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(n)
        progress = 0

        async def producer() -> None:
            nonlocal progress
            for i in range(n + 3):
                await ch.send(i)
                progress += 1

        task = asyncio.create_task(producer())
        await settle()
        assert progress == n
        stats = ch.statistics()
        assert (stats.current, stats.blocked_senders, stats.peak) == (n, 1, n)
        assert await ch.receive() == 0
        await settle()
        assert progress == n + 1
        assert ch.statistics().current == n
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("buffer", [0, 1, 3, 64])
def test_fifo_through_a_concurrent_consumer(buffer: int) -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(buffer)

        async def producer() -> None:
            for i in range(300):
                await ch.send(i)
            ch.close()

        task = asyncio.create_task(producer())
        assert await drain(ch) == list(range(300))
        await task
        stats = ch.statistics()
        assert stats.sent == stats.received == 300
        assert stats.peak <= max(buffer, 1)

    run(main)


# -- nowait ---------------------------------------------------------------------------------
def test_nowait_operations_raise_would_block() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(1)
        with pytest.raises(WouldBlock):
            ch.receive_nowait()
        ch.send_nowait(1)
        with pytest.raises(WouldBlock):
            ch.send_nowait(2)
        assert ch.receive_nowait() == 1
        assert ch.statistics().sent == 1

    run(main)


@pytest.mark.timeout(10)
def test_rendezvous_send_nowait_needs_a_waiting_receiver() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(0)
        with pytest.raises(WouldBlock):
            ch.send_nowait(1)
        assert ch.statistics().sent == 0
        receiver = asyncio.create_task(ch.receive())
        await settle()
        ch.send_nowait(2)
        assert await receiver == 2
        with pytest.raises(WouldBlock):
            ch.receive_nowait()

    run(main)


# -- ending ---------------------------------------------------------------------------------
def test_close_drains_then_ends() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(5)
        for i in range(3):
            await ch.send(i)
        ch.close()
        ch.close()  # idempotent
        assert await ch.receive_batch(2) == [0, 1]
        assert await ch.receive() == 2
        for op in (ch.receive, lambda: ch.receive_batch(4)):
            with pytest.raises(EndOfChannel):
                await op()
        with pytest.raises(EndOfChannel):
            ch.receive_nowait()
        with pytest.raises(ClosedChannelError):
            await ch.send(9)
        for batch in ([9], []):
            with pytest.raises(ClosedChannelError):
                await ch.send_many(batch)
        stats = ch.statistics()
        assert (stats.closed, stats.sent, stats.received, stats.discarded) == (True, 3, 3, 0)

    run(main)


@pytest.mark.timeout(10)
def test_close_wakes_every_blocked_receiver() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(2)
        receivers: list[asyncio.Task[Any]] = [asyncio.create_task(ch.receive()) for _ in range(3)]
        receivers.append(asyncio.create_task(ch.receive_batch(5)))
        await settle()
        assert ch.statistics().blocked_receivers == 4
        ch.close()
        results = await asyncio.gather(*receivers, return_exceptions=True)
        assert all(isinstance(r, EndOfChannel) for r in results)
        assert ch.statistics().blocked_receivers == 0

    run(main)


@pytest.mark.timeout(10)
def test_close_wakes_other_blocked_senders_and_withdraws_a_rendezvous_item() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(0)
        senders = [asyncio.create_task(ch.send(i)) for i in range(3)]
        await settle()
        assert ch.statistics().blocked_senders == 3
        ch.close()
        results = await asyncio.gather(*senders, return_exceptions=True)
        assert all(isinstance(r, ClosedChannelError) for r in results)
        stats = ch.statistics()
        assert (stats.current, stats.sent, stats.blocked_senders) == (0, 0, 0)
        with pytest.raises(EndOfChannel):
            await ch.receive()

    run(main)


@pytest.mark.timeout(10)
def test_close_receiving_breaks_blocked_and_later_senders_and_counts_discarded() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(2)
        await ch.send(1)
        await ch.send(2)
        blocked = asyncio.create_task(ch.send(3))
        batch = asyncio.create_task(ch.send_many([4, 5]))
        await settle()
        assert ch.statistics().blocked_senders == 2
        ch.close_receiving()
        ch.close_receiving()  # idempotent
        for task in (blocked, batch):
            with pytest.raises(BrokenChannelError):
                await task
        with pytest.raises(BrokenChannelError):
            await ch.send(6)
        with pytest.raises(BrokenChannelError):
            ch.send_nowait(7)
        with pytest.raises(BrokenChannelError):
            await ch.send_many([8])
        with pytest.raises(ClosedChannelError):
            await ch.receive()
        stats = ch.statistics()
        assert (stats.current, stats.discarded, stats.sent, stats.received) == (0, 2, 2, 0)
        assert stats.receiving_closed
        assert stats.blocked_senders == 0

    run(main)


@pytest.mark.timeout(10)
def test_close_receiving_breaks_a_rendezvous_sender_without_counting_its_item() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(0)
        sender = asyncio.create_task(ch.send(1))
        await settle()
        ch.close_receiving()
        with pytest.raises(BrokenChannelError):
            await sender
        stats = ch.statistics()
        # The sender got the error, so the item is its own loss: not sent, not discarded.
        assert (stats.sent, stats.discarded, stats.current) == (0, 0, 0)

    run(main)


@pytest.mark.timeout(10)
def test_close_receiving_wakes_blocked_receivers() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(1)
        receiver = asyncio.create_task(ch.receive())
        await settle()
        ch.close_receiving()
        with pytest.raises(ClosedChannelError):
            await receiver

    run(main)


@pytest.mark.timeout(10)
def test_fail_raises_after_drain() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(3)
        await ch.send_many([1, 2])
        boom = ValueError("boom")
        ch.fail(boom)
        ch.close()  # the first ending wins
        ch.fail(KeyError("later"))
        assert await ch.receive_batch(10) == [1, 2]
        for _ in range(2):
            with pytest.raises(ValueError, match="boom") as info:
                await ch.receive()
            assert info.value is boom
        with pytest.raises(ValueError, match="boom"):
            ch.receive_nowait()
        assert ch.statistics().closed

    run(main)


@pytest.mark.timeout(10)
def test_fail_wakes_a_blocked_receiver() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(0)
        receiver = asyncio.create_task(ch.receive_batch(3))
        await settle()
        ch.fail(RuntimeError("upstream"))
        with pytest.raises(RuntimeError, match="upstream"):
            await receiver

    run(main)


# -- statistics -----------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_statistics_track_peak_and_blocked_parties() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(2)
        receivers = [asyncio.create_task(ch.receive()) for _ in range(2)]
        await settle()
        stats = ch.statistics()
        assert (stats.blocked_receivers, stats.blocked_senders, stats.capacity) == (2, 0, 2)
        await ch.send_many([1, 2])
        assert sorted(await asyncio.gather(*receivers)) == [1, 2]
        senders = [asyncio.create_task(ch.send(i)) for i in range(5)]
        await settle()
        stats = ch.statistics()
        assert (stats.current, stats.peak, stats.blocked_senders) == (2, 2, 3)
        assert await ch.receive_batch(10) == [0, 1]
        await settle()
        assert ch.statistics().blocked_senders == 1
        assert await ch.receive_batch(10) == [2, 3]
        await settle()
        assert await ch.receive() == 4
        await asyncio.gather(*senders)
        stats = ch.statistics()
        assert (stats.sent, stats.received, stats.current, stats.peak) == (7, 7, 0, 2)
        assert (stats.closed, stats.receiving_closed) == (False, False)

    run(main)


def test_statistics_is_a_frozen_record() -> None:
    stats = AsyncChannel[int](4).statistics()
    with pytest.raises(AttributeError):
        stats.current = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_bad_buffer_is_rejected(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        AsyncChannel(bad)


# -- cancellation ---------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_cancelled_blocked_send_does_not_enqueue_and_channel_stays_usable() -> None:
    async def main() -> None:
        ch: AsyncChannel[str] = AsyncChannel(1)
        await ch.send("a")
        sender = asyncio.create_task(ch.send("lost"))
        await settle()
        sender.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sender
        assert ch.statistics().blocked_senders == 0
        assert await ch.receive() == "a"
        await ch.send("b")
        ch.close()
        assert await drain(ch) == ["b"]
        assert ch.statistics().sent == 2

    run(main)


@pytest.mark.timeout(10)
def test_cancelled_rendezvous_send_withdraws_its_item() -> None:
    async def main() -> None:
        ch: AsyncChannel[str] = AsyncChannel(0)
        sender = asyncio.create_task(ch.send("lost"))
        waiting = asyncio.create_task(ch.send("next"))
        await settle()
        sender.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sender
        await settle()
        assert await ch.receive() == "next"
        await waiting
        stats = ch.statistics()
        assert (stats.sent, stats.current, stats.blocked_senders) == (1, 0, 0)

    run(main)


@pytest.mark.timeout(10)
def test_cancelled_rendezvous_sender_not_yet_resumed_is_not_received() -> None:
    async def main() -> None:
        ch: AsyncChannel[str] = AsyncChannel(0)
        sender = asyncio.create_task(ch.send("lost"))
        await settle()
        sender.cancel()  # its future is cancelled, but the task has not run yet
        with pytest.raises(WouldBlock):
            ch.receive_nowait()
        with pytest.raises(asyncio.CancelledError):
            await sender
        assert ch.statistics().sent == 0

    run(main)


@pytest.mark.timeout(10)
def test_rendezvous_taken_then_cancelled_completes_and_redelivers_cancellation() -> None:
    async def main() -> None:
        ch: AsyncChannel[str] = AsyncChannel(0)
        log: list[str] = []

        async def producer() -> None:
            await ch.send("x")
            log.append("sent")
            await asyncio.sleep(0)
            log.append("not reached")

        task = asyncio.create_task(producer())
        await settle()
        assert ch.receive_nowait() == "x"  # taken ...
        task.cancel()  # ... then cancelled before the sender resumed
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["sent"]  # the send completed; the cancellation came at the next await
        stats = ch.statistics()
        assert (stats.sent, stats.received) == (1, 1)

    run(main)


@pytest.mark.timeout(10)
def test_cancelled_blocked_receiver_leaves_items_for_others() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(1)
        first = asyncio.create_task(ch.receive())
        second = asyncio.create_task(ch.receive())
        await settle()
        await ch.send(7)  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs: the wake-up passes on
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second == 7
        third = asyncio.create_task(ch.receive())
        await settle()
        third.cancel()
        with pytest.raises(asyncio.CancelledError):
            await third
        assert ch.statistics().blocked_receivers == 0
        await ch.send(8)
        assert ch.receive_nowait() == 8

    run(main)


@pytest.mark.timeout(10)
def test_woken_then_cancelled_sender_passes_the_wakeup_on() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(1)
        await ch.send(0)
        first = asyncio.create_task(ch.send(1))
        second = asyncio.create_task(ch.send(2))
        await settle()
        assert ch.receive_nowait() == 0  # wakes `first` ...
        first.cancel()  # ... cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert ch.receive_nowait() == 2
        assert ch.statistics().sent == 2

    run(main)


# -- None is an item ------------------------------------------------------------------------
@pytest.mark.timeout(10)
@pytest.mark.parametrize("buffer", [0, 1, 4])
def test_none_is_a_valid_item(buffer: int) -> None:
    async def main() -> None:
        ch: AsyncChannel[int | None] = AsyncChannel(buffer)

        async def producer() -> None:
            await ch.send(None)
            await ch.send_many([None, 1, None])
            ch.close()

        task = asyncio.create_task(producer())
        first = await ch.receive()
        rest: list[int | None] = []
        while True:
            try:
                rest += await ch.receive_batch(8)
            except EndOfChannel:
                break
        await task
        assert [first, *rest] == [None, None, 1, None]

    run(main)


# -- batches --------------------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_receive_batch_takes_what_is_ready_up_to_max_n_and_waits_for_the_first() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(8)
        waiter = asyncio.create_task(ch.receive_batch(4))
        await settle()
        assert not waiter.done()
        await ch.send_many(range(6))
        assert await waiter == [0, 1, 2, 3]
        assert await ch.receive_batch(4) == [4, 5]
        with pytest.raises(ValueError, match="max_n"):
            await ch.receive_batch(0)

    run(main)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("buffer", [0, 1, 3, 16])
def test_send_many_larger_than_the_buffer_never_exceeds_it(buffer: int) -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(buffer)

        async def producer() -> None:
            await ch.send_many(range(100))
            await ch.send_many(x for x in range(100, 150))
            await ch.send_many([])
            ch.close()

        task = asyncio.create_task(producer())
        out: list[int] = []
        while True:
            try:
                out += await ch.receive_batch(7)
            except EndOfChannel:
                break
            assert ch.statistics().current <= max(buffer, 1)
        await task
        assert out == list(range(150))
        assert ch.statistics().peak == max(buffer, 1)

    run(main)


_SEND_OPS = st.tuples(st.sampled_from(["send", "send_nowait", "send_many"]), st.integers(1, 12))
_RECV_OPS = st.tuples(
    st.sampled_from(["receive", "receive_nowait", "receive_batch", "yield"]), st.integers(1, 12)
)


@pytest.mark.timeout(60)
@settings(deadline=None, max_examples=150)
@given(
    buffer=st.integers(0, 6),
    send_ops=st.lists(_SEND_OPS, min_size=1, max_size=25),
    recv_ops=st.lists(_RECV_OPS, min_size=1, max_size=10),
    producers=st.integers(1, 3),
)
def test_random_op_sequences_keep_order_and_the_bound(
    buffer: int,
    send_ops: list[tuple[str, int]],
    recv_ops: list[tuple[str, int]],
    producers: int,
) -> None:
    bound = max(buffer, 1)

    async def main() -> None:
        ch: AsyncChannel[tuple[int, int] | None] = AsyncChannel(buffer)
        expected: dict[int, list[int]] = {p: [] for p in range(producers)}

        def check() -> None:
            assert ch.statistics().current <= bound

        async def producer(p: int) -> None:
            seq = 0
            for op, n in send_ops:
                if op == "send_many":
                    await ch.send_many([(p, seq + i) for i in range(n)])
                    expected[p].extend(range(seq, seq + n))
                    seq += n
                    check()
                    continue
                if op == "send":
                    await ch.send((p, seq))
                else:
                    try:
                        ch.send_nowait((p, seq))
                    except WouldBlock:
                        await ch.send((p, seq))
                expected[p].append(seq)
                seq += 1
                if p == 0:
                    await ch.send(None)  # None is an item like any other
                    expected[p].append(-1)
                check()

        async def producers_then_close() -> None:
            await asyncio.gather(*(producer(p) for p in range(producers)))
            ch.close()

        got: dict[int, list[int]] = {p: [] for p in range(producers)}

        def record(item: tuple[int, int] | None) -> None:
            if item is None:
                got[0].append(-1)
            else:
                got[item[0]].append(item[1])

        task = asyncio.create_task(producers_then_close())
        done = False
        while not done:
            for op, n in [*recv_ops, ("receive", 1)]:  # at least one op that waits for items
                try:
                    if op == "receive":
                        record(await ch.receive())
                    elif op == "receive_batch":
                        for item in await ch.receive_batch(n):
                            record(item)
                    elif op == "receive_nowait":
                        try:
                            record(ch.receive_nowait())
                        except WouldBlock:
                            await asyncio.sleep(0)
                    else:
                        for _ in range(n):
                            await asyncio.sleep(0)
                except EndOfChannel:
                    done = True
                    break
                check()
        await task
        # None markers interleave with producer 0's sends in its own order.
        assert got == expected
        stats = ch.statistics()
        assert stats.peak <= bound
        assert stats.sent == stats.received == sum(len(v) for v in expected.values())
        assert (stats.blocked_senders, stats.blocked_receivers) == (0, 0)

    run(main)


def test_space_and_batch_operations_never_wait_or_overfill() -> None:
    async def main() -> None:
        ch: AsyncChannel[int] = AsyncChannel(4)
        assert ch.space() == 4
        ch.send_available([1, 2, 3])
        assert ch.space() == 1
        with pytest.raises(WouldBlock):
            ch.send_available([4, 5])  # would overfill: nothing is sent
        assert ch.statistics().current == 3
        assert ch.receive_available(2) == [1, 2]
        assert ch.receive_available(10) == [3]
        assert ch.receive_available(10) == []
        ch.send_available([None, 0])
        ch.close()
        assert ch.space() == 0
        assert ch.receive_available(5) == [None, 0]
        with pytest.raises(EndOfChannel):
            ch.receive_available(5)
        assert ch.statistics().peak == 3

    asyncio.run(main())


def test_send_available_wakes_a_waiting_receiver() -> None:
    async def main() -> list[int]:
        ch: AsyncChannel[int] = AsyncChannel(8)
        receiver = asyncio.create_task(ch.receive_batch(8))
        await asyncio.sleep(0)
        ch.send_available([7, 8, 9])
        return await asyncio.wait_for(receiver, 1)

    assert asyncio.run(main()) == [7, 8, 9]


def test_rendezvous_has_no_space_and_hands_over_one_item() -> None:
    async def main() -> None:
        ch: AsyncChannel[str] = AsyncChannel(0)
        assert ch.space() == 0
        sender = asyncio.create_task(ch.send("x"))
        await asyncio.sleep(0)
        assert ch.receive_available(5) == ["x"]
        await asyncio.wait_for(sender, 1)

    asyncio.run(main())
