"""nbci.notebook_outputs: what a worker adds to an executed notebook's result (no kernels).

The pipeline hands `collect_outputs` to the executor, which calls it in each worker;
a problem while collecting or rendering is a note on the result, never a crash.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from scrapbook_outputs import scrap

from nbci import collect
from nbci.execute.settings import ExecuteOptions, WorkerSettings
from nbci.model import Job, NotebookResult
from nbci.notebook_outputs import collect_outputs, warm_up_outputs

JOB = Job(id="train", path="notebooks/train.ipynb")
HTML = "notebooks/train.html"


def executed(out_dir: Path) -> Path:
    """A saved executed notebook that glued `loss`, as a worker leaves it."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("sb.glue('loss', 0.25)")
    cell.outputs = [nbformat.from_dict(scrap("loss", 0.25))]
    nb.cells = [cell]
    path = out_dir / "notebooks" / "train.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def ran(notes: tuple[str, ...] = ("said before it ran",)) -> NotebookResult:
    return replace(NotebookResult.of(JOB, "ok"), output="notebooks/train.ipynb", notes=notes)


def test_adds_what_the_notebook_glued_and_its_html(tmp_path: Path) -> None:
    notebook = executed(tmp_path)

    result = collect_outputs(ran(), JOB, notebook=notebook, out_dir=tmp_path, html=HTML)

    assert dict(result.metrics) == {"loss": 0.25}
    assert result.html == HTML and (tmp_path / HTML).is_file()
    assert result.notes == ("said before it ran",)


def test_a_failure_to_collect_is_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> collect.Collected:
        raise RuntimeError("a bug\nin collect")

    monkeypatch.setattr(collect, "collect_notebook", broken)
    notebook = executed(tmp_path)

    with caplog.at_level(logging.WARNING, logger="nbci"):
        result = collect_outputs(ran(), JOB, notebook=notebook, out_dir=tmp_path, html=HTML)

    assert result.notes == (
        "said before it ran",
        "results could not be collected: a bug in collect",
    )
    assert (dict(result.metrics), result.html) == ({}, None)
    assert "train: cannot collect results" in caplog.messages


def test_a_failure_to_render_keeps_what_was_collected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notebook = executed(tmp_path)
    (tmp_path / "html").write_text("a file where the HTML's folder should be")

    with caplog.at_level(logging.WARNING, logger="nbci"):
        result = collect_outputs(
            ran(), JOB, notebook=notebook, out_dir=tmp_path, html="html/train.html"
        )

    assert dict(result.metrics) == {"loss": 0.25} and result.html is None
    assert result.notes[0] == "said before it ran"
    assert result.notes[1].startswith("the notebook could not be rendered as HTML: ")
    assert "train: cannot render HTML" in caplog.messages


def test_reaches_spawned_workers_by_reference(tmp_path: Path) -> None:
    """Workers are spawned: their settings, the hook included, are pickled."""
    options = ExecuteOptions(
        root=tmp_path,
        out_dir=tmp_path / "out",
        after_notebook=collect_outputs,
        warm_up=warm_up_outputs,
    )
    settings = WorkerSettings.make(options, JOB, tmp_path)

    assert pickle.loads(pickle.dumps(settings)).after_notebook is collect_outputs
    assert pickle.loads(pickle.dumps(settings)).warm_up is warm_up_outputs
