"""Event loops seen from other threads: sync code that must not run inside a running loop says
so, with the async twin; a thread wakes a waiter on a loop without knowing whether it still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

__all__ = ("ASYNC_TWIN_HINT", "ensure_no_running_loop", "threadsafe_setter")

#: The hint for sync code that cannot know which terminal called it.
ASYNC_TWIN_HINT: Final = (
    "the terminal's async twin (`await flow.to_list_async()` for `flow.to_list()`, "
    "`async for x in flow` for `for x in flow`)"
)


def ensure_no_running_loop(what: str, instead: str = ASYNC_TWIN_HINT) -> None:
    """Raise a clear error when sync code that would block the loop runs inside one.

    Blocking the running loop would deadlock it; the async twin is the right call there.
    ``instead`` names it, as written in the message: ``"`await flow.count_async()`"``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{what} cannot run inside a running event loop (it would block the loop); "
        f"use {instead} instead"
    )


def threadsafe_setter(event: asyncio.Event) -> Callable[[], None]:
    """A callable that any thread may call to set ``event`` on the running loop (the one
    this is called on); once that loop has closed, nobody waits any more and it does nothing.
    """
    loop = asyncio.get_running_loop()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    return wake
