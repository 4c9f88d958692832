"""The command line as a user meets it: exit codes, one-line errors, end-to-end runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NotebookFactory

from nbci.cli import EXIT_USAGE, main


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
