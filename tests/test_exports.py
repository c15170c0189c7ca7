"""The front door: ``rxpipe.__all__`` is a sorted tuple that names every public class and function.

The order is ruff's RUF022 "isort-style" order: SCREAMING_CASE constants first, then
CamelCase classes, then everything else, each group in natural order (``x2`` before ``x10``).
``ruff check --select RUF022 --fix rxpipe/__init__.py`` puts a list in this order.
"""

from __future__ import annotations

import inspect
import re

import pytest

import rxpipe


def _ruf022_key(name: str) -> tuple[int, list[int | str]]:
    """Sort key of ruff's RUF022 isort-style order, for ASCII identifiers."""
    if len(name) > 1 and name.isupper():  # isupper: every cased letter is upper, at least one
        group = 0  # CONSTANT
    elif name[:1].isupper():
        group = 1  # Class
    else:
        group = 2  # everything else, dunders included
    # re.split with a capture group alternates text and digit runs, text first, so the
    # pieces compare str-with-str and int-with-int.
    pieces = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return group, pieces


@pytest.mark.parametrize(
    "ruff_order",
    [
        # Orders `ruff check --select RUF022 --fix` produced (ruff 0.17).
        ["ALPHA", "BETA_2", "BETA_10", "AB_c", "ABc", "Alpha", "Beta", "__version__", "x2", "x10"],
        ["X1", "ZZ", "_PRIVATE", "A", "Ab", "T", "X", "__version__", "_private", "a_B", "b"],
    ],
)
def test_ruf022_key_matches_ruff(ruff_order: list[str]) -> None:
    assert sorted(reversed(ruff_order), key=_ruf022_key) == ruff_order


def test_all_is_a_tuple() -> None:
    assert isinstance(rxpipe.__all__, tuple)


def test_all_is_sorted_without_duplicates() -> None:
    names = list(rxpipe.__all__)
    assert len(set(names)) == len(names), "duplicate names in rxpipe.__all__"
    assert names == sorted(names, key=_ruf022_key), (
        "rxpipe.__all__ is not in RUF022 order; "
        "run `ruff check --select RUF022 --fix rxpipe/__init__.py`"
    )


def test_every_name_in_all_exists() -> None:
    missing = [name for name in rxpipe.__all__ if not hasattr(rxpipe, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from rxpipe import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(rxpipe.__all__)


def test_every_public_class_and_function_is_in_all() -> None:
    # Only rxpipe's own objects: a helper imported from the standard library into
    # rxpipe/__init__.py is not part of the API.
    unexported = [
        name
        for name, obj in vars(rxpipe).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and (getattr(obj, "__module__", None) or "").partition(".")[0] == "rxpipe"
        and name not in rxpipe.__all__
    ]
    assert unexported == [], f"public but not in rxpipe.__all__: {unexported}"
