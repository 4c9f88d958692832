"""`nbci publish` puts charts, difference images and executed notebooks on the assets branch.

Against the GitHub stand-in (PyGithub over real HTTP on 127.0.0.1): every link
in the comment must point at a file that the assets branch holds at the
linked commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
from github_stub import GitHubStub
from test_publish import fetch, make_run, options, pr_env, push_env

from nbci.model import ErrorInfo, NotebookResult
from nbci.publish import publish
from nbci.results import read_run, write_run


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    with GitHubStub() as stub:
        yield stub


def with_notebook(out: Path, status: str = "failed") -> Path:
    """The run of `make_run`, its notebook executed (written) and marked `status`."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 / 0")
    cell.id = "cell-0"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="training\n")]
    nb.cells = [cell]
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "notebooks" / "train.ipynb").write_text(json.dumps(nb))
    run = read_run(out)
    (train,) = run.notebooks
    error = ErrorInfo(cell=1, ename="ZeroDivisionError", evalue="division by zero")
    failed = NotebookResult(
        **{**train.__dict__, "status": status, "output": "notebooks/train.ipynb", "error": error}
    )
    write_run(type(run)(**{**run.__dict__, "notebooks": (failed,)}), out)
    return out


def blob_links(gh: GitHubStub, body: str) -> list[tuple[str, str]]:
    """(commit, path) of every `/blob/` link in the comment."""
    pattern = re.escape(f"{gh.server_url}/{gh.repo}/blob/") + r"([0-9a-f]{40})/([^)\s\"<>]+)"
    found = [(commit, unquote(path)) for commit, path in re.findall(pattern, body)]
    return list(dict.fromkeys(found))


def test_the_failing_notebook_is_linked_where_github_renders_it(
    gh: GitHubStub, tmp_path: Path
) -> None:
    history = gh.add_history(3)
    gh.add_pull(7, base_sha=history[-1])
    run_dir = with_notebook(make_run(tmp_path / "out"))

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 7))

    (comment,) = gh.pr_comments(7)
    links = blob_links(gh, comment["body"])
    assert links == [(outcome.assets_commit, "pr/7/nbci/notebooks/train.ipynb")]
    page = fetch(f"{gh.server_url}/{gh.repo}/blob/{links[0][0]}/{links[0][1]}")
    assert b"training" in page  # the notebook is there at the linked commit
    assert gh.commit_requests() == 2  # the new branch's small commit, then everything: one


def test_publish_notebooks_false_keeps_them_off_the_branch(gh: GitHubStub, tmp_path: Path) -> None:
    history = gh.add_history(3)
    gh.add_pull(7, base_sha=history[-1])
    run_dir = with_notebook(make_run(tmp_path / "out"))

    outcome = publish(options(run_dir, notebooks=False), pr_env(gh, tmp_path, 7))

    assert outcome.assets_commit is not None
    assert not any("notebooks/" in p for p in gh.paths_at(outcome.assets_commit))
    assert not blob_links(gh, gh.pr_comments(7)[0]["body"])


def raw_links(gh: GitHubStub, body: str) -> dict[str, str]:
    """Path on the assets branch → the commit its `raw` image link names."""
    pattern = re.escape(f"{gh.server_url}/{gh.repo}/raw/") + r"([0-9a-f]{40})/([^\"]+)"
    return {unquote(path): commit for commit, path in re.findall(pattern, body)}


def test_a_changed_figure_links_its_difference_image_an_unchanged_one_is_named(
    gh: GitHubStub, tmp_path: Path
) -> None:
    history = gh.add_history(3)
    base = history[-1]
    publish(options(make_run(tmp_path / "main")), push_env(gh, tmp_path, base))
    gh.add_pull(7, base_sha=base)
    run_dir = make_run(tmp_path / "pr", figures={"confusion": 5, "roc": 2})  # confusion moved

    outcome = publish(options(run_dir), pr_env(gh, tmp_path, 7))

    body = gh.pr_comments(7)[0]["body"]
    links = raw_links(gh, body)
    diff = "pr/7/nbci/diffs/train/confusion.png"
    assert links[diff] == outcome.assets_commit
    assert fetch(f"{gh.server_url}/{gh.repo}/raw/{links[diff]}/{diff}").startswith(b"\x89PNG")
    assert f"runs/{base}/nbci/figures/train/confusion.png" in links  # the baseline's, beside it
    assert "pr/7/nbci/figures/train/roc.png" not in links  # unchanged: named, not shown
    assert "1 unchanged figure" in body
    assert gh.commit_requests() == 3  # the new branch's small commit, then one per publish
    assert len(gh.calls("GET", r"/contents/runs/.*/results\.json$")) == 1  # the baseline's results
    assert len(gh.calls("GET", r"/git/blobs/")) == 1  # and the one changed figure


