"""`nbci init --bitbucket` writes a pipeline Bitbucket accepts; `--shard auto` reads its steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nbci import __version__
from nbci.cli import main
from nbci.errors import UsageError
from nbci.scaffold import BITBUCKET_FILES, render
from nbci.shards import resolve_shard

CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.bitbucket-pipelines"]


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHECK, str(path)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.tools
def test_init_bitbucket_writes_a_pipeline_bitbucket_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--bitbucket", "--install", f"nbci=={__version__}"]) == 0
    out = capsys.readouterr().out
    written = {
        line.removeprefix("Wrote ") for line in out.splitlines() if line.startswith("Wrote ")
    }
    assert written == {f.target for f in BITBUCKET_FILES}
    assert "set BITBUCKET_TOKEN as a secured repository variable" in out
    assert not (tmp_path / ".github").exists() and not (tmp_path / ".gitlab-ci.yml").exists()
    pipeline = tmp_path / "bitbucket-pipelines.yml"
    checked = check(pipeline)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    text = pipeline.read_text()
    assert f'"nbci=={__version__}"' in text
    config = yaml.safe_load(text)
    assert config["definitions"]["caches"]["nbci"] == ".nbci-cache"
    for flow in (
        config["pipelines"]["pull-requests"]["**"],
        config["pipelines"]["branches"]["main"],
    ):
        group, report = flow
        shards = [entry["step"] for entry in group["parallel"]["steps"]]
        assert len(shards) == 2
        for step in shards:
            assert set(step["caches"]) == {"pip", "nbci"}
            assert any("nbci run --shard auto" in line for line in step["script"])
            assert step["artifacts"] == ["nbci-shards/**"]
        script = report["step"]["script"]
        assert any(line.startswith("nbci merge nbci-shards/*") for line in script)
        assert any("test-results/" in line and "junit.xml" in line for line in script)
        assert script[-1] == "nbci publish nbci-out"
        assert report["step"]["artifacts"] == ["nbci-out/**"]


def test_init_bitbucket_names_the_repositorys_default_branch(tmp_path: Path) -> None:
    text = render("bitbucket/bitbucket-pipelines.yml", branch="trunk")
    assert "'trunk':" in text and "'main':" not in text
    assert list(yaml.safe_load(text)["pipelines"]["branches"]) == ["trunk"]


def test_init_takes_one_ci_at_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--gitlab", "--bitbucket"]) == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.tools
def test_a_broken_bitbucket_pipeline_fails_the_schema_check(tmp_path: Path) -> None:
    """The check above can fail: Bitbucket's schema rejects what Bitbucket would."""
    broken = tmp_path / "bitbucket-pipelines.yml"
    text = render("bitbucket/bitbucket-pipelines.yml").replace("max-time: 60", "max-time: never")
    broken.write_text(text)
    assert check(broken).returncode != 0


@pytest.mark.parametrize(
    ("step", "count", "expected"), [("0", "2", (1, 2)), ("1", "2", (2, 2)), ("4", "5", (5, 5))]
)
def test_shard_auto_reads_bitbuckets_parallel_step(
    step: str, count: str, expected: tuple[int, int]
) -> None:
    env = {"BITBUCKET_PARALLEL_STEP": step, "BITBUCKET_PARALLEL_STEP_COUNT": count}
    assert resolve_shard("auto", env) == expected


@pytest.mark.parametrize(("step", "count"), [("2", "2"), ("", "2"), ("x", "3")])
def test_shard_auto_refuses_bitbucket_values_out_of_range(step: str, count: str) -> None:
    env = {"BITBUCKET_PARALLEL_STEP": step, "BITBUCKET_PARALLEL_STEP_COUNT": count}
    with pytest.raises(UsageError, match="BITBUCKET_PARALLEL_STEP"):
        resolve_shard("auto", env)


def test_shard_auto_outside_any_parallel_group_names_both_cis() -> None:
    with pytest.raises(UsageError, match="BITBUCKET_PARALLEL_STEP_COUNT") as caught:
        resolve_shard("auto", {})
    assert "CI_NODE_INDEX" in str(caught.value)


def test_a_git_install_gets_git_in_every_bitbucket_step_that_installs_nbci() -> None:
    requirement = "nbci @ git+https://example.invalid/owner/nbci@0123abcd"
    text = render("bitbucket/bitbucket-pipelines.yml", requirement=requirement)
    steps = [step["step"]["script"] for step in yaml.safe_load(text)["definitions"]["steps"]]
    installs = [script for script in steps if f'python -m pip install "{requirement}"' in script]
    assert len(installs) == 2
    for script in installs:
        at = script.index(f'python -m pip install "{requirement}"')
        assert "apt-get install" in script[at - 1] and script[at - 1].endswith(" git")
