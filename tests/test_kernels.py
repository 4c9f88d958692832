"""Kernel names resolve the way jupyter_client (and so papermill) resolves them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from handmade_runs import run

from nbci.execute.job import installed_kernel_name
from nbci.model import NotebookResult
from nbci.render.build import build_view
from nbci.results import read_run, write_run


@pytest.mark.parametrize(
    ("name", "installed", "expected"),
    [
        ("python3", ["python3"], "python3"),
        ("python", ["python3"], "python3"),  # KernelManager's alias
        ("Python3", ["python3", "ir"], "python3"),  # kernelspec folders match in any case
        ("IR", ["python3", "ir"], "ir"),
        ("Python", ["python3"], "Python"),  # the alias is exact: jupyter_client finds nothing
        ("conda-env-ml-py", ["python3"], "conda-env-ml-py"),
    ],
)
def test_installed_kernel_name(name: str, installed: list[str], expected: str) -> None:
    assert installed_kernel_name(name, installed) == expected


def test_run_details_say_which_kernels_ran() -> None:
    def result(job_id: str, kernel: str | None) -> NotebookResult:
        return NotebookResult(id=job_id, path="a.ipynb", parameters={}, status="ok", kernel=kernel)

    one = run(result("a", "python3"), result("b", "python3"), result("c", None))
    two = run(result("a", "python3"), result("b", "ir"))
    assert ("Kernel", "python3") in build_view(one).details
    assert ("Kernels", "ir, python3") in build_view(two).details
    assert not any(label.startswith("Kernel") for label, _ in build_view(run()).details)


def test_results_json_keeps_the_kernel(tmp_path: Path) -> None:
    result = NotebookResult(id="a", path="a.ipynb", parameters={}, status="ok", kernel="python3")
    write_run(run(result), tmp_path)
    assert read_run(tmp_path).notebooks[0].kernel == "python3"


@pytest.mark.kernel
def test_a_worker_kills_only_its_own_descendants_in_a_kernels_session() -> None:
    """Issue 22: once a kernel is reaped its session id may name an unrelated process."""
    import subprocess
    import sys

    import psutil

    from nbci.execute.process_tree import kill_session

    script = (
        "import subprocess\nprint(subprocess.Popen(['sleep', '60'], start_new_session=True,\n"
        "    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    stranger = psutil.Process(int(done.stdout))  # in a session of its own, not our descendant
    try:
        if stranger.ppid() == os.getpid():
            pytest.skip("this test process is a child subreaper: the stranger is our child")
        assert stranger.status() != psutil.STATUS_ZOMBIE
        kill_session(stranger.pid, descendants_only=True)
        assert stranger.is_running() and stranger.status() != psutil.STATUS_ZOMBIE
        kill_session(stranger.pid)
        stranger.wait(10)
    finally:
        with contextlib.suppress(psutil.Error):
            stranger.kill()


@pytest.mark.parametrize("ipython_dir", [None, "~/elsewhere"])
def test_kernel_dirs_are_jupyter_clients_without_importing_ipython(
    ipython_dir: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    from nbci.execute.kernels import kernel_dirs

    if ipython_dir is None:
        monkeypatch.delenv("IPYTHONDIR", raising=False)
    else:
        monkeypatch.setenv("IPYTHONDIR", ipython_dir)
    assert kernel_dirs() == KernelSpecManager().kernel_dirs