def test_a_stored_default_branch_run_keeps_its_notebooks(gh: GitHubStub, tmp_path: Path) -> None:
    base = gh.add_history(2)[-1]
    run_dir = with_notebook(make_run(tmp_path / "main"), status="ok")

    outcome = publish(options(run_dir), push_env(gh, tmp_path, base))

    assert outcome.stored_baseline
    stored = gh.file_at("nbci-assets", f"runs/{base}/nbci/notebooks/train.ipynb")
    assert stored is not None and b"training" in stored
    assert gh.commit_requests() == 2  # the new branch's, then results, figures, notebook: one


def test_publish_notebooks_is_a_configuration_switch(tmp_path: Path) -> None:
    from nbci.config import parse_config
    from nbci.errors import ConfigError

    assert parse_config({}, root=tmp_path, file="nbci.toml").publish_notebooks is True
    off = parse_config({"publish_notebooks": False}, root=tmp_path, file="nbci.toml")
    assert off.publish_notebooks is False
    with pytest.raises(ConfigError, match="publish_notebooks: expected true or false"):
        parse_config({"publish_notebooks": "no"}, root=tmp_path, file="nbci.toml")


def with_curve(out: Path, loss: list[float]) -> Path:
    """The run in `out` with a glued curve `loss` on its notebook."""
    from dataclasses import replace

    from nbci.series import recognise

    found = recognise("loss", loss)
    assert found is not None
    run = read_run(out)
    notebooks = tuple(replace(nb, series=(found.group,)) for nb in run.notebooks)
    write_run(replace(run, notebooks=notebooks), out)
    return out


def test_the_comment_links_a_chart_a_difference_image_and_a_notebook_at_one_commit(
    gh: GitHubStub, tmp_path: Path
) -> None:
    base = gh.add_history(3)[-1]
    main_dir = with_curve(make_run(tmp_path / "main"), [1.0, 0.6, 0.5])
    publish(options(main_dir), push_env(gh, tmp_path, base))
    gh.add_pull(7, base_sha=base)
    pr_dir = with_curve(
        with_notebook(make_run(tmp_path / "pr", figures={"confusion": 9})), [1, 0.4]
    )

    outcome = publish(options(pr_dir), pr_env(gh, tmp_path, 7))

    body = gh.pr_comments(7)[0]["body"]
    images, pages = raw_links(gh, body), blob_links(gh, body)
    chart, diff = "pr/7/nbci/charts/train/loss.png", "pr/7/nbci/diffs/train/confusion.png"
    notebook = "pr/7/nbci/notebooks/train.ipynb"
    assert images[chart] == images[diff] == outcome.assets_commit
    assert pages == [(outcome.assets_commit, notebook)]
    for path in (chart, diff, notebook):
        stored = gh.file_at(str(outcome.assets_commit), path)
        assert stored is not None, path
    assert fetch(f"{gh.server_url}/{gh.repo}/raw/{outcome.assets_commit}/{chart}")[:4] == b"\x89PNG"
    assert gh.commit_requests() == 3  # the new branch's, then one per publish, whatever it holds


def with_failed_notebooks(out: Path, count: int) -> Path:
    """A run of `count` failed notebooks, each with its executed notebook file."""
    run = read_run(out)
    (template,) = run.notebooks
    notebooks = []
    for i in range(count):
        job_id = f"train{i}"
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("1 / 0")
        cell.id = "cell-0"
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"job {i}\n")]
        nb.cells = [cell]
        (out / "notebooks").mkdir(parents=True, exist_ok=True)
        (out / "notebooks" / f"{job_id}.ipynb").write_text(json.dumps(nb))
        error = ErrorInfo(cell=1, ename="ZeroDivisionError", evalue="division by zero")
        fields = {**template.__dict__, "id": job_id, "path": f"notebooks/{job_id}.ipynb"}
        fields.update(status="failed", output=f"notebooks/{job_id}.ipynb", error=error)
        fields.update(figures=template.figures if i == 0 else ())
        notebooks.append(NotebookResult(**fields))
    write_run(type(run)(**{**run.__dict__, "notebooks": tuple(notebooks)}), out)
    return out


@pytest.mark.parametrize("count", [1, 6])
def test_notebooks_add_no_api_calls(gh: GitHubStub, tmp_path: Path, count: int) -> None:
    """Executed notebooks ride in the one GraphQL commit, never as requests of their own."""
    base = gh.add_history(2)[-1]
    gh.add_pull(8, base_sha=base)
    pr_dir = with_failed_notebooks(make_run(tmp_path / "pr", figures={"confusion": 3}), count)

    outcome = publish(options(pr_dir), pr_env(gh, tmp_path, 8))

    for i in range(count):
        stored = gh.file_at(str(outcome.assets_commit), f"pr/8/nbci/notebooks/train{i}.ipynb")
        assert stored is not None and b"job %d" % i in stored
    assert not gh.calls("POST", r"/git/blobs$")  # figure and notebooks: in the GraphQL commit
    assert len(gh.calls("POST", r"/git/trees$")) == 1  # the branch's first, small commit
    assert len(gh.writes()) == 6  # tree, commit, ref, createCommitOnBranch, comment, status
