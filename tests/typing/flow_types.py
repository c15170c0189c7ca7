"""Static checks (run by mypy in `make typecheck`, imported by a test so it also executes):
every fluent method keeps or changes the element type as it should, never to Any."""

from __future__ import annotations

import asyncio
from typing import assert_type

from rxpipe import Flow, Fragment, Overflow, Publisher, QueueHandle, Report, Result, stage


async def twice(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def check() -> None:
    ints = Flow.range(10)
    assert_type(ints, Flow[int])
    assert_type(ints.map(str), Flow[str])
    assert_type(ints.map(str, errors="result"), Flow[Result[str]])
    assert_type(ints.filter(lambda x: x > 2), Flow[int])
    assert_type(ints.take(3).skip(1).take_while(bool), Flow[int])
    assert_type(ints.flat_map(lambda x: [str(x)]), Flow[str])
    assert_type(ints.scan(lambda acc, x: acc + float(x), 0.0), Flow[float])
    assert_type(ints.chunk(2), Flow[list[int]])
    assert_type(ints.buffer(4), Flow[int])
    assert_type(ints.map_async(twice, concurrency=4), Flow[int])
    assert_type(Flow.of("a", "b"), Flow[str])
    assert_type(Flow.from_iterable([1.5]), Flow[float])
    assert_type(ints.to_list(), list[int])
    assert_type(ints.first(), int)
    assert_type(ints.count(), int)
    assert_type(ints.run(), Report)
    assert_type(ints.fold(lambda acc, x: acc + x, 0), int)
    assert_type(ints.to_publisher(), Publisher[int])
    frag = stage().map(str)
    assert isinstance(frag, Fragment)
    for x in ints:
        assert_type(x, int)
    assert_type(Flow.merge(ints, Flow.range(3)), Flow[int])
    assert_type(Flow.concat(Flow.of("a"), Flow.of("b")), Flow[str])
    queued: tuple[Flow[bytes], QueueHandle[bytes]] = Flow.queue(8, Overflow.DROP_NEWEST)
    flow, handle = queued
    assert_type(handle.offer(b"x"), bool)
    assert_type(flow.map(len), Flow[int])


def check_rx() -> None:
    import reactivex

    observable: reactivex.Observable[str] = reactivex.of("a", "b")
    flow = Flow.from_observable(observable, buffer=4, overflow=Overflow.BACKPRESSURE)
    assert_type(flow, Flow[str])
    assert_type(flow.map(len).to_observable(), reactivex.Observable[int])
    assert_type(Flow.range(3).to_observable(engine="push"), reactivex.Observable[int])
