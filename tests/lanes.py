"""Test lanes: a test that starts a process says which kind, so `--fast` can leave it out.

The markers (declared in pyproject.toml) are `kernel`, `browser` and `tools`.
This plugin watches every way a test can start a process (subprocess, asyncio
subprocesses and Jupyter kernels through it, multiprocessing, fork) and fails a
test that started one without any of the markers, even through a fixture.
With `NBCI_LANE_SURVEY=FILE`, it only appends what each test started to FILE.
"""

from __future__ import annotations

import json
import multiprocessing.process
import os
import subprocess
from collections.abc import Generator
from typing import Any

import pytest

LANES = ("kernel", "browser", "tools")
"""Markers (declared in pyproject.toml) of tests that start processes; `--fast` skips them."""
QUICK_PROGRAMS = {"git"}
"""Programs any test may start: nbci asks git for the commit of every new run, in milliseconds."""

_started: list[str] | None = None
"""What the running test (or fixture) has started so far (None between tests)."""
_started_by_fixture: dict[str, list[str]] = {}
"""What a fixture started while it was set up: every test that uses it needs the lane too."""


def _note_start(what: str) -> None:
    if _started is not None and what not in QUICK_PROGRAMS:
        _started.append(what)


_popen_init = subprocess.Popen.__init__
_process_start = multiprocessing.process.BaseProcess.start


def _recording_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
    _note_start(_program(args))
    _popen_init(self, args, *rest, **kw)


def _program(args: Any) -> str:
    """`git`, `node`, `python -m nbci`: what a command line starts, for messages."""
    if isinstance(args, str | bytes | os.PathLike):
        args = os.fsdecode(args).split() or [""]
    words = [os.path.basename(os.fsdecode(args[0])), *map(str, args[1:3])]
    return " ".join(words) if words[0].startswith("python") else words[0]


def _recording_process_start(self: multiprocessing.process.BaseProcess) -> None:
    _note_start("a multiprocessing worker")
    _process_start(self)


subprocess.Popen.__init__ = _recording_popen_init  # type: ignore[method-assign]
multiprocessing.process.BaseProcess.start = _recording_process_start  # type: ignore[method-assign]
os.register_at_fork(before=lambda: _note_start("a forked process"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _started
    _started = []


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Generator[None, Any, None]:
    before = len(_started or [])
    yield
    if _started is not None and len(_started) > before:
        _started_by_fixture[fixturedef.argname] = _started[before:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """After teardown: a test that started a process without a lane marker fails."""
    global _started
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.when != "teardown" or _started is None:
        return
    fixtures = item.fixturenames if isinstance(item, pytest.Function) else []
    by_fixtures = [what for name in fixtures for what in _started_by_fixture.get(name, [])]
    started, _started = sorted({*_started, *by_fixtures}), None
    lanes = [lane for lane in LANES if item.get_closest_marker(lane)]
    survey = os.environ.get("NBCI_LANE_SURVEY")
    if survey:  # a file to append what each test started to, for choosing its markers
        with open(survey, "a") as f:
            f.write(json.dumps({"test": item.nodeid, "started": started, "lanes": lanes}) + "\n")
    elif started and not lanes and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} started {', '.join(started)} but has none of the markers "
            f"{', '.join(LANES)}: mark it so that `scripts/test.sh --fast` leaves it out"
        )
