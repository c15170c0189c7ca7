"""Bridges to other stream libraries; each one imports its library lazily (optional extras).

``rxpipe.interop.rx``: RxPY (``reactivex``), behind ``Flow.from_observable`` and
``flow.to_observable``. Importing ``rxpipe`` or this package never imports ``reactivex``.
"""

from __future__ import annotations

__all__ = ()
