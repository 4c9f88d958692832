"""The lane guard (tests/lanes.py): a test that starts a process without a lane marker fails."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

INNER_TESTS = """
import multiprocessing
import subprocess

import pytest


@pytest.fixture(scope="module")
def started_once():
    subprocess.run(["true"], check=True)


def test_starts_nothing():
    assert True


def test_git_is_allowed():
    subprocess.run(["git", "--version"], check=True, capture_output=True)


def test_unmarked_program():
    subprocess.run(["true"], check=True)


@pytest.mark.tools
def test_marked_program():
    subprocess.run(["true"], check=True)


def test_unmarked_worker():
    worker = multiprocessing.get_context("fork").Process(target=print)
    worker.start()
    worker.join()


@pytest.mark.tools
def test_marked_user_of_the_fixture(started_once):
    pass


def test_unmarked_user_of_the_fixture(started_once):
    pass
"""


@pytest.mark.tools  # its own tests start `true`, git and a worker
def test_unmarked_tests_that_start_processes_fail(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\naddopts = -p lanes --strict-markers\nmarkers =\n"
        "    kernel: k\n    browser: b\n    tools: t\n"
    )
    pytester.makepyfile(test_inner=INNER_TESTS)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-n", "0")

    outcomes = {
        report.nodeid.split("::")[-1]: report.outcome
        for report in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if report.when == "teardown"
    }
    assert outcomes == {
        "test_starts_nothing": "passed",
        "test_git_is_allowed": "passed",
        "test_unmarked_program": "failed",
        "test_marked_program": "passed",
        "test_unmarked_worker": "failed",
        "test_marked_user_of_the_fixture": "passed",
        "test_unmarked_user_of_the_fixture": "failed",
    }
    result.stdout.fnmatch_lines(["*test_unmarked_program started true but has none of the*"])
