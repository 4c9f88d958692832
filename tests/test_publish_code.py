"""On a review, the code diff is made against the stored run's executed notebook.

On the GitHub and GitLab stand-ins: the baseline's notebook is read by its path
on the assets branch, at most one request per notebook whose stored file
differs from this run's, none when it is the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from github_stub import GitHubStub
from gitlab_stub import GitLabStub
from test_publish import make_run, options, pr_env, push_env
from test_publish_gitlab import mr_env
from test_publish_gitlab import push_env as gitlab_push_env

from nbci.model import NotebookResult
from nbci.publish import publish
from nbci.results import read_run, write_run

BASE_CELLS = ("lr = 0.1\nepochs = 3", "import math", "print(math.sqrt(2))")

STORED_NOTEBOOK = r"/(contents|repository/files)/.*notebooks.*\.ipynb"
"""A read of a stored executed notebook (not of the index or a results.json)."""


def with_notebook(out: Path, sources: tuple[str, ...], text: str = "1.41\n") -> Path:
    """The run of `make_run`, with an executed notebook of code cells `sources`."""
    nb = nbformat.v4.new_notebook()
    for i, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source, execution_count=i + 1)
        cell.id = f"cell-{i}"
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "notebooks" / "train.ipynb").write_text(json.dumps(nb))
    run = read_run(out)
    (train,) = run.notebooks
    ran = NotebookResult(**{**train.__dict__, "output": "notebooks/train.ipynb"})
    write_run(type(run)(**{**run.__dict__, "notebooks": (ran,)}), out)
    return out


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub() as stub:
        yield stub


@pytest.fixture
def gl() -> Iterator[GitLabStub]:
    with GitLabStub() as stub:
        yield stub


def github_review(gh: GitHubStub, tmp_path: Path, head: tuple[str, ...], text: str) -> str:
    """The comment of a pull request whose notebook has `head` cells, against a stored
    baseline of `BASE_CELLS`."""
    base = gh.add_history(2)[-1]
    publish(
        options(with_notebook(make_run(tmp_path / "main"), BASE_CELLS)),
        push_env(gh, tmp_path, base),
    )
    gh.add_pull(7, base_sha=base)
    publish(options(with_notebook(make_run(tmp_path / "pr"), head, text)), pr_env(gh, tmp_path, 7))
    body: str = gh.pr_comments(7)[0]["body"]
    return body


def test_github_diffs_the_code_against_the_stored_notebook_in_one_request(
    gh: GitHubStub, tmp_path: Path
) -> None:
    head = ("lr = 0.01\nepochs = 3", "import math", "print(math.sqrt(2))", "print('done')")

    body = github_review(gh, tmp_path, head, "1.41\n")

    assert "- **train**: edited In \\[1\\]; added In \\[4\\]" in body
    assert "-lr = 0.1\n+lr = 0.01\n epochs = 3" in body
    assert "+print('done')" in body
    assert len(gh.calls("GET", STORED_NOTEBOOK)) == 1  # the stored notebook, by its path


def test_github_reads_nothing_when_the_stored_notebook_is_the_same(
    gh: GitHubStub, tmp_path: Path
) -> None:
    body = github_review(gh, tmp_path, BASE_CELLS, "1.41\n")

    assert "Code changes" not in body
    assert gh.calls("GET", STORED_NOTEBOOK) == []


def test_github_an_output_only_change_costs_one_request_and_is_no_code_change(
    gh: GitHubStub, tmp_path: Path
) -> None:
    body = github_review(gh, tmp_path, BASE_CELLS, "1.4142\n")

    assert "Code changes" not in body
    assert len(gh.calls("GET", STORED_NOTEBOOK)) == 1


def test_gitlab_diffs_the_code_against_the_stored_notebook_in_one_request(
    gl: GitLabStub, tmp_path: Path
) -> None:
    base = gl.add_history(2)[-1]
    base_run = with_notebook(make_run(tmp_path / "main"), BASE_CELLS)
    publish(options(base_run), gitlab_push_env(gl, base))
    gl.add_merge_request(7, base_sha=base)
    head = ("import math", "lr = 0.1\nepochs = 3", "print(math.sqrt(2))")

    publish(options(with_notebook(make_run(tmp_path / "mr"), head)), mr_env(gl, 7))

    (note,) = gl.mr_notes(7)
    assert "- **train**: moved In \\[1\\] (was In \\[2\\])" in note["body"]
    assert len(gl.calls("GET", STORED_NOTEBOOK)) == 1
