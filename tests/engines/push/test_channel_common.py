"""What both channels share (``ChannelState``): the non-waiting operations behave the same.

The waiting strategies are tested per channel (``test_channel_async``/``test_channel_threads``);
here every operation that never waits runs on both, and random sequences of them must give
identical results and statistics.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxpipe.engines.push import AsyncChannel, ThreadChannel
from rxpipe.engines.push._channel_common import (
    BrokenChannelError,
    ChannelState,
    ClosedChannelError,
    EndOfChannel,
    WouldBlock,
)

CHANNELS = pytest.mark.parametrize("make", [AsyncChannel, ThreadChannel], ids=["async", "threads"])


@runtime_checkable
class NonBlockingChannel(Protocol):
    """Everything a lowering may do to either channel without waiting."""

    def send_nowait(self, item: Any) -> None: ...
    def space(self) -> int: ...
    def send_available(self, items: list[Any]) -> None: ...
    def receive_nowait(self) -> Any: ...
    def receive_available(self, max_n: int) -> list[Any]: ...
    def close(self) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def close_receiving(self) -> None: ...


@CHANNELS
def test_both_share_the_state_and_offer_the_non_blocking_protocol(make: Any) -> None:
    ch = make(4)
    assert isinstance(ch, ChannelState)
    assert isinstance(ch, NonBlockingChannel)
    assert repr(ch) == f"<{make.__name__} buffer=4 current=0 open>"


def test_async_channel_adds_only_its_waiting() -> None:
    public = {name for name in vars(AsyncChannel) if not name.startswith("_")}
    assert public == {
        "send",
        "send_many",
        "receive",
        "receive_batch",
        "wake_when_receivable",
        "forget_receiver",
    }


def test_async_channel_wakes_a_future_when_receivable_and_takes_nothing() -> None:
    """The hook a stage with timers or work running waits on (``Work.wait_beside``)."""
    asyncio.run(_wakes_a_future())


async def _wakes_a_future() -> None:
    loop = asyncio.get_running_loop()
    ch: AsyncChannel[int] = AsyncChannel(2)
    ch.send_nowait(1)
    assert not ch.wake_when_receivable(loop.create_future())  # an item is ready: no wait
    assert ch.receive_nowait() == 1
    fut: asyncio.Future[None] = loop.create_future()
    assert ch.wake_when_receivable(fut)
    assert not fut.done()
    ch.send_nowait(2)
    assert fut.done()  # woken, and the item is still there for receive_nowait
    ch.forget_receiver(fut)
    assert ch.receive_nowait() == 2
    other: asyncio.Future[None] = loop.create_future()
    assert ch.wake_when_receivable(other)
    ch.forget_receiver(other)  # withdrawn: a send wakes nobody and nothing is lost
    ch.send_nowait(3)
    assert not other.done()
    assert ch.statistics().blocked_receivers == 0
    ch.close()
    assert ch.receive_nowait() == 3
    assert not ch.wake_when_receivable(loop.create_future())  # ended: receive_nowait says so
    with pytest.raises(EndOfChannel):
        ch.receive_nowait()


def test_a_rendezvous_hands_over_only_to_a_future_still_waiting() -> None:
    asyncio.run(_rendezvous_hands_over())


async def _rendezvous_hands_over() -> None:
    loop = asyncio.get_running_loop()
    ch: AsyncChannel[int] = AsyncChannel(0)
    fut: asyncio.Future[None] = loop.create_future()
    assert ch.wake_when_receivable(fut)
    fut.set_result(None)  # woken by something else (a timer): no receiver waits any more
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)
    ch.forget_receiver(fut)
    waiting: asyncio.Future[None] = loop.create_future()
    assert ch.wake_when_receivable(waiting)
    ch.send_nowait(2)  # a receiver waits: the rendezvous hands the item over
    assert waiting.done()
    assert ch.receive_nowait() == 2


@CHANNELS
def test_space_and_batch_operations_never_wait_or_overfill(make: Any) -> None:
    ch = make(4)
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
    assert repr(ch).endswith("current=2 closed>")
    assert ch.receive_available(5) == [None, 0]
    with pytest.raises(EndOfChannel):
        ch.receive_available(5)
    assert ch.statistics().peak == 3


@CHANNELS
def test_rendezvous_without_a_waiting_receiver_would_block(make: Any) -> None:
    ch = make(0)
    assert ch.space() == 0
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)
    with pytest.raises(WouldBlock):
        ch.send_available([1])
    with pytest.raises(WouldBlock):
        ch.receive_nowait()
    assert ch.receive_available(3) == []
    stats = ch.statistics()
    assert (stats.sent, stats.current, stats.peak) == (0, 0, 0)


@CHANNELS
def test_close_receiving_discards_counts_and_breaks_senders(make: Any) -> None:
    ch = make(3)
    for i in range(3):
        ch.send_nowait(i)
    assert ch.receive_nowait() == 0
    ch.close_receiving()
    ch.close_receiving()  # idempotent
    stats = ch.statistics()
    assert (stats.received, stats.current, stats.discarded, stats.sent) == (1, 0, 2, 3)
    assert stats.receiving_closed
    assert not stats.closed
    assert ch.space() == 0
    for send in (ch.send_nowait, lambda x: ch.send_available([x])):
        with pytest.raises(BrokenChannelError):
            send(9)
    with pytest.raises(ClosedChannelError):
        ch.receive_nowait()
    with pytest.raises(ClosedChannelError):
        ch.receive_available(1)
    ch.close()  # the sending side may still end its side
    with pytest.raises(ClosedChannelError):
        ch.send_nowait(9)  # own side closed: that error first
    assert repr(ch).endswith("receiving closed>")


@CHANNELS
def test_fail_drains_then_raises_and_the_first_ending_wins(make: Any) -> None:
    ch = make(2)
    ch.send_nowait("a")
    boom = ValueError("boom")
    ch.fail(boom)
    ch.fail(RuntimeError("later"))  # no-op
    ch.close()  # no-op
    with pytest.raises(ClosedChannelError):
        ch.send_nowait("b")
    assert ch.receive_nowait() == "a"
    with pytest.raises(ValueError, match="boom") as info:
        ch.receive_nowait()
    assert info.value is boom
    stats = ch.statistics()
    assert stats.closed
    assert (stats.sent, stats.received) == (1, 1)


_OPS = st.one_of(
    st.tuples(st.just("send_nowait"), st.integers(0, 99)),
    st.tuples(st.just("send_available"), st.lists(st.integers(0, 99), max_size=5)),
    st.tuples(st.just("receive_nowait"), st.none()),
    st.tuples(st.just("receive_available"), st.integers(1, 5)),
    st.tuples(st.just("space"), st.none()),
    st.tuples(st.just("close"), st.none()),
    st.tuples(st.just("fail"), st.none()),
    st.tuples(st.just("close_receiving"), st.none()),
)


def _play(ch: Any, ops: list[tuple[str, Any]]) -> list[Any]:
    failure = ValueError("failed")
    outcomes: list[Any] = []
    for name, arg in ops:
        try:
            if name == "fail":
                result = ch.fail(failure)
            elif arg is None:
                result = getattr(ch, name)()
            else:
                result = getattr(ch, name)(list(arg) if isinstance(arg, list) else arg)
        except Exception as exc:
            result = type(exc).__name__
        outcomes.append(result)
        stats = ch.statistics()
        assert stats.sent == stats.received + stats.current + stats.discarded
        assert stats.current <= max(stats.capacity, 1)
    outcomes.append(ch.statistics())
    return outcomes


@settings(max_examples=200, deadline=None)
@given(buffer=st.integers(0, 4), ops=st.lists(_OPS, max_size=30))
def test_random_non_blocking_sequences_agree_on_both_channels(
    buffer: int, ops: list[tuple[str, Any]]
) -> None:
    assert _play(AsyncChannel(buffer), ops) == _play(ThreadChannel(buffer), ops)
