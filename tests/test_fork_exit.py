"""How a forked kernel ends (issue 21), in real kernels: as the interpreter would end it
(threads, `atexit`, garbage), but without tearing down the modules it shares with its
template, which only copied pages (0.3 s of CPU per kernel with the usual stack)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import NotebookFactory
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
