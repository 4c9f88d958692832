"""Interrupted runs: SIGINT (Ctrl-C, to the whole process group) and SIGTERM (to nbci)
while a kernel starts, in the middle of a cell, and while the results and reports
are written.

Whatever the moment, the output directory is either the previous complete run
(byte for byte) or a new valid one, partial and marked interrupted: results.json
reads back, both reports exist, never a half-written file. No process of the
run is left. A second run afterwards works and leaves no staging folder behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from nbci.model import NotebookResult, Run
from nbci.render import write_reports
from nbci.results import read_run, write_run

from .support import cli_env, command_line, kill_tagged, leftovers, nbci, new_tag, tagged

OUTPUTS = ("results.json", "report.md", "report.html")
HOLD = """\
import pathlib
import time

pathlib.Path("started").write_text("yes")
while pathlib.Path("hold").exists():  # the test removes it for the second run
    time.sleep(0.05)"""
WAIT_S = 120


def previous_run(out: Path) -> dict[str, bytes]:
    """A complete earlier run in `out`; returns its files' bytes."""
    result = NotebookResult(
        id="earlier", path="notebooks/earlier.ipynb", parameters={}, status="ok",
        metrics={"accuracy": 0.5},
    )  # fmt: skip
    run = Run(notebooks=(result,), created="2026-11-26T22:00:00Z")
    write_run(run, out)
    write_reports(run, out)
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def start(args: list[str], cwd: Path, tag: str) -> subprocess.Popen[str]:
    """`nbci ARGS` in a process group of its own, like a command run from a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "nbci", *args],
        cwd=cwd,
        env=cli_env(tag),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def interrupt(process: subprocess.Popen[str], signum: int) -> None:
    """Ctrl-C reaches the whole foreground group; SIGTERM (CI cancelling) only nbci."""
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)


def wait_for(condition: Callable[[], bool], what: str, *, every: float = 0.002) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(every)


def kernel_starting(tag: str) -> bool:
    """A kernel is being started: launched, or forked from (or by) the template process."""
    return any(
        marker in command_line(pid)
        for pid in tagged(tag)
        for marker in ("ipykernel_launcher", "nbci.execute.fork_server")
    )


def writing(project: Path, process: subprocess.Popen[str]) -> bool:
    """The run has written results.json into its own staging folder (or has ended).

    A staging folder names its run's pid; one left by an earlier killed run is not it.
    """
    for staging in project.glob(".nbci-out.staging-*"):
        try:
            mine = (staging / ".nbci-pid").read_text().split()[0] == str(process.pid)
        except OSError:
            continue
        if mine and (staging / "results.json").exists():
            return True
    return process.poll() is not None


def check_output(out: Path, previous: dict[str, bytes]) -> str:
    """The output directory is the previous run or a new valid one; says which."""
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    run = read_run(out)  # never half-written
    files = {name: (out / name).read_bytes() for name in OUTPUTS}
    if files == previous:
        return "previous"
    assert files["results.json"] != previous["results.json"]  # never a mix of old and new
    assert files["report.md"] and files["report.html"].rstrip().endswith(b"</html>")
    if run.interrupted:
        assert b"interrupted" in files["report.md"]
        return "partial"
    return "complete"


def second_run(project: Path, *args: str) -> None:
    (project / "notebooks" / "hold").unlink(missing_ok=True)
    tag = new_tag()
    try:
        done = nbci(["run", *args], project, tag=tag)
        assert leftovers(tag) == []
    finally:
        kill_tagged(tag)
    assert done.returncode == 0, done.stdout + done.stderr
    run = read_run(project / "nbci-out")
    assert not run.interrupted and run.ok
    siblings = sorted(p.name for p in project.iterdir() if p.name.startswith(".nbci-out"))
    assert siblings == [".nbci-out.lock"]  # no staging folder; the (free) lock file stays


@pytest.mark.kernel
@pytest.mark.tools
@pytest.mark.parametrize(
    ("moment", "signum"),
    [
        ("kernel-start", signal.SIGINT),
        ("kernel-start", signal.SIGTERM),
        ("mid-cell", signal.SIGINT),
        ("mid-cell", signal.SIGTERM),
    ],
    ids=["kernel-start-sigint", "kernel-start-sigterm", "mid-cell-sigint", "mid-cell-sigterm"],
)
def test_a_signal_while_notebooks_run(
    project: Path, notebook: Callable[..., Path], moment: str, signum: int
) -> None:
    held = notebook("notebooks/held.ipynb", [HOLD])
    (held.parent / "hold").write_text("")
    out = project / "nbci-out"
    previous = previous_run(out)
    tag = new_tag()
    process = start(["run", "--no-cache"], project, tag)
    try:
        if moment == "kernel-start":
            wait_for(lambda: kernel_starting(tag), "a kernel to start", every=0.01)
        else:
            wait_for(lambda: (held.parent / "started").exists(), "the cell to start")
        interrupt(process, signum)
        stdout, stderr = process.communicate(timeout=WAIT_S)
        assert leftovers(tag) == []
    finally:
        process.kill()
        kill_tagged(tag)

    assert process.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert check_output(out, previous) == "partial"
    interrupted = read_run(out).get("held")
    assert interrupted is not None and interrupted.status == "interrupted"
    second_run(project)


SLOW_REPORT = """\
import nbci

