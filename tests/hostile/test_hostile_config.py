"""Broken configuration, through the real command line (`python -m nbci run`).

Every key with a wrong type, unknown keys (with a "did you mean"), dates where
JSON values go, conflicting and unreadable files: exit 2, exactly one line on
stderr that names the file and the key, no traceback, and nothing executed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import NotebookFactory

from .support import nbci

pytestmark = pytest.mark.tools

NOTEBOOK = "notebooks/demo.ipynb"

# (nbci.toml text, what the one line must say besides the file name)
WRONG_VALUES = {
    "notebooks-number": ("notebooks = 3", "notebooks: expected a list of strings"),
    "notebooks-empty": ('notebooks = [""]', "notebooks: expected a list of strings"),
    "exclude-table": ("exclude = {a = 1}", "exclude: expected a list of strings"),
    "notebook-string": ('notebook = "x"', "notebook: expected a list"),
    "notebook-item": ("notebook = [1]", "notebook[0]: expected a table"),
    "parameters-list": ("parameters = [1]", "parameters: expected a table"),
    "parameters-date": ("parameters = {seed = 1979-05-27}", "parameters.seed: expected text"),
    "parameters-time": ("[parameters]\nat = 07:32:00", "parameters.at: expected text"),
    "deps-number": ("deps = 5", "deps: expected a list of strings"),
    "kernel-number": ("kernel = 5", "kernel: expected a non-empty string"),
    "kernel-empty": ('kernel = ""', "kernel: expected a non-empty string"),
    "cell_timeout-text": ('cell_timeout = "10"', "cell_timeout: expected a positive number"),
    "cell_timeout-negative": ("cell_timeout = -1", "cell_timeout: expected a positive number"),
    "cell_timeout-nan": ("cell_timeout = nan", "cell_timeout: expected a positive number"),
    "timeout-inf": ("timeout = inf", "timeout: expected a finite number"),
    "timeout-bool": ("timeout = true", "timeout: expected a positive number"),
    "jobs-zero": ("jobs = 0", "jobs: expected a whole number"),
    "jobs-float": ("jobs = 1.5", "jobs: expected a whole number"),
    "jobs-text": ('jobs = "2"', "jobs: expected a whole number"),
    "out-number": ("out = 1", "out: expected a non-empty string"),
    "out-empty": ('out = ""', "out: expected a non-empty string"),
    "cache_dir-bool": ("cache_dir = false", "cache_dir: expected a non-empty string"),
    "cache_dir-project": ('cache_dir = "."', "cache_dir: expected a folder of its own"),
    "cache_dir-above": ('cache_dir = ".."', "cache_dir: expected a folder of its own"),
    "cache_dir-root": ('cache_dir = "/"', "cache_dir: expected a folder of its own"),
    "cache_dir-in-out": ('cache_dir = "nbci-out/c"', "cache_dir: expected a folder apart"),
    "cache_dir-is-out": ('out = "o"\ncache_dir = "o"', "cache_dir: expected a folder apart"),
    "cache_max_mb-text": ('cache_max_mb = "big"', "cache_max_mb: expected a positive number"),
    "cache_max_age_days-zero": ("cache_max_age_days = 0", "cache_max_age_days: expected"),
    "templates-number": ("templates = 3", "templates: expected a non-empty string"),
    "name-path": ('name = "../x"', "name: expected letters, digits"),
    "name-space": ('name = "a b"', "name: expected letters, digits"),
    "assets_branch-number": ("assets_branch = 1", "assets_branch: expected a non-empty string"),
    "higher_is_better-number": ("higher_is_better = 1", "higher_is_better: expected a list"),
    "lower_is_better-numbers": ("lower_is_better = [1]", "lower_is_better: expected a list"),
    "gates-number": ("gates = 1", "gates: expected a table"),
    "gate-number": ("[gates]\naccuracy = 3", '"accuracy": expected a table'),
    "gate-bound-text": ('[gates.accuracy]\nmin = "high"', '"accuracy"'),
    "gate-percent-on-min": ('[gates.accuracy]\nmin = "5%"', '"accuracy"'),
    "entry-path-number": ("[[notebook]]\npath = 1", "notebook[0].path: expected a non-empty"),
    "entry-no-path": ("[[notebook]]\nkernel = 'python3'", "notebook[0].path: expected"),
    "entry-parameters": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\nparameters = 1',
        "notebook[0].parameters: expected a table",
    ),
    "entry-matrix-scalar": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\nmatrix = {{lr = 1}}',
        "notebook[0].matrix.lr: expected a non-empty list",
    ),
    "entry-matrix-empty": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\nmatrix = {{lr = []}}',
        "notebook[0].matrix.lr: expected a non-empty list",
    ),
    "entry-matrix-date": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\nmatrix = {{lr = [1, 2024-01-01]}}',
        "notebook[0].matrix.lr: expected text",
    ),
    "entry-deps": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\ndeps = [1]',
        "notebook[0].deps: expected a list of strings",
    ),
    "entry-kernel": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\nkernel = []',
        "notebook[0].kernel: expected a non-empty string",
    ),
    "entry-timeout": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\ntimeout = "x"',
        "notebook[0].timeout: expected a positive number",
    ),
    "entry-cell_timeout": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\ncell_timeout = -1',
        "notebook[0].cell_timeout: expected a positive number",
    ),
    "glob-matches-nothing": ('notebooks = ["nowhere/*.ipynb"]', "'nowhere/*.ipynb' matches no"),
    "parameter-not-defined": ("parameters = {typo = 1}", "parameters.typo"),
}

UNKNOWN_KEYS = {
    "top": ('noteboks = ["x"]', "noteboks: unknown key (did you mean 'notebooks'?)"),
    "top-close": ("job = 2", "job: unknown key (did you mean 'jobs'?)"),
    "top-far": ("zzzzzz = 2", "zzzzzz: unknown key"),
    "entry": (
        f'[[notebook]]\npath = "{NOTEBOOK}"\nmatrx = {{lr = [1]}}',
        "notebook[0].matrx: unknown key (did you mean 'matrix'?)",
    ),
    "gate": ("[gates.accuracy]\nmn = 0.9", 'unknown key "mn" (did you mean min?)'),
}


@pytest.fixture
def demo(project: Path, notebook: NotebookFactory) -> Path:
    notebook(NOTEBOOK, ["y = lr * 2"], parameters="lr = 0.1")
    return project


def assert_one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 2, one `nbci: error:` line naming what it must, no traceback, nothing run."""
    stderr = done.stderr
    assert done.returncode == 2, stderr
    assert done.stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nbci: error: ") and "Traceback" not in stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def assert_nothing_ran(project: Path) -> None:
    assert not (project / "nbci-out").exists()
    assert not (project / ".nbci-cache").exists()


