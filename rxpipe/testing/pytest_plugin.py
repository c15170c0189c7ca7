"""rxpipe's pytest plugin: an ``engine`` fixture over every engine, and a leak check.

pytest loads it through the ``pytest11`` entry point named ``rxpipe``; do not also list it
in ``pytest_plugins``. It is the only module of rxpipe that imports pytest.

* ``engine``: a test that asks for it runs once per engine name in :data:`ENGINES`;
  ``--rxpipe-engines=pull,push-asyncio`` narrows the set (the others are deselected).
* ``no_leaks``: fails the test if a thread or an asyncio task it started is still alive
  after it (threads get :data:`LEAK_GRACE_SECONDS` to finish). Request it, or make it
  autouse in a ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from rxpipe.engines.base import Engine

__all__ = (
    "ENGINES",
    "LEAK_GRACE_SECONDS",
    "engine",
    "make_engine",
    "no_leaks",
    "selected_engines",
)

#: Every engine name the ``engine`` fixture knows, in run order (see :func:`make_engine`).
ENGINES: Final[tuple[str, ...]] = (
    "pull",
    "pull-generic",
    "push-asyncio",
    "push-threads",
    "push-rendezvous",
)
#: How long threads started by a test may take to finish after it.
LEAK_GRACE_SECONDS: Final = 1.0

_OPTION: Final = "--rxpipe-engines"
_DEST: Final = "rxpipe_engines"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--rxpipe-engines``."""
    group = parser.getgroup("rxpipe", "rxpipe")
    group.addoption(
        _OPTION,
        dest=_DEST,
        default=None,
        metavar="NAMES",
        help=f"comma-separated engines for the `engine` fixture (known: {', '.join(ENGINES)})",
    )


def selected_engines(config: pytest.Config) -> tuple[str, ...]:
    """The engines chosen with ``--rxpipe-engines`` (all of :data:`ENGINES` by default)."""
    raw = config.getoption(_DEST, default=None)
    if raw is None:
        return ENGINES
    names = tuple(dict.fromkeys(n.strip() for n in str(raw).split(",") if n.strip()))
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise pytest.UsageError(
            f"{_OPTION}: unknown engine(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(ENGINES)}"
        )
    return names


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's marker; validate ``--rxpipe-engines`` before collection."""
    config.addinivalue_line(
        "markers",
        "rxpipe_allow_threads(*prefixes): the leak check ignores threads with these name "
        "prefixes (process-wide pools of third-party libraries)",
    )
    selected_engines(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``engine`` parametrizations not chosen with ``--rxpipe-engines``."""
    if config.getoption(_DEST, default=None) is None:
        return
    chosen = set(selected_engines(config))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("engine") if callspec is not None else None
        if isinstance(name, str) and name in ENGINES and name not in chosen:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def make_engine(name: str) -> Engine:
    """A fresh engine for one of the names in :data:`ENGINES`.

    ``pull-generic`` is the pull engine without its fused fast path; ``push-rendezvous`` the
    asyncio push engine with unbuffered (``buffer=0``) channels.
    """
    from rxpipe.engines.pull.engine import PullEngine
    from rxpipe.engines.push.engine import PushEngine

    factories: dict[str, Callable[[], Engine]] = {
        "pull": PullEngine,
        "pull-generic": lambda: PullEngine(fuse=False),
        "push-asyncio": lambda: PushEngine(runtime="asyncio"),
        "push-threads": lambda: PushEngine(runtime="threads"),
        "push-rendezvous": lambda: PushEngine(buffer=0, runtime="asyncio"),
    }
    try:
        factory = factories[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(factories)}") from None
    return factory()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    """A fresh engine to run the test on; the test runs once per engine name.

    Pass it as ``engine=`` to any terminal. Its test id is the engine's name.
    """
    return make_engine(request.param)


def _pending_tasks() -> list[asyncio.Task[object]]:
    """Every asyncio task not yet done, on any loop (CPython keeps a weak registry)."""
    registries = [
        getattr(asyncio.tasks, "_scheduled_tasks", None),
        getattr(asyncio.tasks, "_eager_tasks", None),
    ]
    found: list[asyncio.Task[object]] = []
    if registries[0] is None:  # not CPython 3.11-3.13: look at every object instead
        found = [o for o in gc.get_objects() if isinstance(o, asyncio.Task)]
    else:
        for registry in registries:
            if registry is not None:
                found.extend(list(registry))
    return [task for task in found if not task.done()]


def _is_real(thread: threading.Thread) -> bool:
    """Dummy threads (foreign threads seen by ``threading``) never leave the list."""
    dummy = getattr(threading, "_DummyThread", None)
    return thread.is_alive() and not (dummy is not None and isinstance(thread, dummy))


@pytest.fixture
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if a thread or asyncio task it started outlives it.

    ``@pytest.mark.rxpipe_allow_threads("Prefix", ...)`` exempts threads whose names start with
    a prefix: for process-wide pools a third-party library starts once and keeps (Dask's
    ``Dask-Offload``), which no pipeline can join.
    """
    marker = request.node.get_closest_marker("rxpipe_allow_threads")
    allowed: tuple[str, ...] = tuple(marker.args) if marker is not None else ()
    threads_before = set(threading.enumerate())
    tasks_before: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet(_pending_tasks())
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        threads = [
            t
            for t in threading.enumerate()
            if t not in threads_before and _is_real(t) and not t.name.startswith(allowed)
        ]
        tasks = [t for t in _pending_tasks() if t not in tasks_before]
        if not threads and not tasks:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    leaks = [f"thread {t.name!r} (daemon={t.daemon})" for t in threads]
    leaks += [f"asyncio task {t.get_name()!r} ({t.get_coro()!r})" for t in tasks]
    del threads, tasks
    pytest.fail(
        f"leaked after the test (join threads, await or cancel tasks): {'; '.join(leaks)}",
        pytrace=False,
    )
