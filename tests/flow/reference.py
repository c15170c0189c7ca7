"""Plain-Python meanings of the operators: what every engine must reproduce exactly."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def take_while(pred: Callable[[Any], object], items: Iterable[Any]) -> Iterator[Any]:
    return itertools.takewhile(pred, items)


def scan(f: Callable[[Any, Any], Any], initial: Any, items: Iterable[Any]) -> Iterator[Any]:
    return itertools.accumulate(items, f, initial=initial)


def chunk(n: int, items: Iterable[Any]) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def apply(ops: list[tuple[str, Any]], items: Iterable[Any]) -> list[Any]:
    """Run a chain of (operator, argument) pairs with itertools."""
    it: Iterable[Any] = items
    for op, arg in ops:
        if op == "map":
            it = map(arg, it)
        elif op in ("map_async", "parallel"):  # ordered: a map with other timing
            it = map(arg[0], it)
        elif op == "filter":
            it = filter(arg, it)
        elif op == "flat_map":
            it = itertools.chain.from_iterable(map(arg, it))
        elif op == "take":
            it = itertools.islice(it, arg)
        elif op == "skip":
            it = itertools.islice(it, arg, None)
        elif op == "take_while":
            it = take_while(arg, it)
        elif op == "scan":
            it = scan(arg[0], arg[1], it)
        elif op == "buffer":
            pass  # a buffer changes timing, never items or order
        elif op == "chunk":
            it = chunk(arg, it)
        else:
            raise AssertionError(op)
    return list(it)
