"""The pytest plugin: the engine fixture, --rxpipe-engines, and the leak check."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rxpipe.testing import pytest_plugin


def test_engine_fixture_runs_each_engine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from rxpipe.testing.pytest_plugin import ENGINES

        def test_engine(engine, request):
            from rxpipe.engines.base import Engine

            assert isinstance(engine, Engine)
            assert request.node.callspec.params["engine"] in ENGINES
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=len(pytest_plugin.ENGINES))
    result.stdout.fnmatch_lines(["*test_engine[[]pull[]] PASSED*"])


def test_rxpipe_engines_option_narrows_the_engines(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytest_plugin, "ENGINES", ("pull", "push-asyncio", "push-threads"))
    pytester.makepyfile(
        """
        import pytest

        # stands in for the fixture once ENGINES has grown: same name, same values
        @pytest.mark.parametrize("engine", ["pull", "push-asyncio", "push-threads"])
        def test_engine(engine):
            pass

        @pytest.mark.parametrize("other", ["pull"])
        def test_unrelated(other):
            pass
        """
    )
    result = pytester.runpytest("--rxpipe-engines=pull,push-asyncio", "-v")
    result.assert_outcomes(passed=3, deselected=1)
    result.stdout.fnmatch_lines(["*test_engine[[]push-asyncio[]] PASSED*"])


def test_unknown_engine_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--rxpipe-engines=pull,warp")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown engine(s) warp*known: pull*"])


def test_no_leaks_passes_a_test_that_joins_its_thread(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading, time

        def test_joined(no_leaks):
            t = threading.Thread(target=time.sleep, args=(0.01,))
            t.start()
            t.join()

        def test_finishes_within_the_grace_period(no_leaks):
            threading.Thread(target=time.sleep, args=(0.05,)).start()
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


@pytest.mark.timeout(10)
def test_no_leaks_fails_a_test_that_leaks_a_thread(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytest_plugin, "LEAK_GRACE_SECONDS", 0.05)
    stop = threading.Event()
    pytester.makepyfile(
        """
        import threading

        def test_leaky(no_leaks, stop):
            threading.Thread(target=stop.wait, name="leaky-thread").start()
        """
    )

    class Stop:
        @pytest.fixture
        def stop(self) -> threading.Event:
            return stop

    try:
        result = pytester.runpytest_inprocess(plugins=[Stop()])
    finally:
        stop.set()
        for thread in threading.enumerate():
            if thread.name == "leaky-thread":
                thread.join(5)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaked after the test*thread 'leaky-thread'*"])


@pytest.mark.timeout(10)
def test_no_leaks_fails_a_test_that_leaves_a_task_pending(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pytest_plugin, "LEAK_GRACE_SECONDS", 0.05)
    loops: list[asyncio.AbstractEventLoop] = []
    pytester.makepyfile(
        """
        import asyncio

        def test_pending_task(no_leaks, loops):
            loop = asyncio.new_event_loop()
            loops.append(loop)
            loop.create_task(asyncio.sleep(10), name="forgotten-task")
        """
    )

    class Loops:
        @pytest.fixture
        def loops(self) -> list[asyncio.AbstractEventLoop]:
            return loops

    try:
        result = pytester.runpytest_inprocess(plugins=[Loops()])
    finally:
        for loop in loops:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaked after the test*asyncio task 'forgotten-task'*"])


def test_no_leaks_ignores_tasks_that_asyncio_run_finished(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        async def main():
            task = asyncio.create_task(asyncio.sleep(10))
            await asyncio.sleep(0)
            return task

        def test_cancelled_by_asyncio_run(no_leaks):
            asyncio.run(main())  # run() cancels what is left
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_selected_engines_defaults_to_all(pytestconfig: pytest.Config) -> None:
    assert pytest_plugin.selected_engines(pytestconfig) == pytest_plugin.ENGINES
    assert pytest_plugin.ENGINES[0] == "pull"


def test_allow_threads_marker_exempts_named_threads_only(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(autouse=True)
        def _leaks(no_leaks):
            pass
        """
    )
    pytester.makepyfile(
        """
        import threading
        import pytest

        stop = threading.Event()

        def teardown_module():
            stop.set()

        @pytest.mark.rxpipe_allow_threads("LibPool")
        def test_allowed():
            threading.Thread(target=stop.wait, name="LibPool_0", daemon=True).start()

        @pytest.mark.rxpipe_allow_threads("LibPool")
        def test_other_names_still_leak():
            threading.Thread(target=stop.wait, name="mine", daemon=True).start()
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*leaked after the test*thread 'mine'*"])