nbci.glue("many", {f"m{i}": i / 7 for i in range(4000)})
nbci.glue("text", "t" * 90_000)
nbci.glue("table", {"nbci.table": 1, "columns": ["c"] * 50, "rows": [[1] * 50] * 1000,
                    "total_rows": 1000})"""


@pytest.mark.kernel
@pytest.mark.tools
def test_a_signal_while_the_results_and_reports_are_written(
    project: Path, notebook: Callable[..., Path]
) -> None:
    """Once cached, a run spends its time restoring and writing: signals land there.

    Each attempt waits until results.json appears in the staging folder, then
    signals after a random delay: while the reports are written, during the
    swap into place, or just after. The random seed is printed for a failing attempt.
    """
    for i in range(3):
        notebook(f"notebooks/big{i}.ipynb", [textwrap.dedent(SLOW_REPORT)])
    out = project / "nbci-out"
    first = nbci(["run"], project)  # fills the cache; later runs execute nothing
    assert first.returncode == 0, first.stdout + first.stderr
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    seen = set()
    for attempt in range(6):
        previous = {name: (out / name).read_bytes() for name in OUTPUTS}
        signum = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        delay = chance.uniform(0, 0.9)  # writing takes ~0.8 s here
        process = start(["run"], project, new_tag())
        try:
            wait_for(partial(writing, project, process), "results.json in the staging folder")
            time.sleep(delay)
            interrupt(process, signum)
            stdout, stderr = process.communicate(timeout=WAIT_S)
        finally:
            process.kill()
        where = f"attempt {attempt}, seed {seed}, {signal.Signals(signum).name} after {delay:.3f} s"
        assert "Traceback" not in stderr, where
        # Killed by the signal itself when it lands after nbci's own handling ended.
        assert process.returncode in (0, 1, -signal.SIGINT, -signal.SIGTERM), (
            where + stdout + stderr
        )
        seen.add(check_output(out, previous))
    assert seen <= {"previous", "complete"}  # the notebooks were done: nothing partial
    second_run(project)


def slow_exit(project: Path, job_id: str) -> str:
    """A cell whose kernel, once asked to exit, holds on in `atexit` (SIGTERM ignored: the
    worker kills it 2 s after asking) while `hold` exists, and says in `exit.txt` whether
    it saw the reports of its run (they name `job_id`) meanwhile."""
    return textwrap.dedent(f"""\
        import atexit, pathlib, signal, time

        def hold_on():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            project = pathlib.Path({str(project)!r})
            def say(what):  # whole or not at all: the worker kills this kernel at some point
                pathlib.Path("exit.tmp").write_text(what)
                pathlib.Path("exit.tmp").replace("exit.txt")

            say("waiting")
            written = False
            while pathlib.Path("hold").exists():
                staged = project.glob(".nbci-out.staging-*/report.md")
                for report in [*staged, project / "nbci-out/report.md"]:
                    try:
                        written = written or {job_id!r} in report.read_text()
                    except OSError:
                        pass  # swapped into place meanwhile
                if written:
                    say("reports written")
                    break
                time.sleep(0.01)
            while pathlib.Path("hold").exists():
                time.sleep(0.01)

        atexit.register(hold_on)""")


@pytest.mark.kernel
@pytest.mark.tools
def test_the_reports_are_written_while_the_last_kernel_exits(
    project: Path, notebook: Callable[..., Path]
) -> None:
    """A kernel takes a while to exit: the run writes its reports meanwhile, and still
    leaves nothing running. The held notebook runs second, in a worker that already
    rendered one, so that the reports come well within the kernel's 2 s to exit."""
    notebook("notebooks/a_first.ipynb", ["x = 1"])
    held = notebook("notebooks/b_last.ipynb", [slow_exit(project, "b_last")])
    (held.parent / "hold").write_text("")
    tag = new_tag()
    try:
        done = nbci(["run", "--jobs", "1"], project, tag=tag)
        assert leftovers(tag) == []
    finally:
        kill_tagged(tag)

    assert done.returncode == 0, done.stdout + done.stderr
    assert (held.parent / "exit.txt").read_text() == "reports written"
    assert read_run(project / "nbci-out").ok


