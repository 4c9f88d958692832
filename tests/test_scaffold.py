"""`nbci init`: writes the config, workflows and an example that runs; overwrites nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from nbci import __version__
from nbci.cli import main
from nbci.config import load_config
from nbci.errors import UsageError
from nbci.scaffold import FILES, GITLAB_FILES, init, render

TARGETS = {f.target for f in FILES}
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]


def test_init_writes_the_scaffold(tmp_path: Path) -> None:
    written = init(tmp_path)

    assert {p.relative_to(tmp_path).as_posix() for p in written} == TARGETS
    config = load_config(tmp_path)
    assert config.gates and config.notebooks == ("notebooks/**/*.ipynb",)
    nbformat.validate(nbformat.read(tmp_path / "notebooks/example.ipynb", as_version=4))
    workflow = (tmp_path / ".github/workflows/nbci.yml").read_text()
    assert f'"nbci=={__version__}"' in workflow
    assert yaml.safe_load(workflow)["jobs"]["run"]["strategy"]["matrix"]["shard"] == [1, 2]


def test_init_overwrites_nothing_without_force(tmp_path: Path) -> None:
    (tmp_path / "nbci.toml").write_text("# mine\n")

    with pytest.raises(UsageError, match=r"^nbci\.toml already exists: .*--force$"):
        init(tmp_path)

    assert (tmp_path / "nbci.toml").read_text() == "# mine\n"
    assert not (tmp_path / ".github").exists()
    assert len(init(tmp_path, force=True)) == len(FILES)
    assert (tmp_path / "nbci.toml").read_text() != "# mine\n"


def test_init_names_how_many_files_are_in_the_way(tmp_path: Path) -> None:
    init(tmp_path)
    with pytest.raises(UsageError, match=r"already exists \(and 3 more\)") as caught:
        init(tmp_path)
    assert "\n" not in str(caught.value)


def test_config_in_pyproject_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.nbci]\nnotebooks = ["nb/*.ipynb"]\n')
    written = init(tmp_path)
    assert not (tmp_path / "nbci.toml").exists()
    assert len(written) == len(FILES) - 1


def test_the_workflows_follow_the_default_branch(tmp_path: Path) -> None:
    assert "branches: [trunk]" in render("workflows/nbci.yml", branch="trunk")
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/trunk",
        ],
        check=True,
    )
    init(tmp_path)
    assert "branches: [trunk]" in (tmp_path / ".github/workflows/nbci.yml").read_text()


@pytest.mark.kernel
def test_the_example_runs_and_passes_its_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert "nbci.toml" in capsys.readouterr().out

    assert main(["run", "--no-cache"]) == 0

    results = json.loads((tmp_path / "nbci-out/results.json").read_text())
    (notebook,) = results["notebooks"]
    assert notebook["status"] == "ok"
    assert notebook["metrics"]["r2"] > 0.5
    assert {"mae", "fit.slope", "fit.intercept"} <= set(notebook["metrics"])
    assert [f["name"] for f in notebook["figures"]] == ["fit_plot"]


# -- GitLab ----------------------------------------------------------------------------


@pytest.mark.tools
def test_init_gitlab_writes_a_pipeline_gitlab_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--gitlab"]) == 0
    written = {line.removeprefix("Wrote ") for line in capsys.readouterr().out.splitlines()}
    assert written == {t.target for t in GITLAB_FILES}
    assert not (tmp_path / ".github").exists()
    pipeline = tmp_path / ".gitlab-ci.yml"
    checked = subprocess.run(
        [*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", str(pipeline)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    text = pipeline.read_text()
    assert f'"nbci=={__version__}"' in text
    ci = yaml.safe_load(text)
    rules = [rule["if"] for rule in ci["workflow"]["rules"]]
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in rules
    assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in rules
    run = ci["nbci-run"]
    assert run["parallel"] == 2
    assert any("nbci run --shard auto" in line for line in run["script"])
    assert ".nbci-cache/" in run["cache"]["paths"]
    merge = ci["nbci-merge"]
    assert merge["needs"] == ["nbci-run"] and merge["when"] == "always"
    assert any(line.startswith("nbci merge ") for line in merge["script"])
    artifacts = merge["artifacts"]
    assert artifacts["expose_as"] and "nbci-out/report.html" in artifacts["paths"]
    assert artifacts["reports"]["junit"] == "nbci-out/junit.xml"
    publish = ci["nbci-publish"]
    assert publish["needs"] == ["nbci-merge"]
    assert publish["script"] == ["nbci publish nbci-out"]


@pytest.mark.tools
def test_a_broken_pipeline_fails_the_schema_check(tmp_path: Path) -> None:
    """The check above can fail: GitLab's schema rejects what GitLab would."""
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(render("gitlab/gitlab-ci.yml").replace("parallel: 2", "parallel: 0"))
    checked = subprocess.run(
        [*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode != 0
