"""The output folder: one run at a time writes it, and stale staging folders of dead runs
(never of live ones) are cleared."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from nbci.cli import EXIT_RUN, main
from nbci.staging import _PID_FILE, Staging, output_lock

NO_SUCH_PID = 4_194_305
"""Above Linux's largest process id (2**22): never a running process."""


def test_a_second_run_into_the_same_folder_is_refused_in_one_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "nbci-out"
    out.mkdir()
    (out / "results.json").write_text("{}")

    with output_lock(out):  # the first run, still going
        assert main(["run"]) == EXIT_RUN

    err = capsys.readouterr().err
    assert err.startswith(f"nbci: error: output directory {out}: another nbci run is writing")
    assert err.count("\n") == 1
    assert (out / "results.json").read_text() == "{}"
    assert [p.name for p in project.iterdir() if ".staging-" in p.name] == []


def test_the_lock_is_free_again_after_a_run_and_after_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "nbci-out"
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("the run failed")
    with output_lock(out), Staging(out) as staging:
        (staging / "results.json").write_text("{}")
    assert (out / "results.json").is_file()


def stale_staging(parent: Path, pid_file: str) -> Path:
    folder = parent / f".nbci-out.staging-{abs(hash(pid_file))}"
    folder.mkdir()
    (folder / _PID_FILE).write_text(pid_file)
    return folder


def started(pid: int) -> str:
    return repr(psutil.Process(pid).create_time())


def test_staging_of_another_users_live_run_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`os.kill(pid, 0)` says PermissionError for another user's process: it is alive."""

    def not_yours(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_yours)
    theirs = stale_staging(tmp_path, "1")  # as written by an earlier nbci: the pid alone
    theirs_now = stale_staging(tmp_path, f"1 {started(1)}")

    with Staging(tmp_path / "nbci-out"):
        pass

    assert theirs.is_dir() and theirs_now.is_dir()


def test_a_reused_process_id_does_not_keep_a_dead_runs_staging(tmp_path: Path) -> None:
    me = os.getpid()
    live = stale_staging(tmp_path, f"{me} {started(me)}")
    reused = stale_staging(tmp_path, f"{me} 12345.0")  # a process of this id that ended
    dead = stale_staging(tmp_path, f"{NO_SUCH_PID} 12345.0")
    garbled = stale_staging(tmp_path, "not a pid")

    with Staging(tmp_path / "nbci-out") as staging:
        pid, when = (staging / _PID_FILE).read_text().split()

    assert (int(pid), when) == (me, started(me))
    assert live.is_dir()
    assert not reused.exists() and not dead.exists() and not garbled.exists()
