"""The conformance kit against the publishers rxpipe builds, on every engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rxpipe import Flow, Publisher
from rxpipe.engines.base import Engine
from rxpipe.testing import verify_publisher

FLOWS: dict[str, Callable[[int], Flow[Any]]] = {
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

    pull = "PullEngine" in repr(engine)
    verify_publisher(
        make,
        # the push engines run a task/thread set per subscriber: keep the costly checks small
        recursion_elements=100_000 if pull else 2_000,
        stochastic_runs=100 if pull else 10,
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
