"""The front doors: each public package's ``__all__`` is a sorted tuple naming every public
class and function it holds (anyio's rule: an ``__all__`` in every public module, tested).

Public packages are those whose path has no ``_``-prefixed part (``rxpipe._core`` is private);
:data:`PUBLIC_PACKAGES` lists them, and a test keeps the list complete.

The order is ruff's RUF022 "isort-style" order: SCREAMING_CASE constants first, then
CamelCase classes, then everything else, each group in natural order (``x2`` before ``x10``).
``ruff check --select RUF022 --fix rxpipe/__init__.py`` puts a list in this order.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Final

import pytest

import rxpipe

PUBLIC_PACKAGES: Final = (
    "rxpipe",
    "rxpipe.engines",
    "rxpipe.engines.pull",
    "rxpipe.engines.push",
    "rxpipe.interop",
    "rxpipe.stages",
    "rxpipe.telemetry",
    "rxpipe.testing",
)


@pytest.fixture(params=PUBLIC_PACKAGES)
def package(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_every_public_package_is_checked() -> None:
    root = Path(rxpipe.__file__).parent
    found = {
        ".".join(("rxpipe", *init.parent.relative_to(root).parts))
        for init in root.rglob("__init__.py")
        if not any(part.startswith("_") for part in init.parent.relative_to(root).parts)
    }
    assert found == set(PUBLIC_PACKAGES)


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


def test_all_is_a_tuple(package: ModuleType) -> None:
    assert isinstance(package.__all__, tuple)


def test_all_is_sorted_without_duplicates(package: ModuleType) -> None:
    names = list(package.__all__)
    assert len(set(names)) == len(names), f"duplicate names in {package.__name__}.__all__"
    assert names == sorted(names, key=_ruf022_key), (
        f"{package.__name__}.__all__ is not in RUF022 order; "
        f"run `ruff check --select RUF022 --fix {package.__file__}`"
    )


def test_every_name_in_all_exists(package: ModuleType) -> None:
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert missing == []


def test_star_import_gives_exactly_all(package: ModuleType) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package.__name__} import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(package.__all__)


def test_every_public_class_and_function_is_in_all(package: ModuleType) -> None:
    # Only rxpipe's own objects: a helper imported from the standard library into
    # an __init__.py is not part of the API.
    unexported = [
        name
        for name, obj in vars(package).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and (getattr(obj, "__module__", None) or "").partition(".")[0] == "rxpipe"
        and name not in package.__all__
    ]
    assert unexported == [], f"public but not in {package.__name__}.__all__: {unexported}"
