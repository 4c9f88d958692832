"""The command line as a user meets it: exit codes, one-line errors, end-to-end runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NotebookFactory

from nbci import errors
from nbci.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitCode, main
from nbci.publish.forge import PermissionDenied

ROOT = Path(__file__).resolve().parents[1]


def nbci(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nbci", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == "nbci 0.1.0"
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--out", "--jobs", "--timeout", "--no-cache", "--shard", "--baseline", "-p"):
        assert flag in help_text


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.UsageError("bad flag"), ExitCode.USAGE),
        (errors.ConfigError("nbci.toml: bad key"), ExitCode.USAGE),
        (errors.GateRuleError("nbci.toml: bad gate"), ExitCode.USAGE),
        (errors.ResultsError("results.json: tampered"), ExitCode.USAGE),
        (errors.PublishError("GitHub kept failing"), ExitCode.PUBLISH),
        (PermissionDenied("no comment", "pull-requests: write"), ExitCode.PUBLISH),
        (errors.RunError("the output folder is in use"), ExitCode.RUN),
        (errors.Interrupted("the run was interrupted"), ExitCode.FAILED),
    ],
)
def test_each_error_exits_with_the_code_that_says_what_happened(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: errors.NbciError,
    code: ExitCode,
) -> None:
    def fail(args: object) -> int:
        raise error

    monkeypatch.setattr("nbci.cli._report", fail)
    assert main(["report"]) == code
    err = capsys.readouterr().err
    assert err == f"nbci: error: {error}\n"


@pytest.mark.tools
def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from nbci.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "heavy = [m for m in ('papermill', 'nbformat', 'matplotlib', 'github', 'jinja2', 'numpy')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--jobs", "0"], "argument --jobs: expected a whole number ≥ 1, got '0'"),
        (["run", "--timeout", "soon"], "argument --timeout: expected a positive number"),
        (["run", "-p", "novalue"], "-p 'novalue': expected NAME=VALUE"),
        (["run", "--shard", "3/2"], "--shard"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "missing.ipynb"], "missing.ipynb: no such notebook or folder"),
        (["diff", "a", "b"], "no results here"),
        (["report"], "no results here"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("nbci: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.tools
def test_config_error_runs_nothing_and_names_file_and_key(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/a.ipynb", ["open('ran', 'w').write('x')"])
    (project / "nbci.toml").write_text("cell_timeout = 'soon'\n")
    done = nbci("run", cwd=project)
    assert done.returncode == EXIT_USAGE
    assert done.stderr == (
        "nbci: error: nbci.toml: cell_timeout: expected a positive number of seconds, got 'soon'\n"
    )
    assert "Traceback" not in done.stdout + done.stderr
    assert not (project / "notebooks" / "ran").exists()
    assert not (project / "nbci-out").exists()


GLUE_OK = (
    "import nbci, matplotlib.pyplot as plt\n"
    "nbci.glue('accuracy', 0.5 + lr)\n"
    "fig, ax = plt.subplots(); ax.plot([1, 2, 3]); nbci.glue('curve', fig)"
)


@pytest.mark.kernel
@pytest.mark.tools
def test_a_failing_notebook_beside_passing_ones_keeps_every_result(
    project: Path, notebook: NotebookFactory
) -> None:
    notebook("notebooks/good.ipynb", [GLUE_OK], parameters="lr = 0.25")
    notebook(
        "notebooks/bad.ipynb",
        ["import nbci\nnbci.glue('loss', 1.5)", "raise ValueError('no convergence')"],
    )
    (project / "nbci.toml").write_text(
        '[[notebook]]\npath = "notebooks/good.ipynb"\nmatrix = { lr = [0.25, 0.5] }\n'
    )
    summary = project / "summary.md"
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    done = nbci("run", "--jobs", "2", cwd=project, env=actions)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    out = project / "nbci-out"
    results = json.loads((out / "results.json").read_text())
    by_id = {nb["id"]: nb for nb in results["notebooks"]}
    assert set(by_id) == {"bad", "good-lr-0.25", "good-lr-0.5"}
    bad = by_id["bad"]
    assert bad["status"] == "failed"
    assert bad["error"]["ename"] == "ValueError"
    assert bad["error"]["evalue"] == "no convergence"
    assert "\x1b[" not in bad["error"]["traceback"]
    assert bad["metrics"] == {"loss": 1.5}  # what ran before the failing cell
    assert (out / bad["output"]).is_file()  # the executed copy of the failed notebook
    assert by_id["good-lr-0.5"]["metrics"] == {"accuracy": 1.0}
    assert by_id["good-lr-0.5"]["parameters"] == {"lr": 0.5}
    (figure,) = by_id["good-lr-0.5"]["figures"]
    assert (out / figure["path"]).read_bytes().startswith(b"\x89PNG")
    for nb in results["notebooks"]:
        assert (out / nb["html"]).is_file()
    report = (out / "report.md").read_text()
    assert "no convergence" in report and "good-lr-0.5" in report
    assert (out / "report.html").is_file()
    # the terminal: one line per finished notebook, then the table
    lines = done.stdout.splitlines()
    assert sum(line.startswith(("✓", "✗")) for line in lines) == 3
    header = next(line for line in lines if line.startswith("notebook"))
    assert header.split() == ["notebook", "parameters", "status", "time", "metrics"]
    assert any("good-lr-0.5" in line and "accuracy=1" in line for line in lines)
    # in GitHub Actions: an annotation on the failing notebook, the report in the job summary
    (annotation,) = [line for line in lines if line.startswith("::error")]
    assert annotation.startswith("::error file=notebooks/bad.ipynb,title=bad%3A failed (cell ")
    assert annotation.endswith("::ValueError: no convergence")
    job_summary = summary.read_text()
    assert "no convergence" in job_summary and "good-lr-0.5" in job_summary
    assert "<img" not in job_summary and "data:" not in job_summary


@pytest.mark.kernel
@pytest.mark.tools
def test_parameters_from_the_command_line(project: Path, notebook: NotebookFactory) -> None:
    notebook("notebooks/good.ipynb", [GLUE_OK], parameters="lr = 0.25")
    done = nbci("run", "notebooks/good.ipynb", "-p", "lr=0.125", "--out", "o", cwd=project)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    (nb,) = json.loads((project / "o" / "results.json").read_text())["notebooks"]
    assert nb["parameters"] == {"lr": 0.125}
    assert nb["metrics"] == {"accuracy": 0.625}


@pytest.mark.kernel
@pytest.mark.tools
def test_example_runs_compare_diff_and_gate(tmp_path: Path) -> None:
    """Two real runs of the bundled training notebook, compared; a gate turns the verdict."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "train.ipynb", root / "notebooks" / "train.ipynb")
    (root / "nbci.toml").write_text(
        'notebooks = ["notebooks/train.ipynb"]\n[gates]\naccuracy = { max_drop = 0.001 }\n'
    )
    base = nbci("run", "--out", "base", "-p", "model=forest", cwd=root)
    assert base.returncode == EXIT_OK, base.stdout + base.stderr
    head = nbci(
        "run", "--out", "head", "-p", "model=logreg", "-p", "C=0.0005", "--baseline", "base",
        cwd=root, env={"GITHUB_ACTIONS": "true"},
    )  # fmt: skip
    assert head.returncode == EXIT_FAILED, head.stdout + head.stderr
    assert "gate failed: train:accuracy" in head.stdout
    assert "::error title=nbci gate failed::train:accuracy" in head.stdout
    report = (root / "head" / "report.md").read_text()
    assert "accuracy" in report and "▼" in report
    assert "max_drop" in report

    diff = nbci("diff", "base", "head", cwd=root)
    assert diff.returncode == EXIT_OK
    assert "| train | accuracy |" in diff.stdout.replace("\\", "")
    gated = nbci("diff", "base", "head", "--gates", "--json", cwd=root)
    assert gated.returncode == EXIT_FAILED
    data = json.loads(gated.stdout)
    assert data["gates"]["passed"] is False

    again = nbci("report", "head", "--baseline", "base", cwd=root)
    assert again.returncode == EXIT_FAILED
    assert "Wrote head/report.md" in again.stdout


