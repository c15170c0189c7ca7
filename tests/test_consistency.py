"""Every operator is complete: a Flow method documenting its demand contract, and tests."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from rxpipe import Flow, Fragment, Stage
from rxpipe.stages import async_map, buffering, fan_out, resilience, simple, timed

OPERATOR_MODULES = (simple, buffering, async_map, fan_out, timed, resilience)
CONTRACT = ("Emits when", "Backpressures when", "Completes when", "Cancels when")


def blueprints() -> list[type[Stage[object, object]]]:
    found = []
    for module in OPERATOR_MODULES:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Stage) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def test_there_are_operators_to_check() -> None:
    assert len(blueprints()) >= 12


@pytest.mark.parametrize("cls", blueprints(), ids=lambda c: c.__name__)
def test_every_stage_has_a_documented_flow_method(cls: type[Stage[object, object]]) -> None:
    method = getattr(Flow, cls.operator, None)
    assert method is not None, f"Flow has no method {cls.operator!r} for {cls.__name__}"
    doc = inspect.getdoc(method) or ""
    missing = [line for line in CONTRACT if line not in doc]
    assert not missing, f"Flow.{cls.operator} does not document: {missing}"
    assert hasattr(Fragment, cls.operator), f"Fragment has no {cls.operator!r}"


@pytest.mark.parametrize("cls", blueprints(), ids=lambda c: c.__name__)
def test_every_operator_is_tested_on_the_engine_fixture(cls: type[Stage[object, object]]) -> None:
    """A test module anywhere under tests/ that uses the every-engine fixture calls the operator."""
    here = Path(__file__)
    needle = f".{cls.operator}("
    users = [
        p.relative_to(here.parent).as_posix()
        for p in here.parent.rglob("test_*.py")
        if p != here and needle in (text := p.read_text()) and "engine: Engine" in text
    ]
    assert users, f"no engine-fixture test calls {needle}"
