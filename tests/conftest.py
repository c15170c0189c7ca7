"""Suite-wide configuration: the leak check on every test, and the hypothesis profiles.

The ``no_leaks`` and ``engine`` fixtures come from rxpipe's own pytest plugin
(``rxpipe.testing.pytest_plugin``), which pytest loads through its ``pytest11`` entry point.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# pytester runs the plugin's own tests (tests/testing/test_pytest_plugin.py). rxpipe's plugin
# itself is loaded through its pytest11 entry point, so it is not listed here.
pytest_plugins = ("pytester",)

# "ci": reproducible and patient (shared machines are slow); "dev": quick feedback.
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=50, database=None)
settings.register_profile("dev", deadline=None, max_examples=25)
#: HYPOTHESIS_PROFILE=soak: a long search, to run by hand after touching an engine.
settings.register_profile("soak", deadline=None, max_examples=1000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(autouse=True)
def _no_leaks(no_leaks: None) -> None:
    """Every test must join the threads and finish the asyncio tasks it starts."""
