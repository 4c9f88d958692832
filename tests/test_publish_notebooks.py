"""nbci.publish.notebooks: which executed notebooks go to the assets branch, trimmed for GitHub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from scrapbook_outputs import scrap

from nbci.model import NotebookResult, Run, Status
from nbci.publish import notebooks
from nbci.publish.notebooks import notebook_assets


def executed(out_dir: Path, job_id: str, outputs: list[dict[str, Any]], start: str) -> str:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.id = "cell-0"  # as in the source notebook
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    cell.metadata["execution"] = {"iopub.status.busy": start}
    cell.metadata["papermill"] = {"start_time": start, "duration": 1.5, "status": "completed"}
    nb.cells = [cell]
    nb.metadata["papermill"] = {"start_time": start, "end_time": start, "parameters": {}}
    relative = f"notebooks/{job_id}.ipynb"
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (out_dir / relative).write_text(json.dumps(nb))
    return relative


def stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def result(job_id: str, output: str | None, status: Status = "ok") -> NotebookResult:
    return NotebookResult(
        id=job_id, path=f"{job_id}.ipynb", parameters={}, status=status, output=output
    )


def run_of(*results: NotebookResult) -> Run:
    return Run(notebooks=results, created="2026-12-01T00:00:00Z")


def test_failed_notebooks_first_and_always_the_others_within_the_total(tmp_path: Path) -> None:
    big = stream("x" * 300_000)
    run = run_of(
        result("a", executed(tmp_path, "a", [big], "t0")),
        result("b", executed(tmp_path, "b", [big], "t0")),
        result("c", executed(tmp_path, "c", [big], "t0"), status="failed"),
    )

    found = notebook_assets(run, tmp_path, "pr/7", total_limit=700_000)

    assert [a.path for a in found.assets] == ["pr/7/notebooks/c.ipynb", "pr/7/notebooks/a.ipynb"]
    assert found.paths == {"c": "pr/7/notebooks/c.ipynb", "a": "pr/7/notebooks/a.ipynb"}
    assert found.skipped == ("b: over the 0 MiB for all notebooks",)

    failed_only = notebook_assets(run, tmp_path, "pr/7", total_limit=10)
    assert list(failed_only.paths) == ["c"]  # a failed notebook is kept whatever the total


def test_huge_outputs_become_notes_and_payloads_go(tmp_path: Path) -> None:
    outputs = [
        stream("kept\n"),
        stream("y" * (notebooks.MAX_OUTPUT_BYTES + 10)),
        scrap("loss", [1.0, 0.5]),
    ]
    run = run_of(result("a", executed(tmp_path, "a", outputs, "t0")))

    (asset,) = notebook_assets(run, tmp_path, "pr/7").assets

    nb = nbformat.reads(asset.data.decode("ascii"), as_version=4)
    nbformat.validate(nb)  # GitHub renders it
    texts = [o.get("text", "") for o in nb.cells[0].outputs]
    assert texts[0] == "kept\n"
    assert "removed by nbci" in texts[1] and len(texts[1]) < 200
    assert not any("scrapbook" in key for key in nb.cells[0].outputs[2]["data"])


def test_many_medium_outputs_are_cut_until_the_notebook_fits(tmp_path: Path) -> None:
    outputs = [stream("z" * 900_000) for _ in range(8)]
    run = run_of(result("a", executed(tmp_path, "a", outputs, "t0")))

    (asset,) = notebook_assets(run, tmp_path, "pr/7").assets

    assert len(asset.data) <= notebooks.MAX_NOTEBOOK_BYTES
    kept = [o for o in json.loads(asset.data)["cells"][0]["outputs"] if "z" * 100 in o["text"]]
    assert len(kept) == 5


def test_the_same_outputs_at_another_time_are_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    one = run_of(result("a", executed(first, "a", [stream("loss 0.3\n")], "2026-12-01T00:00")))
    two = run_of(result("a", executed(second, "a", [stream("loss 0.3\n")], "2026-12-02T09:00")))

    (a,) = notebook_assets(one, first, "pr/7").assets
    (b,) = notebook_assets(two, second, "pr/7").assets

    assert a.sha == b.sha  # assets.store will not upload it again


def test_untrusted_paths_and_files_are_refused(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (tmp_path / "secret.ipynb").write_text('{"cells": []}')
    (out_dir / "bad.ipynb").write_text("not json")
    (out_dir / "link.ipynb").symlink_to(tmp_path / "secret.ipynb")
    run = run_of(
        result("up", "../secret.ipynb"),
        result("bad", "bad.ipynb"),
        result("link", "link.ipynb"),
        result("missing", "nope.ipynb"),
        result("invalid", None, status="invalid"),
    )

    found = notebook_assets(run, out_dir, "pr/7")

    assert found.assets == ()
    assert found.skipped == (
        "up: not a regular file inside the run directory",
        "bad: not a readable notebook",
        "link: not a regular file inside the run directory",
        "missing: the executed notebook is missing",
    )
