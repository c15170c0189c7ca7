"""The conformance kit against the publishers rxpipe builds, on every engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rxpipe import Flow, Publisher
from rxpipe.engines import Engine
from rxpipe.testing import verify_publisher
from rxpipe.testing.pytest_plugin import make_engine


class ARange:
    """A re-iterable async range: each iteration starts again (a cold async source)."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def _items(self) -> AsyncIterator[int]:
        for i in range(self.n):
            await asyncio.sleep(0)
            yield i

    def __aiter__(self) -> AsyncIterator[int]:
        return self._items()


async def slow_identity(x: int) -> int:
    await asyncio.sleep(0)
    return x


FLOWS: dict[str, Callable[[int], Flow[Any]]] = {
    "async-source": lambda n: Flow.from_async_iterable(ARange(n)),
    "map_async": lambda n: Flow.range(n).map_async(slow_identity, concurrency=3),
    "merge": lambda n: Flow.merge(Flow.range(n // 2), Flow.range(n - n // 2)),
    "range": lambda n: Flow.range(n),
    "map-filter": lambda n: Flow.range(2 * n).filter(lambda x: x % 2 == 0).map(str),
    "none-elements": lambda n: Flow.from_iterable([None] * n),
    "flat_map-take": lambda n: Flow.range(n).flat_map(lambda x: [x, x]).take(2 * n).skip(n),
    "chunk": lambda n: Flow.range(3 * n).chunk(3),
    "scan": lambda n: Flow.range(n).scan(lambda a, x: a + x, 0).skip(1),
    "buffer": lambda n: Flow.range(n).buffer(4).map(lambda x: -x),
    "from_publisher": lambda n: Flow.from_publisher(Flow.range(n).to_publisher(), prefetch=8),
}


@pytest.mark.parametrize("shape", sorted(FLOWS))
@pytest.mark.timeout(120)
def test_to_publisher_passes_the_kit(engine: Engine, shape: str) -> None:
    build = FLOWS[shape]

    def make(n: int) -> Publisher[Any]:
        return build(n).to_publisher(engine=engine)

    cheap = "PullEngine" in repr(engine) and not build(1).plan.is_async
    verify_publisher(
        make,
        # runs with tasks or threads per subscriber: keep the costly checks smaller
        recursion_elements=100_000 if cheap else 2_000,
        stochastic_runs=100 if cheap else 10,
        rxpipe_extensions=True,  # rxpipe's own publishers keep rxpipe's additions too
    )


def republished(flow: Flow[Any], inner: str) -> Flow[Any]:
    """``flow`` run on the engine named ``inner``, read back through a publisher edge."""
    return Flow.from_publisher(flow.to_publisher(engine=make_engine(inner)), prefetch=8)


# from_publisher(to_publisher(x)) for inner flows on each engine (the pull case is FLOWS'
# "from_publisher"), with sync and async stages in the inner flow, the outer one, or a flow
# that is both; the test runs each with the outer flow on every engine.
COMPOSITIONS: dict[str, Callable[[int], Flow[Any]]] = {
    "push-asyncio": lambda n: republished(Flow.range(n), "push-asyncio"),
    "push-threads": lambda n: republished(Flow.range(n), "push-threads"),
    "filter-push-asyncio-filter": lambda n: republished(
        Flow.range(4 * n).filter(lambda x: x % 2 == 0), "push-asyncio"
    ).filter(lambda x: x % 4 == 0),
    "map_async-push-threads-map": lambda n: republished(
        Flow.range(n).map_async(slow_identity, concurrency=2), "push-threads"
    ).map(lambda x: -x),
    "push-asyncio-map_async": lambda n: republished(Flow.range(n), "push-asyncio").map_async(
        slow_identity, concurrency=3
    ),
    "two-hops": lambda n: republished(
        republished(Flow.range(n), "push-asyncio").map_async(slow_identity), "push-threads"
    ),
}


@pytest.mark.parametrize("shape", sorted(COMPOSITIONS))
@pytest.mark.timeout(120)
def test_compositions_of_publishers_pass_the_kit(engine: Engine, shape: str) -> None:
    """Issue 9 item 5: a push-engine publisher read by from_publisher inside a running loop."""
    build = COMPOSITIONS[shape]
    verify_publisher(
        lambda n: build(n).to_publisher(engine=engine),
        recursion_elements=2_000,
        stochastic_runs=10,
        rxpipe_extensions=True,
    )


def test_kit_catches_a_broken_flow_publisher() -> None:
    """The kit is not vacuous here: a publisher that ignores demand fails rule 1.1."""

    class Greedy:
        def __init__(self, n: int) -> None:
            self.n = n

        def subscribe(self, subscriber: Any) -> None:
            pub = Flow.range(self.n).to_publisher()

            class Wrap:
                def on_subscribe(self, s: Any) -> None:
                    subscriber.on_subscribe(s)
                    s.request(10**6)  # asks for everything behind the subscriber's back

                def on_next(self, x: Any) -> None:
                    subscriber.on_next(x)

                def on_error(self, e: BaseException) -> None:
                    subscriber.on_error(e)

                def on_complete(self) -> None:
                    subscriber.on_complete()

            pub.subscribe(Wrap())

    with pytest.raises(AssertionError, match=r"rule 1\.1"):
        verify_publisher(Greedy, only=["1.1"])
