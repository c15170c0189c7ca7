"""A chain of stages as a Reactive Streams processor (``fragment.to_processor()``)."""

from __future__ import annotations

from typing import Any

import pytest

from rxpipe import Flow, MissingBackpressureError, stage


class Recorder:
    def __init__(self, request: int = 100) -> None:
        self.events: list[Any] = []
        self.request = request
        self.sub: Any = None

    def on_subscribe(self, s: Any) -> None:
        self.sub = s
        if self.request:
            s.request(self.request)

    def on_next(self, x: Any) -> None:
        self.events.append(x)

    def on_error(self, e: BaseException) -> None:
        self.events.append(("error", type(e).__name__))

    def on_complete(self) -> None:
        self.events.append("complete")


def test_processor_works_when_downstream_subscribes_first() -> None:
    proc = stage().map(lambda x: x * 10).to_processor()
    down = Recorder()
    proc.subscribe(down)
    Flow.range(5).to_publisher().subscribe(proc)
    assert down.events == [0, 10, 20, 30, 40, "complete"]


def test_processor_cancels_upstream_that_ignores_demand() -> None:
    cancelled = []

    class Greedy:
        def subscribe(self, s: Any) -> None:
            class Sub:
                def request(self, n: int) -> None:
                    pass

                def cancel(self) -> None:
                    cancelled.append(True)

            s.on_subscribe(Sub())
            s.on_next(1)  # nobody asked

    proc = stage().map(lambda x: x).to_processor()
    down = Recorder(request=0)
    proc.subscribe(down)
    Greedy().subscribe(proc)
    assert down.events == [("error", MissingBackpressureError.__name__)]
    assert cancelled == [True]


def test_to_processor_refuses_stages_that_need_an_event_loop() -> None:
    async def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="event loop"):
        stage().map_async(f).to_processor()
