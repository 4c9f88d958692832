from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from handmade_runs import sample_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import nbci.schemas
from nbci._installed import versions
from nbci.errors import ResultsError
from nbci.model import (
    SCHEMA,
    SCRAP_KINDS,
    STATUSES,
    GitInfo,
    Run,
    Scrap,
)
from nbci.results import (
    CI_COMMIT_VARIABLES,
    KEY_PACKAGES,
    MAX_RESULTS_BYTES,
    environment_info,
    git_info,
    new_run,
    read_run,
    run_from_dict,
    run_to_dict,
    write_run,
)


def with_non_finite(run: Run) -> Run:
    """The sample run with NaN and infinity in a metric and inside a json scrap."""
    first = run.notebooks[0]
    first = replace(
        first,
        metrics={**first.metrics, "bad": math.nan},
        scraps={**first.scraps, "cfg": Scrap("json", {"depth": [1, {"inf": math.inf}]})},
    )
    return replace(run, notebooks=(first, *run.notebooks[1:]))


def test_round_trip_keeps_every_field_and_non_finite_values(tmp_path: Path) -> None:
    run = with_non_finite(sample_run())
    path = write_run(run, tmp_path)
    assert path == tmp_path / "results.json"
    text = path.read_text()
    assert "NaN" in text and json.loads(text)["notebooks"][0]["metrics"]["bad"] == "NaN"
    back = read_run(tmp_path)
    assert math.isnan(back.notebooks[0].metrics["bad"])
    assert back.notebooks[0].scraps["cfg"].value == {"depth": [1, {"inf": "Infinity"}]}
    same = {k: v for k, v in back.notebooks[0].metrics.items() if k not in ("bad", "loss")}
    assert same == {"accuracy": 0.93, "steps": 10, "converged": True}
    assert back.notebooks[1] == run.notebooks[1]
    assert (back.git, back.environment, back.created) == (run.git, run.environment, run.created)


def test_a_stored_run_records_its_report_name_and_a_run_folder_does_not(
    tmp_path: Path,
) -> None:
    """`report` is optional (issue 13): absent from `nbci run`'s results.json, kept when set."""
    plain = json.loads(write_run(sample_run(), tmp_path / "plain").read_text())
    assert "report" not in plain and read_run(tmp_path / "plain").report is None
    named = replace(sample_run(), report="ml/gpu")
    data = json.loads(write_run(named, tmp_path / "named").read_text())
    assert data["report"] == "ml/gpu"
    assert list(Draft202012Validator(_shipped_schema()).iter_errors(data)) == []
    assert read_run(tmp_path / "named").report == "ml/gpu"


def test_contract_field_names(tmp_path: Path) -> None:
    data = json.loads(write_run(sample_run(), tmp_path).read_text())
    assert data["schema"] == "nbci.results/3"
    assert {"schema", "nbci_version", "created", "git", "environment", "notebooks"} <= set(data)
    assert {
        "id", "path", "parameters", "status", "cached", "duration_s", "output", "error",
        "metrics", "scraps", "figures",
    } <= set(data["notebooks"][0])  # fmt: skip
    assert data["notebooks"][1]["error"] == {
        "cell": 3, "ename": "ValueError", "evalue": "bad", "traceback": "tb", "message": None,
    }  # fmt: skip


def test_new_run_records_git_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sha_variable, _ in CI_COMMIT_VARIABLES:
        monkeypatch.delenv(sha_variable, raising=False)
    run = new_run([], tmp_path)
    assert run.schema == SCHEMA
    assert run.git == GitInfo()  # not a git checkout
    assert run.environment.python.count(".") == 2
    assert "nbci" in run.environment.packages
    assert run.created.endswith("Z")


def test_the_recorded_versions_are_those_importlib_metadata_gives() -> None:
    from importlib import metadata

    expected = {}
    for name in KEY_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            expected[name] = metadata.version(name)
    assert environment_info().packages == expected


