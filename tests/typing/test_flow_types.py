"""The static type checks also run, so they cannot rot into dead code."""

from __future__ import annotations

import pytest

from .flow_types import check, check_rx


def test_type_check_module_runs() -> None:
    check()


def test_rx_type_check_runs() -> None:
    pytest.importorskip("reactivex")
    check_rx()
