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


def nbci(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
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


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "--config", "c.toml", "run"],
        ["run", "-v", "--config", "c.toml"],
        ["-v", "run", "--config", "c.toml"],
    ],
)
def test_global_flags_go_before_or_after_the_command(argv: list[str]) -> None:
    from nbci.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.verbose is True and args.config == Path("c.toml")
    plain = build_parser().parse_args(["diff", "a", "b"])
    assert plain.verbose is False and plain.config is None


def test_config_after_the_command_is_the_one_read(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--config", "elsewhere.toml", "-v"]) == EXIT_USAGE
    assert "elsewhere.toml: no such configuration file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "runs", "history"),
    [
        (["A", "B", "--history", "h1", "h2"], ("A", "B"), ["h1", "h2"]),
        (["--history", "h1", "h2", "A", "B"], ("A", "B"), ["h1", "h2"]),
        (["A", "--history", "h1", "B"], ("A", "B"), ["h1"]),
    ],
)
def test_diff_gets_its_runs_back_from_history(
    argv: list[str], runs: tuple[str, str], history: list[str]
) -> None:
    from nbci.cli import _diff_runs, build_parser

    args = build_parser().parse_args(["diff", *argv])
    taken, rest = _diff_runs(args.baseline, args.head, args.history)
    assert taken == tuple(map(Path, runs)) and rest == list(map(Path, history))


