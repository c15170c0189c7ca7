"""RxPY bridges: arguments checked when the flow is built; reactivex stays optional and lazy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import reactivex

from rxpipe import Flow, Overflow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"buffer": 0, "overflow": Overflow.DROP_NEWEST}, ValueError, "buffer"),
        ({"buffer": -3, "overflow": Overflow.DROP_NEWEST}, ValueError, "buffer"),
        ({"buffer": 1.5, "overflow": Overflow.DROP_NEWEST}, TypeError, "buffer"),
        ({"buffer": True, "overflow": Overflow.DROP_NEWEST}, TypeError, "buffer"),
        ({"buffer": 4, "overflow": "drop_newest"}, TypeError, "Overflow"),
        ({"buffer": 4, "overflow": None}, TypeError, "Overflow"),
        ({"buffer": 4}, TypeError, "overflow"),
        ({"overflow": Overflow.FAIL}, TypeError, "buffer"),
    ],
)
def test_from_observable_bad_arguments_fail_at_build_time(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Flow.from_observable(reactivex.of(1, 2), **kwargs)


@pytest.mark.parametrize("thing", [[1, 2, 3], Flow.of(1), None, object()])
def test_from_observable_refuses_what_is_not_an_observable(thing: Any) -> None:
    with pytest.raises(TypeError, match="reactivex Observable"):
        Flow.from_observable(thing, buffer=4, overflow=Overflow.BACKPRESSURE)


def test_buffer_and_overflow_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Flow.from_observable(reactivex.of(1), 4, Overflow.FAIL)  # type: ignore[misc]


def test_from_observable_is_a_named_source_stage() -> None:
    flow = Flow.from_observable(reactivex.of(1), buffer=4, overflow=Overflow.FAIL).map(str)
    assert flow.stage_names == ("from_observable", "map")


def test_to_observable_checks_its_arguments_when_called() -> None:
    with pytest.raises(ValueError, match="engine"):
        Flow.of(1).to_observable(engine="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_report"):
        Flow.of(1).to_observable(on_report=3)  # type: ignore[arg-type]
    assert isinstance(Flow.of(1).to_observable(), reactivex.Observable)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        check=False,
    )


def test_importing_rxpipe_does_not_import_reactivex() -> None:
    done = _python(
        """
        import sys
        import rxpipe
        from rxpipe import Flow
        assert Flow.range(3).map(str).to_list() == ["0", "1", "2"]
        assert "reactivex" not in sys.modules, "rxpipe imported reactivex"
        assert "rxpipe.interop.rx" not in sys.modules
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_missing_reactivex_names_the_extra() -> None:
    done = _python(
        """
        import sys
        sys.modules["reactivex"] = None  # as if it were not installed
        from rxpipe import Flow, Overflow
        for call in (
            lambda: Flow.from_observable(object(), buffer=1, overflow=Overflow.FAIL),
            lambda: Flow.of(1).to_observable(),
        ):
            try:
                call()
            except ImportError as exc:
                assert "rxpipe[rx]" in str(exc), exc
            else:
                raise AssertionError("no ImportError")
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
