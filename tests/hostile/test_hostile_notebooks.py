"""Broken notebooks, through a real `nbci run`: each gets its status and a one-line reason,
and no process it started is left running.

One run of the fixture notebooks in `notebooks/broken/` (kernel starts are
expensive): invalid JSON, nbformat 3, zero bytes, no cells, no `parameters`
cell but given parameters, a kernel that is not installed, `sys.exit()`, a
child process and a forked copy of the kernel that would outlive it, and a
cell that never returns (and ignores SIGINT and SIGTERM) under a short
`--cell-timeout`. Notebooks that start processes write their pids to
`<name>.record.json` beside them; every process of the run carries a tag in
its environment, so the whole process table is checked too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nbci.model import Status
from nbci.results import read_run
from nbci.vocabulary import status_label

from .support import (
    FIXTURES,
    alive,
    changes,
    copy_fixtures,
    kill_tagged,
    leftovers,
    nbci,
    new_tag,
    snapshot,
)

CONFIG = """\
[project]
name = "demo"

[[tool.nbci.notebook]]
path = "broken/no_parameters_cell.ipynb"
parameters = { alpha = 1 }
"""

# job id (folder `broken/` + file name) -> (status, what its one-line reason says)
EXPECTED: dict[str, tuple[Status, str]] = {
    "broken-invalid_json": (
        "invalid",
        "broken/invalid_json.ipynb: not a readable notebook: invalid JSON at line 2, column 1",
    ),
    "broken-zero_bytes": ("invalid", "broken/zero_bytes.ipynb: not a readable notebook"),
    "broken-nbformat3": ("invalid", "names no kernel"),
    "broken-no_parameters_cell": (
        "invalid",
        "has no cell tagged 'parameters', so it cannot take alpha",
    ),
    "broken-missing_kernel": ("invalid", "unknown kernel 'no-such-kernel-nbci' (installed: "),
    "broken-sys_exit": ("failed", "SystemExit: 3"),
    "broken-never_returns": ("timeout", "cell 2 ran longer than the cell timeout (4 s)"),
    "broken-no_cells": ("ok", ""),
    "broken-popen_child": ("ok", ""),
    "broken-fork_child": ("ok", ""),
}


def recorded_pids(folder: Path) -> dict[str, list[int]]:
    """What each process-starting notebook wrote: its kernel and its children."""
    found = {}
    for record in folder.glob("*.record.json"):
        data = json.loads(record.read_text())
        found[record.name] = [data["kernel"], *data["children"]]
    return found


@pytest.mark.kernel
@pytest.mark.tools
def test_broken_notebooks_get_a_status_and_a_reason_and_leave_no_process(
    project: Path, tmp_path: Path
) -> None:
    (project / "pyproject.toml").write_text(CONFIG)
    broken = copy_fixtures("broken", project / "broken")
    before = snapshot(tmp_path)
    tag = new_tag()
    try:
        done = nbci(
            ["run", "broken", "--no-cache", "--cell-timeout", "4", "--jobs", "2"], project, tag=tag
        )
        left = leftovers(tag)
        pids = recorded_pids(broken)
    finally:
        kill_tagged(tag)

    assert left == [], "processes outlived the run"
    assert set(pids) == {"popen.record.json", "fork.record.json", "never.record.json"}
    assert len(pids["popen.record.json"]) == 4  # the kernel, two children, a grandchild
    assert [pid for group in pids.values() for pid in group if alive(pid)] == []

    assert done.returncode == 1, done.stdout + done.stderr  # some notebooks did not pass
    assert "Traceback" not in done.stdout + done.stderr
    run = read_run(project / "nbci-out")
    assert {nb.id: nb.status for nb in run.notebooks} == {
        job: status for job, (status, _) in EXPECTED.items()
    }
    for nb in run.notebooks:
        status, reason = EXPECTED[nb.id]
        if status == "ok":
            assert nb.error is None
            continue
        assert nb.error is not None
        summary = nb.error.summary
        assert reason in summary and "\n" not in summary and len(summary) < 400, summary
        assert f"{nb.id}: {status_label(status)}" in done.stdout  # the progress line says it too
    exited, never_returns = run.get("broken-sys_exit"), run.get("broken-never_returns")
    assert exited is not None and exited.error is not None and exited.error.cell == 1
    assert never_returns is not None
    assert never_returns.output == "notebooks/broken-never_returns.ipynb"
    for report in ("report.md", "report.html"):
        assert (project / "nbci-out" / report).stat().st_size > 0

    # Only the output directory (and its free lock file) changed, and what the notebooks
    # wrote themselves.
    after = snapshot(tmp_path)
    written = [f"project/broken/{name}" for name in pids]
    allowed = ["project/nbci-out", "project/.nbci-out.lock", "project/.nbci-cache", *written]
    assert changes(before, after, allowed=allowed) == []


@pytest.mark.kernel
@pytest.mark.tools
def test_a_child_in_a_session_of_its_own_is_stopped_too(project: Path) -> None:
    """setsid / start_new_session=True leaves the kernel's session: the worker, a child
    subreaper, still finds it among its descendants."""
    escape = copy_fixtures("escape", project / "escape")
    tag = new_tag()
    try:
        done = nbci(["run", "escape", "--no-cache"], project, tag=tag)
        left = leftovers(tag, wait=3)
    finally:
        kill_tagged(tag)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (escape / "escape.record.json").is_file()
    assert left == []


@pytest.mark.kernel
@pytest.mark.tools
def test_a_notebook_whose_file_name_is_not_utf8_is_invalid_not_a_crash(project: Path) -> None:
    """Its path could not be written to results.json: the whole run used to crash."""
    folder = project / "notebooks"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.ipynb")  # Latin-1 bytes, as an old tool may have written them
    shutil.copy(FIXTURES / "broken" / "no_cells.ipynb", folder / name)

    done = nbci(["run"], project)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (nb,) = read_run(project / "nbci-out").notebooks
    assert nb.status == "invalid" and nb.path == "notebooks/caf\ufffd.ipynb"
    assert nb.error is not None and "not valid UTF-8" in nb.error.summary


def test_nbcis_own_outputs_are_never_taken_for_notebooks_to_run(project: Path) -> None:
    """`nbci run .` used to run the previous run's executed copies too (as new jobs)."""
    from nbci.config import load_config
    from nbci.plan import plan

    (project / "nbci.toml").write_text('cache_dir = "cache"\nnotebooks = ["**/*.ipynb"]\n')
    for place in ("notebooks", "nbci-out/notebooks", "elsewhere/notebooks", "cache/entries/k"):
        (project / place).mkdir(parents=True)
        shutil.copy(FIXTURES / "broken" / "no_cells.ipynb", project / place / "a.ipynb")
    config = load_config(project)

    assert [job.path for job in plan(config, [project]).jobs] == [
        "elsewhere/notebooks/a.ipynb",
        "notebooks/a.ipynb",
    ]
    assert [job.path for job in plan(config).jobs] == [
        "elsewhere/notebooks/a.ipynb",
        "notebooks/a.ipynb",
    ]
    chosen = plan(config, [project], out_dir=project / "elsewhere").jobs  # --out elsewhere
    assert [job.path for job in chosen] == ["nbci-out/notebooks/a.ipynb", "notebooks/a.ipynb"]
