"""A 200-job sweep stays readable (issue 21): the comment is bounded, every job id is in the HTML.

The runs are built by hand (`handmade_runs`): what is checked is the reports'
shape and memory at that size, not execution. How long `nbci merge` of eight shards
of such a sweep takes, and the parent process's peak memory of real runs of 12 and 200
notebooks, are measured in `benchmarks/bench.py --sweep` and `--memory`, not asserted here.
"""

from __future__ import annotations

import random
import re
import sys
import tracemalloc
from pathlib import Path

import pytest
from handmade_runs import nb, run

from nbci import schemas
from nbci.formats import PNG_SIGNATURE
from nbci.model import ErrorInfo, Figure, NotebookResult, Run
from nbci.publish.comment import COMMENT_LIMIT, comment_body
from nbci.render import html_report, markdown_report, write_reports
from nbci.render.markdown import MAX_CHARS

JOBS = 200


def sweep(jobs: int = JOBS) -> Run:
    """A matrix sweep: one notebook, `jobs` parameter sets, each with metrics and a figure; a
    few failed."""
    notebooks: list[NotebookResult] = []
    for i in range(jobs):
        job_id = f"sweep-seed-{i}-lr-0.{i % 7}"
        base = nb(job_id, "ok", accuracy=0.5 + i / 1000, loss=1.0 - i / 1000, steps=100 + i)
        failed = i % 50 == 13
        notebooks.append(
            NotebookResult(
                **{
                    **base.__dict__,
                    "path": "notebooks/sweep.ipynb",
                    "parameters": {"seed": i, "lr": float(f"0.{i % 7}")},
                    "status": "failed" if failed else "ok",
                    "error": ErrorInfo(
                        cell=2, ename="ValueError", evalue=f"bad seed {i}", traceback="tb"
                    )
                    if failed
                    else None,
                    "figures": (Figure("curve", f"figures/{job_id}/curve.png"),),
                }
            )
        )
    return run(*notebooks)


def test_a_200_job_comment_is_bounded_and_names_what_it_left_out() -> None:
    report = markdown_report(sweep())
    assert len(report) <= MAX_CHARS
    assert len(comment_body("nbci", report)) <= COMMENT_LIMIT
    note = next(line for line in report.splitlines() if "Not everything is shown here" in line)
    assert "of 200 notebooks are left out" in note and "report.html" in note
    for i in range(JOBS):
        if i % 50 == 13:  # every failure is named in the comment
            assert f"sweep-seed-{i}-lr-0.{i % 7}" in report


def test_every_job_of_a_200_job_run_is_reachable_in_the_html() -> None:
    """Each job id is a link in the results table to that job's own card."""
    html = html_report(sweep())
    anchors = set(re.findall(r'<details class="nb card" id="([^"]+)"', html))
    for i in range(JOBS):
        job_id = f"sweep-seed-{i}-lr-0.{i % 7}"
        link = re.search(rf'<a href="#([^"]+)">{re.escape(job_id)}</a>', html)
        assert link is not None, f"{job_id}: not linked"
        assert link[1] in anchors, f"{job_id}: its link goes nowhere"
        card = html.index(f'id="{link[1]}"')
        assert f'<span class="nb-id">{job_id}</span>' in html[card : card + 400], job_id
    assert len(anchors) == JOBS


FIGURE_BYTES = 32 * 1024


def report_memory(tmp_path: Path, jobs: int) -> int:
    """Bytes tracemalloc saw allocated at the peak of writing the reports of a `jobs`-job
    sweep whose every job has a 32 KiB figure (inlined in report.html), above the start.

    The reports are written once before, untraced: imports, compiled templates and the
    sweep's charts (kept in the chart store, as a warm run keeps them) are paid there."""
    the_run, out = sweep(jobs), tmp_path / str(jobs)
    figure = PNG_SIGNATURE + random.Random(0).randbytes(FIGURE_BYTES)
    for path in {f.path for job in the_run.notebooks for f in job.figures}:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(figure)
    store = tmp_path / "charts"
    write_reports(the_run, out, chart_store=store)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        write_reports(the_run, out, chart_store=store)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') >= jobs  # every figure was inlined
    return peak - start


def test_the_reports_of_200_jobs_take_hardly_more_memory_than_those_of_12(
    tmp_path: Path,
) -> None:
    """report.html is written as it is rendered: 200 jobs' inlined figures (8 MiB of base64)
    are never held at once. What grows with the jobs is their results and the view."""
    small, large = report_memory(tmp_path, 12), report_memory(tmp_path, 200)
    per_job = (large - small) / (200 - 12)
    assert per_job < FIGURE_BYTES / 2, (
        f"{per_job / 1024:.0f} KiB more per job (12 jobs: {small / 2**20:.1f} MiB, "
        f"200: {large / 2**20:.1f} MiB)"
    )


@pytest.mark.usefixtures("rfc3987_syntax_stand_in")
def test_checking_a_run_does_not_import_rfc3987_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    """jsonschema imports it for the `iri` formats nbci never checks, compiling 38 grammars:
    about 2 s of every `nbci merge` (python-jsonschema/jsonschema#1428)."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("jsonschema", "rfc3987_syntax")]:
        monkeypatch.delitem(sys.modules, name)  # as in a fresh process; put back afterwards
    monkeypatch.setattr(schemas, "_validator", schemas._validator.__wrapped__)

    assert schemas.first_problem({}, "results-2.schema.json") is not None

    assert "jsonschema" in sys.modules
    assert "rfc3987_syntax" not in sys.modules
