"""The RxPY bridge tests need ``reactivex`` (the ``rx`` extra); skip them where it is missing."""

from __future__ import annotations

import pytest

pytest.importorskip("reactivex")