def test_a_version_is_the_first_distribution_on_the_path_as_importlib_metadata_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    def distribution(site: Path, folder: str, name: str, version: str) -> None:
        (site / folder).mkdir(parents=True)
        meta = "METADATA" if folder.endswith(".dist-info") else "PKG-INFO"
        (site / folder / meta).write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )

    first, second = tmp_path / "first", tmp_path / "second"
    distribution(first, "Foo_Bar-1.2.dist-info", "Foo.Bar", "1.2")
    distribution(second, "foo_bar-0.9.dist-info", "foo-bar", "0.9")  # shadowed by the first
    distribution(second, "Legacy_Pkg-3.0-py3.11.egg-info", "Legacy-Pkg", "3.0")
    distribution(second, "unversioned.egg-info", "Unversioned", "4.1")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    names = ["foo.bar", "Legacy_Pkg", "unversioned", "not-installed-anywhere"]

    found = versions(names)

    assert found == {"foo.bar": "1.2", "Legacy_Pkg": "3.0", "unversioned": "4.1"}
    assert found == {n: metadata.version(n) for n in names[:3]}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CI_COMMIT_SHA": "A" * 40, "CI_COMMIT_BRANCH": "main"}, GitInfo("a" * 40, "main")),
        ({"GITHUB_SHA": "b" * 40, "GITHUB_REF_NAME": "12/merge", "GITHUB_HEAD_REF": "fix"},
         GitInfo("b" * 40, "fix")),
        ({"BITBUCKET_COMMIT": "c" * 12, "BITBUCKET_BRANCH": "dev"}, GitInfo("c" * 12, "dev")),
        ({"CI_COMMIT_SHA": "$(rm -rf /)"}, GitInfo()),
        ({}, GitInfo()),
    ],
)  # fmt: skip
def test_without_git_the_commit_comes_from_the_ci_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: GitInfo
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"],
                   check=True, env={**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
                   "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"})  # fmt: skip
    assert git_info(tmp_path, environ).sha not in (None, expected.sha)  # git, when there is one
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))  # a python:*-slim image

    assert git_info(tmp_path, environ) == expected


def _valid() -> dict[str, Any]:
    return run_to_dict(sample_run())


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_valid())
    target: Any = data
    keys = path.split("/")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("schema", "nbci.results/4", "schema 'nbci.results/4' is not supported"),
        ("notebooks", {}, "notebooks: expected a list"),
        ("notebooks/0/id", "../x", "is not a valid job id"),
        ("notebooks/0/id", "a/b", "is not a valid job id"),
        ("notebooks/0/status", "great", "'great' is not one of"),
        ("notebooks/0/output", "../../etc/passwd", "output: expected a relative path below"),
        ("notebooks/0/output", "/etc/passwd", "expected a relative path below notebooks/"),
        ("notebooks/0/output", "figures/x.ipynb", "below notebooks/"),
        ("notebooks/0/html", "notebooks\\..\\x", "html: expected a relative path"),
        ("notebooks/0/figures/0/path", "figures/../../x.png", "path: expected a relative path"),
        ("notebooks/0/figures/0/path", "figures", "path: expected a relative path"),
        ("notebooks/0/metrics/accuracy", "0.9", "expected a number or a boolean"),
        ("notebooks/0/metrics/accuracy", [1], "expected a number or a boolean"),
        ("notebooks/0/scraps/notes/kind", "exe", "'exe' is not one of"),
        ("notebooks/0/scraps/notes/value", 3, "expected a string for a text scrap"),
        ("notebooks/0/scraps/table/value", {"columns": []}, "rows: expected a list"),
        ("notebooks/0/duration_s", "1", "duration_s: expected a number"),
        ("notebooks/0/cached", 1, "cached: expected true or false"),
        ("notebooks/1/error/cell", -1, "expected a cell index"),
        ("notebooks/0/parameters", [], "parameters: expected an object"),
        ("notebooks/0/notes", "x", "notes: expected a list"),
        ("shard", "1/x", "shard: expected K/N"),
        ("git", "main", "git: expected an object"),
        ("report", 7, "report: expected a string"),
    ],
)
def test_untrusted_results_are_rejected_with_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ResultsError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run_from_dict(_mutate(path, value), source="artifact/results.json")


def test_a_name_with_a_line_break_is_quoted_so_the_message_stays_one_line() -> None:
    """Found by hypothesis: a metric named "\\n" split the message in two."""
    with pytest.raises(ResultsError) as raised:
        run_from_dict(_mutate("notebooks/0/metrics", {"a\nb": None}), source="x")
    assert str(raised.value) == (
        "x: notebooks[0].metrics['a\\nb']: expected a number or a boolean, got None"
    )


def test_duplicate_job_ids_are_rejected() -> None:
    data = _valid()
    data["notebooks"][1]["id"] = data["notebooks"][0]["id"]
    with pytest.raises(ResultsError, match="appears twice"):
        run_from_dict(data, source="x")


def test_deeply_nested_values_are_rejected() -> None:
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    data = _mutate("notebooks/0/scraps/cfg/value", deep)
    with pytest.raises(ResultsError, match="nesting"):
        run_from_dict(data, source="x")


