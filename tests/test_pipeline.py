"""The orchestrator: what it records around the executor (the executor itself is faked)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import NotebookFactory

from nbci import pipeline
from nbci.cli import _results_table
from nbci.config import load_config
from nbci.errors import Interrupted
from nbci.model import NotebookResult
from nbci.progress import JobStarted


def test_an_interrupted_notebook_keeps_how_long_it_ran_and_one_never_started_shows_none(
    project: Path, notebook: NotebookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook("notebooks/running.ipynb", ["pass"])
    notebook("notebooks/waiting.ipynb", ["pass"])

    def executed(*args: Any) -> Iterator[NotebookResult]:
        on_event = args[-1]
        on_event(JobStarted("running", cells=1))
        time.sleep(0.05)
        raise Interrupted("SIGINT")
        yield  # a generator, like the real one

    monkeypatch.setattr(pipeline, "_executed", executed)
    outcome = pipeline.run(load_config(project), pipeline.RunRequest(use_cache=False))

    running, waiting = outcome.run.notebooks
    assert running.status == waiting.status == "interrupted"
    assert running.duration_s > 0 and running.ran_for == running.duration_s
    assert waiting.duration_s == 0 and waiting.ran_for is None
    rows = _results_table(outcome.run.notebooks).splitlines()
    assert rows[2].split()[-1].endswith("s") and rows[3].split()[-1] == "–"
    report = (outcome.out_dir / "report.md").read_text()
    assert "0.00 s" not in report


def test_a_run_prunes_the_cache_once_after_storing_every_result(
    project: Path, notebook: NotebookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pruning reads every entry of the cache: after each of 200 jobs it was most of a large
    run's parent CPU time."""
    from nbci import cache

    for name in ("a", "b", "c"):
        notebook(f"notebooks/{name}.ipynb", ["pass"])

    def executed(*args: Any) -> Iterator[NotebookResult]:
        yield from (NotebookResult.of(job) for job in args[2])

    pruned: list[int] = []
    prune = cache.prune

    def counting(settings: cache.CacheSettings) -> None:
        pruned.append(len(list(settings.entries.iterdir())))
        prune(settings)

    monkeypatch.setattr(pipeline, "_executed", executed)
    monkeypatch.setattr(cache, "prune", counting)
    pipeline.run(load_config(project), pipeline.RunRequest())

    assert pruned == [3]  # once, when all three were stored


def test_the_end_is_got_ready_once_when_a_worker_has_no_more_jobs(
    project: Path, notebook: NotebookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Imports and report templates are done while the last notebook runs, not after it."""
    for name in ("a", "b", "c"):
        notebook(f"notebooks/{name}.ipynb", ["pass"])
    yielded: list[str] = []

    def executed(*args: Any) -> Iterator[NotebookResult]:
        for job in args[2]:
            yielded.append(job.id)
            yield NotebookResult.of(job)

    ready_after: list[int] = []
    monkeypatch.setattr(pipeline, "_executed", executed)
    monkeypatch.setattr(
        pipeline, "_get_ready_to_finish", lambda _: ready_after.append(len(yielded))
    )
    pipeline.run(load_config(project), pipeline.RunRequest(workers=2, use_cache=False))

    assert ready_after == [2]  # a and b done, c running alone: one worker is free


def test_a_template_that_breaks_while_getting_ready_is_left_to_the_end(
    project: Path, notebook: NotebookFactory
) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "report.md.j2").write_text("{% if %}")
    (project / "nbci.toml").write_text('templates = "templates"\n')

    pipeline._get_ready_to_finish(load_config(project))  # does not raise
