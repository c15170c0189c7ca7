"""How a push run's runners wait: the one protocol both runtimes implement (anyio's backend
pattern). Everything that differs between asyncio tasks and threads lives behind it, in
:mod:`~rxpipe.engines.push.asyncio_runtime` and :mod:`~rxpipe.engines.push.threads_runtime`;
the run (:class:`~rxpipe.engines.push.engine.PushRun`) holds what they share.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rxpipe.engines.base import StopRequest
    from rxpipe.engines.push.engine import PushEngine

__all__ = ("Runtime",)


class Runtime(Protocol):
    """One run's runners on one runtime: start them, consume the last channel, stop them.

    Stopping (leaving a loop, ``close``/``aclose``, an error) closes every channel from the
    receiving side and waits for every runner, so none outlives the run.
    """

    def start(self) -> None:
        """Wire the run's channels and start every runner."""
        ...

    async def receive(self) -> Any:
        """Wait for the next item of the last channel and take it (``EndOfChannel`` at the
        end); cancelled while waiting, it took nothing."""
        ...

    async def stop_async(self) -> None:
        """Stop every runner from the consumer's event loop and wait for all of them."""
        ...

    def iterate(self, stop: StopRequest) -> Iterator[Any]:
        """Start the runners and yield the items of the last channel (sync code); ``stop``
        lets another thread end the iteration while it waits."""
        ...

    def aiterate(self) -> AsyncGenerator[Any, None]:
        """Start the runners and yield the items of the last channel (async code)."""
        ...

    def collect(self) -> list[Any]:
        """Run to the end from sync code; every item in a list."""
        ...

    async def collect_async(self) -> list[Any]:
        """Run to the end from async code; every item in a list."""
        ...

    def consume(self, fn: Callable[[Any], object]) -> None:
        """Run to the end from sync code, calling ``fn`` on each item."""
        ...

    def close(self) -> None:
        """Stop the run from sync code and wait for every runner (after the run closed the
        iterator it handed out, whose cleanup usually did it already)."""
        ...

    async def aclose(self) -> None:
        """Stop the run from async code and wait for every runner."""
        ...

    def join(self) -> None:
        """Wait for runners that are stopping (``report()`` of a run being closed)."""
        ...

    def input_engine(self, engine: PushEngine) -> PushEngine:
        """The engine that runs the inputs of ``merge``/``concat`` inside this run."""
        ...
