"""What `nbci run` prints while notebooks run: start lines, heartbeats, output, groups."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from conftest import NotebookFactory

from nbci import cli, console
from nbci.console import Progress
from nbci.model import ErrorInfo, NotebookResult, Status
from nbci.progress import CellStarted, JobStarted, Output


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result(job_id: str, status: Status = "ok", **fields: Any) -> NotebookResult:
    return NotebookResult(
        id=job_id,
        path=f"{job_id}.ipynb",
        parameters={},
        status=status,
        **fields,
    )


def progress(
    *, github: bool = False, log_output: bool = True
) -> tuple[Progress, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return Progress(log_output=log_output, stream=out, github=github, clock=clock), out, clock


def test_a_log_gets_start_heartbeats_output_and_end_lines() -> None:
    shown, out, clock = progress()
    shown.event(JobStarted("train", 12))
    shown.event(CellStarted("train", 3, 12))
    shown.event(Output("train", "stdout", "epoch 1\nepoch"))
    shown.event(Output("train", "stdout", " 2\n"))
    shown.event(Output("train", "stderr", "warn\x1b[31m red\x1b[0m\n"))
    clock.now += 95
    shown.heartbeat()
    shown.event(Output("train", "stdout", "no newline at the end"))
    shown.finished(result("train", duration_s=95.0, metrics={"accuracy": 0.5}))
    shown.close()
    assert out.getvalue().splitlines() == [
        "▶ train: started, 12 cells",
        "[train] epoch 1",
        "[train] epoch 2",
        "[train:stderr] warn red",
        "… train: cell 3 of 12, 1m35s",
        "[train] no newline at the end",
        "✓ train: passed in 95.0s",
    ]


def test_without_log_output_the_notebooks_output_is_not_printed() -> None:
    shown, out, _ = progress(log_output=False)
    shown.event(JobStarted("a", 1))
    shown.event(Output("a", "stdout", "hello\n"))
    shown.finished(result("a", "failed", error=ErrorInfo(cell=1, ename="KeyError", evalue="'x'")))
    assert out.getvalue().splitlines() == [
        "▶ a: started, 1 cells",
        "✗ a: failed in 0.0s — KeyError: 'x'",
    ]


def test_a_line_of_output_never_starts_a_workflow_command() -> None:
    shown, out, _ = progress(github=True)
    shown.event(JobStarted("a", 1))
    shown.event(Output("a", "stdout", "::add-mask::x\n::endgroup::\n"))
    assert all(
        line.startswith(("::group::a", "▶ a: ", "[a] ")) for line in out.getvalue().splitlines()
    ), out.getvalue()


def test_github_actions_folds_each_notebook_into_its_own_group() -> None:
    shown, out, clock = progress(github=True)
    shown.event(JobStarted("a", 2))
    shown.event(JobStarted("b", 3))
    shown.event(Output("a", "stdout", "a1\n"))
    shown.event(Output("b", "stdout", "b1\n"))
    shown.event(CellStarted("a", 2, 2))
    clock.now += 30
    shown.heartbeat()
    shown.event(JobStarted("c", 1))
    shown.finished(result("c"))  # c ends while a's group is open
    shown.event(Output("b", "stdout", "b2\n"))
    shown.finished(result("a"))  # b's group opens with what it kept
    shown.event(Output("b", "stdout", "b3\n"))
    shown.finished(result("b"))
    shown.finished(result("d", cached=True))  # cached: no group needed
    shown.close()
    assert out.getvalue().splitlines() == [
        "::group::a",
        "▶ a: started, 2 cells",
        "[a] a1",
        "… a: cell 2 of 2, 30s",
        "… b: starting, 30s",
        "::endgroup::",
        "::group::c",
        "▶ c: started, 1 cells",
        "✓ c: passed in 0.0s",
        "::endgroup::",
        "::group::a (continued)",
        "✓ a: passed in 0.0s",
        "::endgroup::",
        "::group::b",
        "▶ b: started, 3 cells",
        "[b] b1",
        "[b] b2",
        "[b] b3",
        "✓ b: passed in 0.0s",
        "::endgroup::",
        "✓ d: passed (cached) in 0.0s",
    ]


# -- a real run ----------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("github", [False, True])
def test_a_run_in_ci_shows_start_heartbeats_output_and_end(
    project: Path,
    notebook: NotebookFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    github: bool,
) -> None:
    notebook(
        "notebooks/slow.ipynb",
        [
            "print('hello')\nimport sys; print('careful', file=sys.stderr)",
            "import time\ntime.sleep(3)",
            "print('done')",
        ],
    )
    monkeypatch.setattr(console, "HEARTBEAT_S", 0.25)
    if github:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
    else:
        monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    code = cli.main(["run", "--log-output", "--no-cache", "--out", "o"])
    lines = capsys.readouterr().out.splitlines()
    assert code == cli.EXIT_OK, lines
    started = lines.index("▶ slow: started, 3 cells")
    assert lines[started + 1 : started + 3] == ["[slow] hello", "[slow:stderr] careful"]
    beats = [i for i, line in enumerate(lines) if line.startswith("… slow: cell 2 of 3, ")]
    done = lines.index("[slow] done")
    end = next(i for i, line in enumerate(lines) if line.startswith("✓ slow: passed in "))
    assert started < beats[0] < done < end
    if github:
        assert (lines[started - 1], lines[end + 1]) == ("::group::slow", "::endgroup::")
    else:
        assert not any(line.startswith("::") for line in lines)
