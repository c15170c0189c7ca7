"""rxpipe.testing is a public, pytest-free front door with a sorted ``__all__`` tuple."""

from __future__ import annotations

import subprocess
import sys

import rxpipe.testing


def test_all_is_a_sorted_tuple_of_existing_names() -> None:
    names = rxpipe.testing.__all__
    assert isinstance(names, tuple)
    assert len(set(names)) == len(names)
    constants = [n for n in names if n.isupper()]
    classes = [n for n in names if not n.isupper() and n[0].isupper()]
    functions = [n for n in names if n[0].islower()]
    assert list(names) == sorted(constants) + sorted(classes) + sorted(functions)
    assert [n for n in names if not hasattr(rxpipe.testing, n)] == []


def test_importing_the_kit_does_not_import_pytest() -> None:
    code = (
        "import sys, rxpipe.testing, rxpipe.testing.tck, rxpipe.testing.probes; "
        "assert 'pytest' not in sys.modules, 'rxpipe.testing imported pytest'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
