"""One template per run, shared by the workers, and the nannies of forked kernels (issue 21),
in real kernels.

The run's parent starts the base template; its set templates serve every
worker; each forked kernel's parent is a nanny that reports the kernel's exit
code on the fork request's connection and kills what the kernel left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import NotebookFactory
from fresh_python import run_script
from processes import assert_all_gone
from test_fork import START, read, run, save

from nbci.model import Job

FAMILY = """\
import os, psutil
nanny = psutil.Process(os.getppid())
record['worker'] = int(os.environ['JPY_PARENT_PID'])
record['nanny'] = nanny.pid
record['set_template'] = nanny.ppid()
record['base'] = psutil.Process(nanny.ppid()).ppid()
record['base_parent'] = psutil.Process(record['base']).ppid()"""
"""Who the kernel's nanny, set template and base template are."""

STRAY = """\
import subprocess
record['stray'] = subprocess.Popen(['sleep', '600'], start_new_session=True).pid"""


@pytest.mark.kernel
def test_two_workers_fork_from_one_set_template(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    """Four notebooks with the same imports on two workers: one base and one set template
    for the run (each worker had its own of both before), and none left after it."""
    jobs = []
    for index in range(4):
        record = tmp_path / f"{index}.json"
        notebook(f"notebooks/n{index}.ipynb", [START, "import numpy", FAMILY, save(record)])
        jobs.append(Job(f"n{index}", f"notebooks/n{index}.ipynb"))

    results = run(jobs, project, workers=2)

    assert {r.status for r in results.values()} == {"ok"}
    records = [read(tmp_path / f"{index}.json") for index in range(4)]
    assert all(r["forked"] for r in records)
    assert len({r["worker"] for r in records}) == 2
    assert len({r["set_template"] for r in records}) == 1
    assert len({r["base"] for r in records}) == 1
    assert {r["base_parent"] for r in records} == {os.getpid()}  # the run's parent
    everything = [r[key] for r in records for key in ("pid", "nanny", "set_template", "base")]
    assert_all_gone(everything, workers={r["worker"] for r in records})


@pytest.mark.kernel
def test_a_forked_kernels_death_and_its_strays_go_through_its_nanny(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    """The exit code a kernel dies with reaches its job (exit code, or the signal), and what
    it started in a session of its own is gone; so is what a kernel whose worker was
    killed had started, and the kernel itself."""
    cells = {
        "exits": ["import os\nos._exit(3)"],
        "killed": ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
        "worker": ["import os, signal\nos.kill(record['worker'], signal.SIGKILL)"],
    }
    jobs = []
    for name, last in cells.items():
        record = tmp_path / f"{name}.json"
        notebook(
            f"notebooks/{name}.ipynb", [START, "import numpy", FAMILY, STRAY, save(record), *last]
        )
        jobs.append(Job(name, f"notebooks/{name}.ipynb"))

    results = run(jobs, project, workers=2)

    records = {name: read(tmp_path / f"{name}.json") for name in cells}
    assert all(r["forked"] for r in records.values())
    errors = {name: str(results[name].error) for name in cells}
    assert results["exits"].status == "died" and "the kernel died (exit code 3)" in errors["exits"]
    assert results["killed"].status == "died" and "(killed by SIGKILL)" in errors["killed"]
    assert results["worker"].status == "died" and "worker process" in errors["worker"]
    assert_all_gone(
        [r[key] for r in records.values() for key in ("pid", "stray", "nanny", "worker")],
        workers={r["worker"] for r in records.values()},
    )


NANNY = """
import json, os, signal, sys, tempfile, time
from pathlib import Path

import psutil
from jupyter_client.manager import KernelManager

from nbci.execute.fork_client import Template
from nbci.execute.provisioner import ForkingKernelSpecManager, register


def main():
    register()
    folder = Path(tempfile.mkdtemp())
    template = Template(folder, dict(os.environ), folder / "project")
    template.wait_ready(60)
    socket = str(template.fork_set([]).socket_path)
    seen = {}
    for how in ("shutdown", "exit", "sigkill"):
        km = KernelManager(
            kernel_name="python3", kernel_spec_manager=ForkingKernelSpecManager(socket)
        )
        km.start_kernel(cwd=str(folder))
        process = km.provisioner.process
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        reply = kc.execute_interactive(
            "import subprocess\\n"
            "stray = subprocess.Popen(['sleep', '600'], start_new_session=True).pid",
            user_expressions={"stray": "stray"},
            timeout=30,
        )
        stray = int(reply["content"]["user_expressions"]["stray"]["data"]["text/plain"])
        if how == "shutdown":
            km.shutdown_kernel(now=False)
        else:
            ending = "os._exit(3)" if how == "exit" else "os.kill(os.getpid(), 9)"
            kc.execute("import os; " + ending)
            process.wait(30)
        try:
            stray_left = psutil.Process(stray).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            stray_left = False
        seen[how] = {"code": process.returncode, "stray_left": stray_left}
        kc.stop_channels()
        km.cleanup_resources()
    template.stop()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
"""


@pytest.mark.kernel
def test_a_forked_kernels_exit_code_comes_from_its_nanny_once_its_strays_are_gone(
    tmp_path: Path,
) -> None:
    """Through jupyter_client: shut down (0), `os._exit(3)` (3), SIGKILL (-9); the moment
    the code arrives, the kernel's child in a session of its own is already gone."""
    seen = run_script(NANNY, tmp_path)
    assert seen == {
        "shutdown": {"code": 0, "stray_left": False},
        "exit": {"code": 3, "stray_left": False},
        "sigkill": {"code": -9, "stray_left": False},
    }


@pytest.mark.kernel  # (a process of its own, like the nanny's)
def test_strays_are_looked_for_only_by_a_process_with_a_child(tmp_path: Path) -> None:
    """`kill_strays` (a nanny's, after its kernel ended; a worker's) scans the process table
    only when its process has a child (`has_children`): a child counts until reaped, and
    what outlives its parent below a subreaper becomes the subreaper's child."""
    seen = run_script(
        """
        import json, os, signal, time
        import psutil
        from nbci.execute.process_tree import become_subreaper, has_children

        seen = [has_children()]
        child = os.fork()
        if child == 0:
            os._exit(0)
        time.sleep(0.2)
        seen.append(has_children())  # ended, not reaped
        os.waitpid(child, 0)
        seen.append(has_children())
        become_subreaper()
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        os.waitpid(child, 0)
        seen.append(has_children())  # its orphan
        for orphan in psutil.Process().children():
            os.kill(orphan.pid, signal.SIGKILL)
            os.waitpid(orphan.pid, 0)
        seen.append(has_children())
        print(json.dumps(seen))
        """,
        tmp_path,
    )
    assert seen == [False, True, False, True, False]