@pytest.mark.kernel
@pytest.mark.tools
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
@pytest.mark.parametrize("moment", ["writing", "written"])
def test_a_signal_while_the_last_kernel_exits(
    project: Path, notebook: Callable[..., Path], signum: int, moment: str
) -> None:
    """Every result is in, the last kernel is still exiting: a signal while the reports are
    written, or once they are, stops the workers and kernels at once and ends the run as it
    would have ended a moment later (SIGINT: "interrupted", exit code 1; SIGTERM: killed by
    it), with nothing left running. As in the test above, the held notebook runs second in
    its worker; the first one makes the reports slow to write when the signal is to land
    while they are written."""
    first = textwrap.dedent(SLOW_REPORT) if moment == "writing" else "x = 1"
    notebook("notebooks/a_first.ipynb", [first])
    held = notebook("notebooks/b_held.ipynb", [slow_exit(project, "b_held")])
    (held.parent / "hold").write_text("")
    out = project / "nbci-out"
    previous = previous_run(out)
    tag = new_tag()
    process = start(["run", "--no-cache", "--jobs", "1"], project, tag)
    exiting = held.parent / "exit.txt"

    def ready() -> bool:
        if moment == "writing":
            return exiting.is_file() and writing(project, process)
        return (exiting.is_file() and exiting.read_text() != "waiting") or ended()

    def ended() -> bool:
        return process.poll() is not None

    try:
        wait_for(ready, f"the kernel to hold on while the reports are {moment}")
        assert not ended(), "the run ended before the signal: its last kernel did not hold on"
        if moment == "written":
            assert exiting.read_text() == "reports written"
        interrupt(process, signum)
        stdout, stderr = process.communicate(timeout=WAIT_S)
        assert leftovers(tag) == []
    finally:
        process.kill()
        process.wait()
        kill_tagged(tag)

    assert "Traceback" not in stderr
    if signum == signal.SIGINT:  # -SIGINT: Python's own exit after a KeyboardInterrupt that
        # went through `exec` of a string (dataclasses, jinja2), even though nbci caught it
        assert process.returncode in (1, -signal.SIGINT), stdout + stderr
        assert "interrupted" in stderr
    else:
        assert process.returncode == -signal.SIGTERM, stdout + stderr
    assert check_output(out, previous) in ("previous", "complete")  # the notebook was done
    second_run(project)


SWAP_DRIVER = """
import os
import signal
import sys
from pathlib import Path

from nbci import staging

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
real_replace = os.replace


def replace_then_signal(source, target):
    real_replace(source, target)
    os.kill(os.getpid(), signal.SIGTERM)  # lands between the two renames of the swap


staging.os.replace = replace_then_signal
staging._swap_into_place(folder, out)
"""


@pytest.mark.tools
def test_a_signal_between_the_two_renames_of_the_swap_waits(tmp_path: Path) -> None:
    """The swap moves the old run aside, then the new one in: a signal between the two
    used to leave no output directory at all (and the next run deleted the old one)."""
    out, staging = tmp_path / "nbci-out", tmp_path / ".nbci-out.staging-x"
    previous_run(out)
    new = previous_run(staging)
    driver = tmp_path / "driver.py"
    driver.write_text(SWAP_DRIVER)

    done = subprocess.run(
        [sys.executable, str(driver), str(staging), str(out)],
        env=cli_env(new_tag()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == -signal.SIGTERM, done.stderr  # it did die, after the swap
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == new
    read_run(out)


def test_a_run_killed_mid_swap_is_restored_by_the_next(tmp_path: Path) -> None:
    """SIGKILL cannot be held off: the next run puts the previous run back first."""
    from nbci.staging import Staging

    out = tmp_path / "nbci-out"
    aside = tmp_path / ".nbci-out.old-killed"
    previous = previous_run(aside / "run")

    with pytest.raises(RuntimeError), Staging(out):
        raise RuntimeError("this run fails before its swap")

    assert {name: (out / name).read_bytes() for name in OUTPUTS} == previous
    assert not aside.exists()
