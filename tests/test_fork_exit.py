"""How a forked kernel ends (issue 21), in real kernels: as the interpreter would end it
(threads, `atexit`, garbage), but without tearing down the modules it shares with its
template, which only copied pages (0.3 s of CPU per kernel with the usual stack)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import NotebookFactory
from fork_drivers import driver
from fresh_python import run_script
from processes import assert_all_gone
from test_fork import START, read, run, save

from nbci.model import Job


def ending(folder: Path) -> str:
    """A notebook's cell that leaves work for the kernel's exit: an `atexit` handler, a file
    written but never closed, and garbage in a reference cycle whose `__del__` writes."""
    return f"""\
import atexit
atexit.register(lambda: open({str(folder / "atexit.txt")!r}, "w").write("ran"))
unclosed = open({str(folder / "unclosed.txt")!r}, "w")
unclosed.write("buffered, never closed")
class Cycle:
    def __del__(self):
        open({str(folder / "cycle.txt")!r}, "w").write("collected")
cycle = Cycle()
cycle.me = cycle
del cycle"""


@pytest.mark.kernel
def test_a_forked_kernel_ends_its_notebooks_work_as_a_fresh_one_does(
    project: Path, notebook: NotebookFactory, tmp_path: Path
) -> None:
    forked, fresh = tmp_path / "forked", tmp_path / "fresh"
    for folder in (forked, fresh):
        folder.mkdir()
        record = folder / "record.json"
        notebook(
            f"notebooks/{folder.name}.ipynb", [START, "import numpy", ending(folder), save(record)]
        )

    results = run([Job("forked", "notebooks/forked.ipynb")], project, workers=1)
    results |= run([Job("fresh", "notebooks/fresh.ipynb")], project, workers=1, preload=False)

    assert {r.status for r in results.values()} == {"ok"}
    assert read(forked / "record.json")["forked"] and not read(fresh / "record.json")["forked"]
    for folder in (forked, fresh):
        assert (folder / "atexit.txt").read_text() == "ran", folder.name
        assert (folder / "unclosed.txt").read_text() == "buffered, never closed", folder.name
        assert (folder / "cycle.txt").read_text() == "collected", folder.name
    assert_all_gone(read(folder / "record.json")["pid"] for folder in (forked, fresh))


# -- ipykernel's shutdown race ------------------------------------------------------------

LATE_FLUSH = driver("""
# After answering a shutdown request, ipykernel's control thread flushes stdout and stderr.
# Here that comes 0.2 s late, as on a busy machine, or as soon as the output thread begins to
# stop, which here takes 0.2 s: a flush meanwhile would never get through. (All in a closure:
# IPython's `atexit` handler empties the notebook's namespace before the output thread stops.)
LATE = '''
def arrange(kernel):
    import sys, threading, time
    answer = kernel.control_handlers["shutdown_request"]
    answered, stopping = threading.Event(), threading.Event()
    async def shutdown_request(*args):
        await answer(*args)
        answered.set()
    output_loop = kernel.iopub_thread.io_loop
    stop = output_loop.stop
    def stop_slowly():
        stopping.set()
        time.sleep(0.2)
        stop()
    def late(flush):
        def flush_late():
            if answered.is_set() and threading.current_thread() is not threading.main_thread():
                stopping.wait(0.2)
            flush()
        return flush_late
    kernel.control_handlers["shutdown_request"] = shutdown_request
    output_loop.stop = stop_slowly
    for stream in (sys.stdout, sys.stderr):
        stream.flush = late(stream.flush)
arrange(get_ipython().kernel)
'''


def main():
    template, km, folder = forking()
    km.start_kernel(cwd=str(folder))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    reply = kc.execute_interactive(LATE, timeout=30, output_hook=lambda m: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    process = km.provisioner.process
    km.request_shutdown()
    try:  # (stuck, it waits 10 s for its stopped output thread)
        seen = {"exit_code": process.wait(8)}
    except subprocess.TimeoutExpired:
        seen = {"exit_code": "still running"}
    km.shutdown_kernel(now=True)
    kc.stop_channels()
    template.stop()
    print(json.dumps(seen))
""")


@pytest.mark.kernel
def test_a_forked_kernel_asked_to_shut_down_exits_although_its_control_thread_flushes_late(
    tmp_path: Path,
) -> None:
    """ipykernel's `atexit` handlers stop its output thread, then wait for the control
    thread; a flush the control thread makes after that waited for the stopped thread, and
    the kernel until it was killed (`fork_server._let_the_shutdown_request_finish`)."""
    assert run_script(LATE_FLUSH, tmp_path) == {"exit_code": 0}
