"""Sync code that must not run inside a running event loop says so, with the async twin."""

from __future__ import annotations

import asyncio
from typing import Final

__all__ = ("ASYNC_TWIN_HINT", "ensure_no_running_loop")

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