@pytest.mark.parametrize(("toml", "says"), WRONG_VALUES.values(), ids=WRONG_VALUES.keys())
def test_a_wrong_value_is_one_line_naming_file_and_key(demo: Path, toml: str, says: str) -> None:
    (demo / "nbci.toml").write_text(toml + "\n")
    (demo / "pyproject.toml").write_text('[project]\nname = "demo"\n')

    assert_one_line_error(nbci(["run"], demo), "nbci.toml", says)
    assert_nothing_ran(demo)


@pytest.mark.parametrize(("toml", "says"), UNKNOWN_KEYS.values(), ids=UNKNOWN_KEYS.keys())
def test_an_unknown_key_says_what_was_meant(demo: Path, toml: str, says: str) -> None:
    (demo / "nbci.toml").write_text(toml + "\n")

    assert_one_line_error(nbci(["run"], demo), "nbci.toml", says)
    assert_nothing_ran(demo)


def test_pyproject_errors_name_the_table(demo: Path) -> None:
    (demo / "pyproject.toml").write_text('[project]\nname = "demo"\n[tool.nbci]\ntmeout = 5\n')

    line = assert_one_line_error(nbci(["run"], demo), "pyproject.toml: [tool.nbci]", "tmeout")
    assert "did you mean 'timeout'?" in line
    (demo / "pyproject.toml").write_text('[project]\nname = "demo"\n[tool]\nnbci = 3\n')
    assert_one_line_error(nbci(["run"], demo), "pyproject.toml", "expected a table")


