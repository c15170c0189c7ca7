"""Build-time checks of the functions users hand to stages and terminals.

A coroutine function given to a synchronous stage returns a coroutine that nobody awaits: the
work silently never happens (Python only warns, late). A plain function given to ``map_async``
fails on its first item with a message about futures. Both mistakes are caught here, when the
flow is built, with a message that names the operator to use instead.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ("check_async_callable", "check_callable", "check_sync_callable", "is_async_callable")


def check_callable(value: object, what: str) -> None:
    """Raise ``TypeError`` now, when the flow is built, rather than on the first item."""
    if not callable(value):
        raise TypeError(f"{what} must be callable, got {type(value).__name__} {value!r}")


def _unwrapped(fn: Any) -> Any:
    """The function behind partials and bound methods."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        else:
            return fn


def _is_async_def(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    try:  # a sync decorator (functools.wraps) around an async def returns its coroutines
        inner = inspect.unwrap(fn)
    except ValueError:  # a __wrapped__ cycle
        return False
    return inner is not fn and inspect.iscoroutinefunction(inner)


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` gives an awaitable by declaration: an ``async def`` function, a
    partial or bound method of one, or an object whose ``__call__`` is ``async def``."""
    fn = _unwrapped(fn)
    if _is_async_def(fn):
        return True
    if inspect.isfunction(fn) or inspect.isbuiltin(fn) or isinstance(fn, type):
        return False
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return call is not None and _is_async_def(call)


def _is_plainly_sync(fn: object) -> bool:
    """Whether ``fn`` certainly returns no awaitable: a named ``def`` function (not a lambda,
    which may well return ``fetch(x)``), a builtin or a class that is not async."""
    fn = _unwrapped(fn)
    if is_async_callable(fn):
        return False
    if inspect.isbuiltin(fn) or isinstance(fn, type):
        return True
    return inspect.isfunction(fn) and fn.__name__ != "<lambda>"


def _name(fn: object) -> str:
    return getattr(_unwrapped(fn), "__qualname__", None) or repr(fn)


def check_sync_callable(value: object, what: str, instead: str) -> None:
    """Refuse a non-callable, and an ``async def`` function a sync stage would never await."""
    check_callable(value, what)
    if is_async_callable(value):
        raise TypeError(
            f"{what} is an async function ({_name(value)}); it would be called synchronously "
            f"and its coroutines never awaited: {instead}"
        )


def check_async_callable(value: object, what: str, instead: str) -> None:
    """Refuse a non-callable, and a function that plainly returns no awaitable."""
    check_callable(value, what)
    if _is_plainly_sync(value):
        raise TypeError(
            f"{what} must be an async function (async def), got the plain function "
            f"{_name(value)}: {instead}"
        )
