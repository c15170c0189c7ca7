"""The static type checks also run, so they cannot rot into dead code."""

from __future__ import annotations

from .flow_types import check


def test_type_check_module_runs() -> None:
    check()