def test_conflicting_config_files(demo: Path) -> None:
    (demo / "pyproject.toml").write_text('[project]\nname = "demo"\n[tool.nbci]\njobs = 1\n')
    (demo / "nbci.toml").write_text("jobs = 2\n")

    line = assert_one_line_error(nbci(["run"], demo), "nbci.toml", "pyproject.toml")
    assert "both" in line
    assert_nothing_ran(demo)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"jobs = \n", "not valid TOML"),
        (b"[[notebook]\n", "not valid TOML"),
        (b'name = "\xff\xfe"\n', "not valid TOML (not UTF-8 text)"),
        (b"jobs = 1\njobs = 2\n", "not valid TOML"),
    ],
    ids=["no-value", "bad-table", "not-utf8", "duplicate-key"],
)
def test_unreadable_config_is_one_line(demo: Path, content: bytes, says: str) -> None:
    (demo / "nbci.toml").write_bytes(content)

    assert_one_line_error(nbci(["run"], demo), "nbci.toml", says)
    assert_nothing_ran(demo)


def test_a_missing_config_file_named_on_the_command_line(demo: Path) -> None:
    done = nbci(["--config", "elsewhere/nbci.toml", "run"], demo)

    assert_one_line_error(done, "elsewhere/nbci.toml", "no such configuration file")
    assert_nothing_ran(demo)


WRONG_FLAGS = {
    "jobs": (["run", "--jobs", "0"], "--jobs"),
    "timeout": (["run", "--timeout", "nan"], "--timeout"),
    "cell-timeout": (["run", "--cell-timeout", "-3"], "--cell-timeout"),
    "parameter": (["run", "-p", "no equals sign"], "-p"),
    "not-utf8": (["run", "-p", os.fsdecode(b"lr=\xff")], "not valid UTF-8"),
    "unknown-parameter": (["run", "-p", "lr=1", "-p", "typo=2"], "-p typo"),
    "shard": (["run", "--shard", "3/2"], "shard"),
    "path": (["run", "nowhere.ipynb"], "nowhere.ipynb"),
    "baseline": (["run", "--baseline", "missing-dir"], "missing-dir"),
}


@pytest.mark.parametrize(("args", "says"), WRONG_FLAGS.values(), ids=WRONG_FLAGS.keys())
def test_wrong_flags_are_one_line(demo: Path, args: list[str], says: str) -> None:
    assert_one_line_error(nbci(args, demo), says)
    assert_nothing_ran(demo)


@pytest.mark.parametrize("out", [".", "..", "notebooks", "precious.txt"])
def test_an_output_directory_that_is_not_nbci_s_is_refused(demo: Path, out: str) -> None:
    """A run replaces its output directory: `--out .` used to delete the whole project."""
    (demo / "precious.txt").write_text("keep me")
    before = sorted(p.relative_to(demo.parent) for p in demo.parent.rglob("*"))

    done = nbci(["run", "--out", out], demo)

    assert_one_line_error(done, "output directory")
    assert sorted(p.relative_to(demo.parent) for p in demo.parent.rglob("*")) == before
    assert (demo / "precious.txt").read_text() == "keep me"


@pytest.mark.kernel
def test_a_cache_dir_holding_the_users_files_keeps_them(demo: Path) -> None:
    (demo / "nbci.toml").write_text('cache_dir = "data"\n')
    mine = demo / "data" / "tmp" / "downloads"
    mine.mkdir(parents=True)
    (mine / "dataset.csv").write_text("x,y\n1,2\n")
    day_ago = time.time() - 86_400
    os.utime(mine, (day_ago, day_ago))

    done = nbci(["run"], demo)

    assert done.returncode == 0, done.stdout + done.stderr
    assert (mine / "dataset.csv").read_text() == "x,y\n1,2\n"
