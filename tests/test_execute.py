"""Executing jobs in worker processes, in real kernels.

Kernel starts are expensive, so each test groups several cases into one
`execute_jobs` call. Fixture notebooks (`tests/notebooks/exec_*.ipynb`) take a
`record` parameter: a file where they write their kernel's pid, its worker
(`ppid`: JPY_PARENT_PID, the kernel's parent unless the kernel was forked: then
its parent is its nanny) and any children they forked, so the tests can check
the process table afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from fresh_python import run_python
from processes import assert_all_gone

from nbci.execute import ExecuteOptions, execute_jobs, pool, strip_ansi
from nbci.model import Job, NotebookResult
from nbci.notebook_outputs import collect_outputs, warm_up_outputs

FIXTURES = Path(__file__).parent / "notebooks"


@pytest.fixture
def notebooks(project: Path) -> Path:
    """The exec_* fixture notebooks copied into `project/notebooks`."""
    folder = project / "notebooks"
    folder.mkdir()
    for fixture in FIXTURES.glob("exec_*.ipynb"):
        shutil.copy(fixture, folder / fixture.name)
    return folder


def run(jobs: list[Job], project: Path, **options: Any) -> dict[str, NotebookResult]:
    """Run as the pipeline does: the workers collect and render (unless told otherwise)."""
    options.setdefault("after_notebook", collect_outputs)
    settings = ExecuteOptions(root=project, out_dir=project / "nbci-out", **options)
    results = list(execute_jobs(jobs, settings))
    assert sorted(r.id for r in results) == sorted(j.id for j in jobs)
    return {r.id: r for r in results}


def job(job_id: str, notebook: str, **kwargs: Any) -> Job:
    return Job(id=job_id, path=f"notebooks/exec_{notebook}.ipynb", **kwargs)


def read_record(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# -- tests --------------------------------------------------------------------------


@pytest.mark.kernel
def test_every_status_in_one_run(project: Path, notebooks: Path, tmp_path: Path) -> None:
    records = {name: tmp_path / f"{name}.json" for name in ("ok", "cell", "whole", "died")}
    (notebooks / "broken.ipynb").write_text("{ this is not json")
    jobs = [
        job("ok", "params", parameters={"x": 3, "label": "hi", "record": str(records["ok"])}),
        job("failed", "fail", parameters={"n": 7}),
        job("cell-timeout", "sleep", parameters={"record": str(records["cell"])}, cell_timeout=2),
        job("whole-timeout", "sleep", parameters={"record": str(records["whole"])}, timeout=3),
        job("died", "die", parameters={"record": str(records["died"])}),
        Job(id="broken", path="notebooks/broken.ipynb"),
        job("no-kernel", "params", kernel="no-such-kernel"),
    ]

    results = run(jobs, project, workers=2)

    ok = results["ok"]
    assert (ok.status, ok.error) == ("ok", None)
    assert ok.metrics["result"] == 30  # x=3 injected
    assert ok.scraps["label"].value == "hi"
    assert ok.output == "notebooks/ok.ipynb" and ok.html == "notebooks/ok.html"
    assert (project / "nbci-out" / ok.html).is_file()
    assert ok.duration_s > 0
    assert read_record(records["ok"])["cwd"] == str(notebooks.resolve())

    failed = results["failed"]
    assert failed.status == "failed" and failed.error is not None
    # as Jupyter numbers the cells (`In [4]`): parameters, injected-parameters, `a = n`, the raise
    assert (failed.error.cell, failed.error.ename, failed.error.evalue) == (
        4,
        "ValueError",
        "boom 7",
    )
    assert failed.error.traceback and "boom 7" in failed.error.traceback
    assert "\x1b" not in failed.error.traceback
    executed = nbformat.read(project / "nbci-out" / str(failed.output), as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))

    cell = results["cell-timeout"]
    assert cell.status == "timeout" and cell.error is not None and cell.error.cell == 4
    assert "cell timeout (2 s)" in str(cell.error.message)
    assert cell.output == "notebooks/cell-timeout.ipynb"
    for stopped in (cell, results["whole-timeout"]):  # the cell shows how it was stopped
        executed = nbformat.read(project / "nbci-out" / str(stopped.output), as_version=4)
        last = [c for c in executed.cells if c.cell_type == "code"][-1]
        assert [o.get("ename") for o in last.outputs if o.output_type == "error"] == [
            "KeyboardInterrupt"
        ]

    whole = results["whole-timeout"]
    assert whole.status == "timeout" and whole.error is not None
    assert "notebook ran longer than its timeout (3 s)" in str(whole.error.message)

    died = results["died"]
    assert died.status == "died" and died.error is not None and died.error.cell == 4
    assert "exit code 3" in str(died.error.message)
    assert died.output == "notebooks/died.ipynb"

    for invalid in ("broken", "no-kernel"):
        result = results[invalid]
        assert result.status == "invalid" and result.output is None and result.error is not None
        assert "\n" not in str(result.error.message)
    broken, no_kernel = results["broken"].error, results["no-kernel"].error
    assert broken is not None and "not a readable notebook" in str(broken.message)
    assert no_kernel is not None and "no-such-kernel" in str(no_kernel.message)
    assert not (project / "nbci-out" / "notebooks" / "broken.ipynb").exists()

    recorded = [read_record(path) for path in records.values()]
    assert_all_gone(
        [r["pid"] for r in recorded] + [c for r in recorded for c in r.get("children", [])],
        workers={r["ppid"] for r in recorded},
    )


@pytest.mark.kernel
def test_fresh_kernel_per_job_and_a_worker_crash(
    project: Path, notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker in turn: no state leaks, a crash kills only its job, a warm kernel of
    the wrong kind is discarded."""
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]}
    kernel_dir = tmp_path / "jupyter" / "kernels" / "nbci-other"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(
        json.dumps({**spec, "display_name": "other", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    record = {name: tmp_path / f"{name}.json" for name in ("a", "b", "crash", "c", "d")}
    jobs = [
        job("a", "params", parameters={"x": 1, "record": str(record["a"])}),
        job("b", "params", parameters={"x": 2, "record": str(record["b"])}),
        job("crash", "kill_worker", parameters={"record": str(record["crash"])}),
        job("c", "params", parameters={"x": 4, "record": str(record["c"])}),
        job("d", "params", parameters={"x": 5, "record": str(record["d"])}, kernel="nbci-other"),
    ]

    results = run(jobs, project, workers=1)

    a, b, crash, c, d = (read_record(record[name]) for name in ("a", "b", "crash", "c", "d"))
    assert results["d"].status == "ok" and results["d"].metrics["result"] == 50
    assert c["ppid"] == d["ppid"]  # the warm python3 kernel was there; d got its own kind
    assert a["ppid"] == b["ppid"] == crash["ppid"]  # one worker ran them in turn
    assert a["pid"] != b["pid"]
    assert b["leaked"] is False and results["b"].metrics["leaked"] is False
    assert results["crash"].status == "died"
    crash_error = results["crash"].error
    assert crash_error is not None and "worker process" in str(crash_error.message)
    assert results["c"].status == "ok" and results["c"].metrics["result"] == 40
    assert c["ppid"] != crash["ppid"]  # a new worker took over
    assert_all_gone([a["pid"], b["pid"], crash["pid"], c["pid"]], workers={a["ppid"], c["ppid"]})


@pytest.mark.kernel
def test_a_hung_worker_is_killed_after_the_timeout(
    project: Path, notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "HARD_TIMEOUT_GRACE_S", 0.5)
    record = tmp_path / "hung.json"
    parameters = {"record": str(record), "sig": "SIGSTOP"}  # the notebook freezes its worker
    jobs = [job("hung", "kill_worker", parameters=parameters, timeout=5)]

    results = run(jobs, project, workers=1)

    assert results["hung"].status == "timeout"
    hung_error = results["hung"].error
    assert hung_error is not None and "was killed" in str(hung_error.message)
    hung = read_record(record)
    assert_all_gone([hung["pid"], hung["ppid"]], workers=[hung["ppid"]])


@pytest.mark.kernel
def test_without_warm_kernels(project: Path, notebooks: Path, tmp_path: Path) -> None:
    record = tmp_path / "cold.json"
    jobs = [job("cold", "params", parameters={"x": 5, "record": str(record)})]

    results = run(jobs, project, workers=1, warm_kernels=False)

    assert results["cold"].status == "ok" and results["cold"].metrics["result"] == 50
    assert_all_gone([read_record(record)["pid"]], workers=[read_record(record)["ppid"]])


@pytest.mark.kernel
def test_execute_alone_returns_the_result_as_it_ran(project: Path, notebooks: Path) -> None:
    """Without `after_notebook` (the pipeline passes collect and render) nothing is collected."""
    results = run([job("ok", "params", parameters={"x": 3})], project, after_notebook=None)

    ok = results["ok"]
    assert (ok.status, ok.output, ok.html) == ("ok", "notebooks/ok.ipynb", None)
    assert (dict(ok.metrics), dict(ok.scraps), ok.figures) == ({}, {}, ())
    assert (project / "nbci-out" / "notebooks" / "ok.ipynb").is_file()
    assert not (project / "nbci-out" / "notebooks" / "ok.html").exists()


RECORD_VARIABLE = "NBCI_TEST_WARM_UP_RECORD"
"""The file the workers' hooks below append their lines to (the workers inherit it)."""


def _record(line: str) -> None:
    with open(os.environ[RECORD_VARIABLE], "a") as record:
        record.write(line + "\n")


def warm_up_and_record() -> None:
    """The pipeline's warm-up, then which worker ran it, in which thread, at which priority."""
    warm_up_outputs()
    priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    _record(f"warm-up {os.getpid()} {threading.current_thread().name} {priority}")


def failing_warm_up() -> None:
    raise RuntimeError("the warm-up broke")


def collect_and_record(
    result: NotebookResult, job: Job, *, notebook: Path, out_dir: Path, html: str
) -> NotebookResult:
    """`collect_outputs`, after saying whether its worker had already imported nbconvert."""
    _record(f"collect {os.getpid()} {'nbconvert' in sys.modules}")
    return collect_outputs(result, job, notebook=notebook, out_dir=out_dir, html=html)


@pytest.mark.kernel
def test_a_worker_warms_up_aside_while_it_waits_for_its_template(
    project: Path, notebooks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker's one-time cost of collecting (nbconvert's import and template) is paid by
    `warm_up`, once, in a thread of its own at the lowest priority, before the first notebook
    is collected: the first notebook's collecting costs what every later one's does."""
    record = tmp_path / "record.txt"
    monkeypatch.setenv(RECORD_VARIABLE, str(record))
    jobs = [job(name, "params", parameters={"x": 2}) for name in ("first", "second")]

    results = run(
        jobs, project, workers=1, after_notebook=collect_and_record, warm_up=warm_up_and_record
    )

    assert all(r.status == "ok" and r.html and r.metrics["result"] == 20 for r in results.values())
    lines = [line.split() for line in record.read_text().splitlines()]
    worker = lines[0][1]
    assert lines == [
        ["warm-up", worker, "nbci-warm-up", "19"],
        ["collect", worker, "True"],
        ["collect", worker, "True"],
    ]


@pytest.mark.kernel
def test_a_failing_warm_up_changes_nothing_and_none_runs_without_templates(
    project: Path,
    notebooks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="nbci")
    record = tmp_path / "record.txt"
    monkeypatch.setenv(RECORD_VARIABLE, str(record))

    failed = run([job("ok", "params", parameters={"x": 3})], project, warm_up=failing_warm_up)
    fresh = run(
        [job("fresh", "params", parameters={"x": 4})],
        project,
        preload=False,
        after_notebook=collect_and_record,
        warm_up=warm_up_and_record,
    )

    ok = failed["ok"]
    assert (ok.status, ok.html, ok.metrics["result"], ok.notes) == (
        "ok",
        "notebooks/ok.html",
        30,
        (),
    )
    assert (project / "nbci-out" / "notebooks" / "ok.html").is_file()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "warming up" in r.getMessage()]
    assert [(level, message.splitlines()[0]) for level, message in said] == [
        (logging.DEBUG, "warming up the worker failed")
    ]
    assert "RuntimeError: the warm-up broke" in said[0][1]  # with its traceback
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert fresh["fresh"].status == "ok" and fresh["fresh"].html
    (line,) = record.read_text().splitlines()  # without templates, no warm-up
    assert line.startswith("collect ") and line.endswith(" False")


DRIVER = """
import sys
from pathlib import Path

from nbci.errors import Interrupted
from nbci.execute import ExecuteOptions, execute_jobs
from nbci.model import Job


def main():
    project, record, progress = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    jobs = [
        Job("quick", "notebooks/exec_params.ipynb", {"x": 1}),
        Job("long", "notebooks/exec_sleep.ipynb", {"seconds": 600, "record": record}),
    ]
    options = ExecuteOptions(root=project, out_dir=project / "nbci-out", workers=2)
    try:
        for result in execute_jobs(jobs, options):
            with progress.open("a") as f:
                f.write(f"{result.id} {result.status}\\n")
    except Interrupted as error:
        print("INTERRUPTED", error)
        sys.exit(3)


if __name__ == "__main__":
    main()
"""


@pytest.mark.kernel
@pytest.mark.tools
@pytest.mark.parametrize("to_group", [False, True], ids=["sigterm-to-nbci", "ctrl-c-to-group"])
def test_a_signal_stops_workers_and_kernels(
    project: Path, notebooks: Path, tmp_path: Path, to_group: bool
) -> None:
    """SIGTERM to the nbci process alone, or SIGINT to its whole group as Ctrl-C sends it."""
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    record, progress = tmp_path / "long.json", tmp_path / "progress.txt"
    process = subprocess.Popen(
        [sys.executable, str(driver), str(project), str(record), str(progress)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a command run from a terminal
    )
    try:
        deadline = time.monotonic() + 120
        while not (record.exists() and progress.exists()) and process.poll() is None:
            assert time.monotonic() < deadline, "the long cell never started"
            time.sleep(0.1)
        time.sleep(0.3)  # the record is written just before the cell's sleep
        if to_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 3, stderr
    assert "INTERRUPTED" in stdout
    assert progress.read_text().split() == ["quick", "ok"]  # what finished was yielded
    long = read_record(record)
    assert_all_gone([long["pid"], long["ppid"], *long["children"]], workers=[long["ppid"]])


def test_strip_ansi() -> None:
    coloured = "\x1b[0;31mValueError\x1b[0m: boom\x1b]8;;http://x\x07link\x1b]8;;\x07"
    assert strip_ansi(coloured) == "ValueError: boomlink"


def test_no_jobs_no_workers(project: Path) -> None:
    assert list(execute_jobs([], ExecuteOptions(root=project, out_dir=project / "out"))) == []
    assert not (project / "out").exists()


def test_kernels_share_the_cores_unless_the_user_set_thread_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbci.execute.kernels import THREAD_VARIABLES, kernel_environment

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    environment = kernel_environment(2)
    assert environment["OMP_NUM_THREADS"] == environment["OPENBLAS_NUM_THREADS"] == "2"
    assert environment["MKL_NUM_THREADS"] == "7"


@pytest.mark.tools
def test_a_worker_imports_papermill_without_the_clients_of_remote_stores(project: Path) -> None:
    notebook = project / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    code = textwrap.dedent(f"""\
        import sys
        from nbci.execute.worker import PAPERMILL_REMOTE_STORES, _import_papermill
        _import_papermill()
        print(sorted(name for name in PAPERMILL_REMOTE_STORES if name in sys.modules))
        from papermill.iorw import load_notebook_node
        print(load_notebook_node({str(notebook)!r}).nbformat)
        import github  # still importable by anything else in the worker
        print(github.Github.__name__)""")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "4", "Github"]


@pytest.mark.tools
def test_a_worker_finds_kernels_and_renders_notebooks_without_importing_ipython(
    project: Path,
) -> None:
    """IPython is the kernels' business: imported for jupyter_client's kernelspec folders
    and nbconvert's lexer, it cost each worker 0.3 s of CPU."""
    notebook = project / "plain.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.getcwd())")]
    nbformat.write(nb, notebook)
    code = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from jupyter_client.kernelspec import KernelSpecManager
        from nbci.execute.kernels import kernel_dirs
        from nbci.execute.worker import _import_papermill
        from nbci.render.notebook_html import render_notebook_html
        _import_papermill()
        specs = KernelSpecManager(kernel_dirs=kernel_dirs())
        print("python3" in specs.find_kernel_specs(), specs.get_kernel_spec("python3").language)
        render_notebook_html(Path({str(notebook)!r}), Path({str(project / "plain.html")!r}))
        print("IPython" in sys.modules)""")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True python", "False"]


def test_worker_log_records_are_forwarded_and_a_failure_is_reported_not_swallowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging
    import multiprocessing

    from nbci.execute.protocol import Log, Sender
    from nbci.execute.worker import _ForwardHandler

    parent, child = multiprocessing.Pipe()  # a pipe, no process
    handler = _ForwardHandler(Sender(child))

    def record(name: str, message: str, *args: object) -> logging.LogRecord:
        return logging.getLogger(name).makeRecord(
            name, logging.WARNING, "x.py", 1, message, args, None
        )

    handler.handle(record("nbci.execute", "kernel %s died", "k1"))
    handler.handle(record("papermill", "Timeout waiting for execute reply"))
    unpicklable = record("nbci.execute", "cannot travel")
    unpicklable.handle = lambda: None  # an extra attribute a pipe cannot carry
    handler.handle(unpicklable)

    first, second = parent.recv(), parent.recv()
    assert isinstance(first, Log) and first.record.getMessage() == "kernel k1 died"
    assert first.record.levelno == logging.WARNING
    assert second.record.levelno == logging.DEBUG  # another library's error is a status here
    assert not parent.poll(0.1)
    assert "--- Logging error ---" in capsys.readouterr().err


def test_a_running_notebook_is_saved_at_most_every_second_and_always_at_its_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """papermill saved at each cell's start and end; quick cells now share a save, while
    the start and the end (where a failure's error is written) always save."""
    import papermill.engines

    from nbci.execute import engine

    saves: list[str] = []
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: saves.append(path))

    def run_cells() -> int:
        saves.clear()
        cells = [nbformat.v4.new_code_cell("pass") for _ in range(20)]
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"papermill": {}})
        manager = engine._manager_class()(nb, output_path="x.ipynb", progress_bar=False)
        manager.notebook_start()
        for index, cell in enumerate(manager.nb.cells):
            manager.cell_start(cell, index)
            manager.cell_complete(cell, index)
        manager.notebook_complete()
        return len(saves)

    assert run_cells() == 2  # 20 quick cells, well within a second
    monkeypatch.setattr(engine, "SAVE_EVERY_S", 0.0)
    assert run_cells() == 2 + 2 * 20  # papermill's own rhythm
