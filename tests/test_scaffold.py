"""`nbci init`: writes the config, workflows and an example that runs; overwrites nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
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
from nbci.scaffold import FILES, GITLAB_FILES, init, next_steps, render, requirement_from

TARGETS = {f.target for f in FILES}
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]


def gitlab_schema_check(pipeline: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with GitLab's published CI schema."""
    return subprocess.run(
        [*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", str(pipeline)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


PIN = f"nbci=={__version__}"
"""What the tests install: nbci here is an editable install, which `init` cannot write."""


def test_init_writes_the_scaffold(tmp_path: Path) -> None:
    written = init(tmp_path, install=PIN).written

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
        init(tmp_path, install=PIN)

    assert (tmp_path / "nbci.toml").read_text() == "# mine\n"
    assert not (tmp_path / ".github").exists()
    assert len(init(tmp_path, force=True, install=PIN).written) == len(FILES)
    assert (tmp_path / "nbci.toml").read_text() != "# mine\n"


def test_init_names_how_many_files_are_in_the_way(tmp_path: Path) -> None:
    init(tmp_path, install=PIN)
    with pytest.raises(UsageError, match=r"already exists \(and 3 more\)") as caught:
        init(tmp_path, install=PIN)
    assert "\n" not in str(caught.value)


def test_config_in_pyproject_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.nbci]\nnotebooks = ["nb/*.ipynb"]\n')
    written = init(tmp_path, install=PIN).written
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
    init(tmp_path, install=PIN)
    assert "branches: [trunk]" in (tmp_path / ".github/workflows/nbci.yml").read_text()


@pytest.mark.kernel
def test_the_example_runs_and_passes_its_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--install", PIN]) == 0
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
    assert main(["init", "--gitlab", "--install", PIN]) == 0
    out = capsys.readouterr().out.splitlines()
    written = {line.removeprefix("Wrote ") for line in out if line.startswith("Wrote ")}
    assert written == {t.target for t in GITLAB_FILES}
    assert not (tmp_path / ".github").exists()
    pipeline = tmp_path / ".gitlab-ci.yml"
    checked = gitlab_schema_check(pipeline)
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
def test_the_pipeline_for_a_vcs_install_is_one_gitlab_accepts(tmp_path: Path) -> None:
    pipeline = tmp_path / ".gitlab-ci.yml"
    vcs = f"nbci @ git+https://gitlab.com/me/nbci@{'0' * 40}"
    pipeline.write_text(render("gitlab/gitlab-ci.yml", requirement=vcs))
    checked = gitlab_schema_check(pipeline)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    script = yaml.safe_load(pipeline.read_text())[".nbci"]["before_script"]
    assert "apt-get install" in script[0] and script[1] == f'python -m pip install "{vcs}"'


@pytest.mark.tools
def test_a_broken_pipeline_fails_the_schema_check(tmp_path: Path) -> None:
    """The check above can fail: GitLab's schema rejects what GitLab would."""
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(render("gitlab/gitlab-ci.yml").replace("parallel: 2", "parallel: 0"))
    checked = gitlab_schema_check(broken)
    assert checked.returncode != 0


# -- what the pipeline installs: real installs of this nbci, each way ---------------------

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = (".github/workflows/nbci.yml", ".github/workflows/nbci-publish.yml")
FAR_URL = "https://git.example.invalid/nbci.git"
"""A VCS URL pip clones through git's `insteadOf` from a local repository: no network."""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _pip(*args: str | Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def nbci_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this nbci's source, committed in a git repository of its own."""
    source = tmp_path_factory.mktemp("nbci-source")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "nbci", source / "nbci", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _git(source, "init", "-q")
    _git(source, "add", "-A")
    _git(source, "commit", "-q", "-m", "nbci")
    _git(source, "remote", "add", "origin", FAR_URL)  # what init suggests for a local checkout
    return source


@pytest.fixture(scope="module")
def nbci_wheel(nbci_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "--no-deps", "-w", wheels, nbci_source)
    (wheel,) = wheels.glob("nbci-*.whl")
    return wheel


def _init_with(installed: Path, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nbci init ARGS` in a new git repository, with the nbci installed in `installed`."""
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "trunk")
    return subprocess.run(
        [sys.executable, "-m", "nbci", "init", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(installed)},
    )


def _install_line(text: str) -> list[str]:
    return re.findall(r'python -m pip install "([^"]*)"', text)


@pytest.mark.tools
@pytest.mark.parametrize("way", ["index", "vcs"])
def test_init_installs_nbci_the_way_it_was_installed(
    way: str, nbci_source: Path, nbci_wheel: Path, tmp_path: Path
) -> None:
    installed = tmp_path / "site"
    if way == "index":  # a package index: here a folder of wheels; pip records no direct URL
        _pip("install", "--no-deps", "--no-index", "--find-links", nbci_wheel.parent, "nbci",
             "--target", installed)  # fmt: skip
        expected = PIN
    else:
        rewrite = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{nbci_source.as_uri()}"}
        rewrite |= {"GIT_CONFIG_KEY_0": rewrite["GIT_CONFIG_KEY_0"] + ".insteadOf"}
        rewrite |= {"GIT_CONFIG_VALUE_0": FAR_URL}
        _pip("install", "--no-deps", "--target", installed, f"nbci @ git+{FAR_URL}", env=rewrite)
        expected = f"nbci @ git+{FAR_URL}@{_git(nbci_source, 'rev-parse', 'HEAD')}"

    done = _init_with(installed, tmp_path / "repo")
    assert done.returncode == 0, done.stderr
    assert f'The pipeline installs nbci with: pip install "{expected}"' in done.stdout
    assert "master" not in done.stdout and "take trunk as the default branch" in done.stdout
    for pipeline in PIPELINES:
        lines = _install_line((tmp_path / "repo" / pipeline).read_text())
        assert lines and set(lines) == {expected}, pipeline

    done = _init_with(installed, tmp_path / "gitlab", "--gitlab")
    assert done.returncode == 0, done.stderr
    gitlab = (tmp_path / "gitlab" / ".gitlab-ci.yml").read_text()
    assert _install_line(gitlab) == [expected]
    assert ("apt-get install" in gitlab) == (way == "vcs")  # the slim image has no git


@pytest.mark.tools
@pytest.mark.parametrize("way", ["folder", "editable", "wheel file", "local git"])
def test_a_local_nbci_needs_an_explicit_install(
    way: str, nbci_source: Path, nbci_wheel: Path, tmp_path: Path
) -> None:
    installed = tmp_path / "site"
    spec = {
        "folder": [str(nbci_source)],
        "editable": ["-e", str(nbci_source)],
        "wheel file": [str(nbci_wheel)],
        "local git": [f"git+{nbci_source.as_uri()}"],
    }[way]
    _pip("install", "--no-deps", "--target", installed, *spec)

    done = _init_with(installed, tmp_path / "repo")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "a CI runner cannot install" in line and "--install SPEC" in line
    assert ("editable" in line) == (way == "editable")
    suggested = f"'nbci @ git+{FAR_URL}@{_git(nbci_source, 'rev-parse', 'HEAD')}'"
    assert (suggested in line) == (way != "wheel file")  # a checkout: its origin at its commit
    assert not (tmp_path / "repo" / "nbci.toml").exists()

    chosen = "nbci @ git+https://github.com/me/nbci@0123abc"
    done = _init_with(installed, tmp_path / "chosen", "--install", chosen)
    assert done.returncode == 0, done.stderr
    for pipeline in PIPELINES:
        assert set(_install_line((tmp_path / "chosen" / pipeline).read_text())) == {chosen}


@pytest.mark.parametrize(
    "spec", ['nbci" && curl x', "nbci==$(id)", "-e .", "nbci # x", "a: b", "nbci\nx", ""]
)
def test_install_refuses_what_it_cannot_write_safely(spec: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--install: .* not a requirement"):
        init(tmp_path, install=spec)
    assert not any(tmp_path.iterdir())


def test_requirement_from_pep_610() -> None:
    sha = "a" * 40
    vcs = {"url": "https://h/o/nbci", "vcs_info": {"vcs": "git", "commit_id": sha}}
    assert requirement_from("1.2", None) == "nbci==1.2"
    assert requirement_from("1.2", vcs) == f"nbci @ git+https://h/o/nbci@{sha}"
    assert (requirement_from("1.2", {**vcs, "subdirectory": "py"}) or "").endswith(
        "#subdirectory=py"
    )
    archive = {"url": "https://h/nbci-1.2.tar.gz", "archive_info": {}}
    assert requirement_from("1.2", archive) == "nbci @ https://h/nbci-1.2.tar.gz"
    for local in ({"url": "file:///src", "dir_info": {"editable": True}}, {}):
        assert requirement_from("1.2", local) is None


def test_init_ignores_the_outputs_and_says_what_comes_next(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("/nbci-out\n*.pyc")
    scaffold = init(tmp_path, install=PIN)
    assert scaffold.ignored == (".nbci-cache/",)
    assert (tmp_path / ".gitignore").read_text().splitlines()[:2] == ["/nbci-out", "*.pyc"]
    assert "/.nbci-cache/" in (tmp_path / ".gitignore").read_text()
    assert init(tmp_path, install=PIN, force=True).ignored == ()
    steps = "\n".join(next_steps(scaffold))
    assert "nbci-publish.yml only from the default branch" in steps
    assert "Next: commit" in steps and ".gitignore" in steps


def test_without_a_remote_the_workflows_take_the_current_branch(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "master", str(tmp_path)], check=True)
    scaffold = init(tmp_path, install=PIN)
    assert scaffold.branch is not None and scaffold.branch.name == "master"
    assert "branches: [master]" in (tmp_path / ".github/workflows/nbci.yml").read_text()
    assert any("take master as the default branch" in line for line in next_steps(scaffold))