def test_huge_and_non_json_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"schema": NaN}')
    with pytest.raises(ResultsError, match="not valid JSON"):
        read_run(tmp_path)
    (tmp_path / "results.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ResultsError, match="not valid JSON"):
        read_run(tmp_path)
    with (tmp_path / "results.json").open("wb") as f:
        f.truncate(MAX_RESULTS_BYTES + 1)
    with pytest.raises(ResultsError, match="larger than"):
        read_run(tmp_path)
    with pytest.raises(ResultsError, match="no results here"):
        read_run(tmp_path / "missing")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(_valid())), json_values, max_size=8))
def test_arbitrary_top_level_values_raise_only_results_error(data: dict[str, Any]) -> None:
    merged = {**_valid(), **data}
    try:
        run_from_dict(merged, source="x")
    except ResultsError as error:
        assert str(error).startswith("x: ") and "\n" not in str(error)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            "id",
            "path",
            "parameters",
            "status",
            "cached",
            "duration_s",
            "output",
            "html",
            "error",
            "metrics",
            "scraps",
            "figures",
            "notes",
            "cache_key",
        ]
    ),
    json_values,
)
def test_arbitrary_notebook_fields_raise_only_results_error(field: str, value: Any) -> None:
    """Accepted: every path stays inside the run. Rejected: one line naming the notebook."""
    data = _mutate(f"notebooks/0/{field}", value)
    try:
        run = run_from_dict(data, source="x")
    except ResultsError as error:
        assert str(error).startswith("x: notebooks") and "\n" not in str(error)
    else:
        nb = run.notebooks[0]
        for path in (nb.output, nb.html, *(f.path for f in nb.figures)):
            assert path is None or (".." not in path.split("/") and not path.startswith("/"))


def _shipped_schema() -> dict[str, Any]:
    text = resources.files("nbci.schemas").joinpath("results-3.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_a_written_run_fits_the_shipped_schema_read_by_any_validator(tmp_path: Path) -> None:
    """What the README promises readers of runs: the schema file alone validates results.json."""
    schema = _shipped_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    data = json.loads(write_run(with_non_finite(sample_run()), tmp_path).read_text())
    assert list(validator.iter_errors(data)) == []
    data["notebooks"][0]["status"] = "great"
    data["notebooks"][0]["figures"][0]["path"] = "../x.png"
    assert sorted(e.json_path for e in validator.iter_errors(data)) == [
        "$.notebooks[0].figures[0].path",
        "$.notebooks[0].status",
    ]


@pytest.mark.tools
def test_check_jsonschema_reads_runs_with_the_shipped_schema(tmp_path: Path) -> None:
    """The README's shell command for readers of runs."""
    schema = Path(nbci.schemas.__path__[0]) / "results-3.schema.json"
    results = write_run(sample_run(), tmp_path)

    def check() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema)]
        return subprocess.run([*command, str(results)], capture_output=True, text=True)

    done = check()
    assert done.returncode == 0, done.stdout + done.stderr
    results.write_text(results.read_text().replace('"ok"', '"great"', 1))
    done = check()
    assert done.returncode == 1 and "'great' is not one of" in done.stdout, done.stdout


def test_the_schema_lists_the_model_s_statuses_and_scrap_kinds() -> None:
    defs = _shipped_schema()["$defs"]
    assert tuple(defs["notebook"]["properties"]["status"]["enum"]) == STATUSES
    assert tuple(defs["scrap"]["properties"]["kind"]["enum"]) == SCRAP_KINDS
    assert _shipped_schema()["properties"]["schema"]["const"] == SCHEMA


@pytest.mark.parametrize(
    ("place", "value", "message"),
    [
        ("notebooks/0/id", "train\n", "is not a valid job id"),
        ("notebooks/0/output", "notebooks/x.ipynb\n", "expected a relative path below notebooks/"),
    ],
)
def test_names_the_schema_pattern_lets_through_are_still_refused(
    place: str, value: str, message: str
) -> None:
    """Python's `$` also matches before a final newline: nbci matches ids and paths whole."""
    with pytest.raises(ResultsError, match=message):
        run_from_dict(_mutate(place, value), source="artifact")


def test_links_and_special_files_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "results.json").symlink_to("/dev/zero")
    with pytest.raises(ResultsError, match="not a regular file"):
        read_run(tmp_path)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ResultsError, match="not a regular file"):
        read_run(fifo)


def test_path_parts_are_restricted_to_safe_characters() -> None:
    with pytest.raises(ResultsError, match="expected a relative path below figures/"):
        run_from_dict(
            _mutate("notebooks/0/figures/0/path", "figures/a b/<x>.png"), source="artifact"
        )


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", '{"notebooks": []}'])
def test_a_file_that_is_not_a_run_is_called_that(content: str, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ResultsError) as error:
        read_run(path)
    assert str(error.value) == (
        f"{path}: not an nbci run: a results.json names its format at its top level "
        f'("schema": "{SCHEMA}"), this file does not'
    )