@pytest.mark.kernel
@pytest.mark.tools
def test_shards_then_merge_read_like_one_run(project: Path, notebook: NotebookFactory) -> None:
    for name in ("c", "a", "b"):
        notebook(f"notebooks/{name}.ipynb", [f"import nbci\nnbci.glue('n', {ord(name)})"])
    for k in (1, 2):
        done = nbci("run", "--shard", f"{k}/2", "--out", f"shard-{k}", "--no-cache", cwd=project)
        assert done.returncode == EXIT_OK, done.stderr
    shard_ids = [
        [
            nb["id"]
            for nb in json.loads((project / f"shard-{k}/results.json").read_text())["notebooks"]
        ]
        for k in (1, 2)
    ]
    assert sorted(shard_ids[0] + shard_ids[1]) == ["a", "b", "c"]
    merged = nbci("merge", "shard-1", "shard-2", "--out", "merged", cwd=project)
    assert merged.returncode == EXIT_OK, merged.stderr
    data = json.loads((project / "merged" / "results.json").read_text())
    assert [nb["id"] for nb in data["notebooks"]] == ["a", "b", "c"]
    assert data["shard"] is None
    assert {nb["metrics"]["n"] for nb in data["notebooks"]} == {97, 98, 99}
    assert (project / "merged" / "report.html").is_file()
    refused = nbci("merge", "shard-1", "--out", "m", cwd=project)
    assert refused.returncode == EXIT_USAGE
    assert refused.stderr == "nbci: error: nbci merge: missing shard(s) 2/2\n"


def test_the_terminal_words_statuses_as_the_reports_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dataclasses import replace

    from handmade_runs import nb

    from nbci.cli import _results_table
    from nbci.console import Progress

    slow = replace(nb("slow", "timeout"), duration_s=3.0)
    cached = replace(nb("train", n=61), cached=True)
    table = _results_table([slow, cached])
    assert "timed out" in table and "passed (cached)" in table and "n=61" in table
    progress = Progress()
    progress.finished(slow)
    progress.close()
    assert capsys.readouterr().out.startswith("⏱ slow: timed out in 3.0s")