def test_diff_without_two_runs_says_how_to_write_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "--history", "h1", "h2"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        "nbci: error: diff needs two runs, A (the baseline) and B: nbci diff A B [--history DIR…]\n"
    )


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from nbci.config import DEFAULT_OUT, Config

    config = Config(root=Path("."))
    for command in ("run", "report", "publish"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: config's timeout, else {config.timeout:g})" in text
    assert f"(default: config's cell_timeout, else {config.cell_timeout:g})" in text
    assert "(default: config's jobs, else the number of CPUs)" in text
    assert text.count(f"(default: config's out, else {DEFAULT_OUT})") == 2
    assert "(default: out)" not in text


def test_the_results_table_always_shows_how_many_metrics_are_hidden() -> None:
    from handmade_runs import nb

    from nbci.cli import _results_table

    names = {f"validation_accuracy_of_fold_{i}": 0.9 + i / 100 for i in range(10)}
    long_name = {"a_metric_name_so_long_that_it_fills_the_whole_column_by_itself_" * 2: 1.0}
    table = _results_table([nb("cv", **names), nb("odd", **long_name, b=2.0)])
    cv, odd = table.splitlines()[2:]
    assert cv.endswith("more)") and "mor…" not in cv
    shown = cv.count("validation_accuracy_of_fold_")
    assert 1 <= shown <= 4 and cv.endswith(f"(+{10 - shown} more)")
    assert odd.endswith("…  (+1 more)")
    assert len(odd.split("passed  0.0s  ")[1]) == 80


@pytest.mark.kernel
def test_a_broken_report_template_stops_the_run_before_any_notebook_and_never_loses_one(
    project: Path, notebook: NotebookFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook("notebooks/a.ipynb", ["open('ran', 'w').write('x')"])
    templates = project / "templates"
    templates.mkdir()
    (project / "nbci.toml").write_text('templates = "templates"\n')
    (templates / "report.md.j2").write_text("{% if view %}\nno end\n")

    assert main(["run"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"nbci: error: {templates / 'report.md.j2'}:2: ") and err.count("\n") == 1
    assert not (project / "notebooks" / "ran").exists() and not (project / "nbci-out").exists()

    (templates / "report.md.j2").write_text("{{ view.notebooks[0].no_such_field }}\n")
    assert main(["run"]) == EXIT_USAGE  # compiles, fails only while rendering
    err = capsys.readouterr().err
    assert f"{templates / 'report.md.j2'}:1: UndefinedError" in err and err.count("\n") == 1
    assert "written with nbci's own templates" in err
    results = json.loads((project / "nbci-out" / "results.json").read_text())
    assert [nb["status"] for nb in results["notebooks"]] == ["ok"]
    assert "The notebook passed" in (project / "nbci-out" / "report.md").read_text()


@pytest.mark.kernel
def test_a_warm_run_writes_what_the_cold_run_wrote_but_for_saying_it_was_restored(
    project: Path, notebook: NotebookFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every output file of a run whose notebooks all came from the cache, against the run
    that stored them: the same bytes; results.json the same but for `cached` and the time of
    the run, and the reports what the cold run's results give, marked restored."""
    cells = [
        "import nbci\nimport matplotlib.pyplot as plt",
        "fig = plt.figure()\nplt.plot([1, 3, 2])\nnbci.glue('curve', fig)",
        "nbci.glue('accuracy', 0.93)\nnbci.glue('loss', [0.9, 0.5, 0.2])",
    ]
    notebook("notebooks/train.ipynb", cells)
    notebook("notebooks/eval.ipynb", ["import nbci\nnbci.glue('auc', 0.8)"])
    out = project / "nbci-out"

    def files() -> dict[str, bytes]:
        return {
            p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
        }

    assert main(["run", "--jobs", "2"]) == EXIT_OK
    cold = files()
    assert main(["run", "--jobs", "2"]) == EXIT_OK
    warm = files()
    capsys.readouterr()

    assert warm.keys() == cold.keys()
    assert {name for name in cold if cold[name] != warm[name]} == {
        "results.json", "report.md", "report.html", "junit.xml"
    }  # fmt: skip
    cold_run, warm_run = json.loads(cold["results.json"]), json.loads(warm["results.json"])
    assert [nb["cached"] for nb in cold_run["notebooks"] + warm_run["notebooks"]] == [
        False, False, True, True
    ]  # fmt: skip
    restored = {**cold_run, "created": warm_run["created"]}
    restored["notebooks"] = [{**nb, "cached": True} for nb in cold_run["notebooks"]]
    assert warm_run == restored

    (out / "results.json").write_text(json.dumps(restored))  # the cold run, marked restored
    assert main(["report"]) == EXIT_OK
    capsys.readouterr()
    assert (out / "report.md").read_bytes() == warm["report.md"]
    assert (out / "report.html").read_bytes() == warm["report.html"]


@pytest.mark.kernel
def test_no_cache_refills_the_cache_and_a_result_is_reused_only_under_its_own_limits(
    project: Path, notebook: NotebookFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook("notebooks/slow.ipynb", ["import time\ntime.sleep(1.5)"])

    def statuses(*flags: str) -> list[tuple[str, bool]]:
        main(["run", *flags])
        capsys.readouterr()
        results = json.loads((project / "nbci-out" / "results.json").read_text())
        return [(nb["status"], nb["cached"]) for nb in results["notebooks"]]

    assert statuses("--no-cache") == [("ok", False)]
    assert statuses() == [("ok", True)]  # --no-cache stored what it ran
    assert statuses("--cell-timeout", "0.5") == [("timeout", False)]
    assert statuses("--cell-timeout", "0.5") == [("timeout", False)]  # timeouts are never cached
    assert statuses() == [("ok", True)]


CONSOLE = """\
import atexit, sys, threading, time
from nbci.cli import console
atexit.register(lambda: print("atexit ran", flush=True))
def late():
    time.sleep(0.2)
    print("thread ended")
threading.Thread(target=late).start()
class TornDown:
    def __del__(self):
        print("torn down")
kept = TornDown()  # freed only by the interpreter's teardown of `__main__`
sys.argv = ["nbci", *sys.argv[1:]]
console()
"""


@pytest.mark.tools
@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--version"], 0, "nbci 0"),
        (["run", "--jobs", "0"], 2, "expected a whole number"),
        (["no-such-command"], 2, "invalid choice"),
    ],
)
def test_the_console_command_ends_as_the_interpreter_would(
    argv: list[str], code: int, says: str
) -> None:
    """`console` skips only the interpreter's teardown of its modules (no `__del__` runs
    there): threads are waited for, `atexit` handlers run, what was printed reaches a pipe,
    the exit code is `main`'s or argparse's."""
    done = subprocess.run(
        [sys.executable, "-c", CONSOLE, *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    assert says in done.stdout + done.stderr
    assert done.stdout.splitlines()[-2:] == ["thread ended", "atexit ran"]
