"""`results.json`: the Run on disk, written atomically and read back with validation.

A results file may come from a fork's artifact, so reading it trusts nothing:
the document must fit the JSON Schema of its version, shipped in `nbci/schemas/`
(`nbci.results/3`: `results-3.schema.json`, written; `/2`, without effective
parameters, and `/1`, without series either, still read); then every path must
stay inside the run directory, and strings and nesting are bounded. Non-finite
metrics (NaN, ±inf) are stored as the strings `"NaN"`, `"Infinity"` and
`"-Infinity"` so the file stays standard JSON; a series' gaps are nulls.
"""

from __future__ import annotations

import json
import os
import platform
import re
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from nbci import __version__
from nbci._files import write_text_atomic
from nbci._installed import versions
from nbci.errors import ResultsError
from nbci.model import (
    SCHEMA,
    Environment,
    ErrorInfo,
    Figure,
    GitInfo,
    NotebookResult,
    Parameter,
    Run,
    Scrap,
    SeriesGroup,
    finite_float,
)
from nbci.schemas import RESULTS_SCHEMAS, Where, dotted, first_problem, shown
from nbci.series import group_from_dict, group_to_dict
from nbci.vocabulary import JSON_NONFINITE, json_number

RESULTS_FILE = "results.json"
MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_NOTEBOOKS = 10_000
MAX_METRICS = 20_000
MAX_STRING = 2 * 1024 * 1024
MAX_DEPTH = 64
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
PATH_PART = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
KEY_PACKAGES = (
    "nbci",
    "papermill",
    "nbclient",
    "nbformat",
    "ipykernel",
    "scrapbook",
    "numpy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "torch",
)
_NONFINITE = JSON_NONFINITE
_SURROGATE = re.compile("[\ud800-\udfff]")


# -- writing -----------------------------------------------------------------


def write_run(run: Run, out_dir: Path) -> Path:
    """Write `out_dir/results.json` atomically; returns its path."""
    return write_text_atomic(out_dir / RESULTS_FILE, run_json(run))


def run_json(run: Run) -> str:
    """The text of results.json, the one serialisation (a run folder and the assets branch)."""
    return json.dumps(run_to_dict(run), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def run_to_dict(run: Run) -> dict[str, Any]:
    """The JSON form, always in the version written (`SCHEMA`): a run read from a `/1`
    or `/2` file is written back as `/3`, what it did not record (`series`,
    `effective_parameters`) empty."""
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "nbci_version": run.nbci_version,
        "created": run.created,
        "git": {"sha": run.git.sha, "branch": run.git.branch, "dirty": run.git.dirty},
        "environment": {
            "python": run.environment.python,
            "platform": run.environment.platform,
            "packages": dict(run.environment.packages),
        },
        "interrupted": run.interrupted,
        "shard": run.shard,
        "planned": list(run.planned),
        "notebooks": [_notebook_to_dict(nb) for nb in run.notebooks],
    }
    if run.report is not None:
        data["report"] = run.report
    return data


def _notebook_to_dict(nb: NotebookResult) -> dict[str, Any]:
    return {
        "id": nb.id,
        "path": nb.path,
        "parameters": _json_safe(nb.parameters),
        "effective_parameters": {
            name: _parameter_to_dict(parameter)
            for name, parameter in nb.effective_parameters.items()
        },
        "status": nb.status,
        "cached": nb.cached,
        "duration_s": round(nb.duration_s, 3),
        "output": nb.output,
        "html": nb.html,
        "error": _error_to_dict(nb.error),
        "metrics": {name: _encode_number(value) for name, value in nb.metrics.items()},
        "scraps": {
            name: {"kind": s.kind, "value": _json_safe(s.value)} for name, s in nb.scraps.items()
        },
        "figures": [{"name": f.name, "path": f.path} for f in nb.figures],
        "series": [group_to_dict(group) for group in nb.series],
        "notes": list(nb.notes),
        "cache_key": nb.cache_key,
        "kernel": nb.kernel,
    }


def _parameter_to_dict(parameter: Parameter) -> dict[str, Any]:
    """`{"value": 0.5, "source": "injected", "via": "-p"}`; a default's code as `"code"`."""
    data: dict[str, Any] = {"source": parameter.source}
    if parameter.expression:
        data["code"] = parameter.value
    else:
        data["value"] = _json_safe(parameter.value)
    if parameter.via is not None:
        data["via"] = parameter.via
    return data


def _error_to_dict(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "cell": error.cell,
        "ename": error.ename,
        "evalue": error.evalue,
        "traceback": error.traceback,
        "message": error.message,
    }


def _encode_number(value: float | int | bool) -> object:
    return json_number(value)


def _json_safe(value: Any) -> Any:
    """Non-finite floats anywhere in a JSON value become their string spelling."""
    if isinstance(value, float):
        return _encode_number(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# -- a new run ---------------------------------------------------------------


def new_run(
    notebooks: Iterable[NotebookResult],
    root: Path,
    *,
    interrupted: bool = False,
    shard: str | None = None,
    planned: Iterable[str] = (),
) -> Run:
    """A Run stamped with now, the git state of `root` and the environment."""
    return Run(
        notebooks=tuple(notebooks),
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        git=git_info(root),
        environment=environment_info(),
        nbci_version=__version__,
        interrupted=interrupted,
        shard=shard,
        planned=tuple(planned),
    )


CI_COMMIT_VARIABLES = (
    ("CI_COMMIT_SHA", ("CI_COMMIT_BRANCH", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")),  # GitLab CI
    ("GITHUB_SHA", ("GITHUB_HEAD_REF", "GITHUB_REF_NAME")),  # GitHub Actions
    ("BITBUCKET_COMMIT", ("BITBUCKET_BRANCH",)),  # Bitbucket Pipelines
)
"""Where a CI says which commit (and branch) it builds: read when git cannot say."""
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")


def git_info(root: Path, environ: Mapping[str, str] = os.environ) -> GitInfo:
    """Commit, branch and dirtiness of the checkout at `root`.

    Without git (GitLab's `python:*-slim` images have none) or outside a checkout,
    the commit and branch come from the CI's variables (`CI_COMMIT_VARIABLES`);
    else all None.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=root,
                capture_output=True,
                text=True,
                errors="replace",  # a branch name need not be UTF-8
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return _ci_commit(environ)
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(
        sha=sha,
        branch=None if branch in (None, "HEAD") else branch,
        dirty=None if status is None else bool(status),
    )


def _ci_commit(environ: Mapping[str, str]) -> GitInfo:
    for sha_variable, branch_variables in CI_COMMIT_VARIABLES:
        sha = environ.get(sha_variable, "")
        if _COMMIT.match(sha):
            branch = next((environ[v] for v in branch_variables if environ.get(v)), None)
            return GitInfo(sha=sha.lower(), branch=branch)
    return GitInfo()


def environment_info() -> Environment:
    """The interpreter, the platform and the versions of `KEY_PACKAGES` installed (read from
    the scan the cache's fingerprint makes, not asked of importlib.metadata one by one)."""
    return Environment(
        python=platform.python_version(),
        platform=f"{platform.system()}-{platform.machine()} ({sys.implementation.name})",
        packages=dict(versions(KEY_PACKAGES)),
    )


# -- reading (untrusted) -----------------------------------------------------


def read_run(path: Path) -> Run:
    """Read and validate a run from an output directory or a results.json file."""
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        info = file.lstat()
    except OSError:
        raise ResultsError(f"{file}: no results here (run `nbci run` first)") from None
    if not stat.S_ISREG(info.st_mode):
        raise ResultsError(f"{file}: not a regular file")
    if info.st_size > MAX_RESULTS_BYTES:
        raise ResultsError(
            f"{file}: {info.st_size} bytes, larger than the {MAX_RESULTS_BYTES} allowed"
        )
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_RESULTS_BYTES + 1)
    except OSError as exc:
        raise ResultsError(f"{file}: cannot be read ({exc.strerror})") from None
    return run_from_json(raw, source=str(file))


def run_from_json(raw: bytes, *, source: str) -> Run:
    """Decode and validate the bytes of a results.json (a file, or one stored elsewhere)."""
    if len(raw) > MAX_RESULTS_BYTES:
        raise ResultsError(f"{source}: larger than the {MAX_RESULTS_BYTES} bytes allowed")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting too
        raise ResultsError(f"{source}: not valid JSON ({exc})") from None
    return run_from_dict(data, source=source)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def run_from_dict(data: Any, *, source: str) -> Run:
    """Build a Run from parsed JSON, rejecting anything off-contract with `source: field: why`.

    The shipped JSON Schema of the document's version checks the shape; the
    checks after it are those a schema cannot make: sizes and text of every
    string, nesting depth, paths that stay inside the run folder, unique ids.
    """
    problem = first_problem(data, _schema_file(data, source))
    if problem is not None:
        raise ResultsError(f"{source}: {dotted(problem.where) or 'top level'}: {problem.message}")
    _check_text_and_depth(data, (), source)
    notebooks = tuple(
        _notebook_from_dict(nb, ("notebooks", i), source) for i, nb in enumerate(data["notebooks"])
    )
    seen: set[str] = set()
    for nb in notebooks:
        if nb.id in seen:
            raise ResultsError(f"{source}: notebooks: job id {nb.id!r} appears twice")
        seen.add(nb.id)
    git, env = data.get("git", {}), data.get("environment", {})
    return Run(
        notebooks=notebooks,
        created=data["created"],
        git=GitInfo(sha=git.get("sha"), branch=git.get("branch"), dirty=git.get("dirty")),
        environment=Environment(
            python=env.get("python", ""),
            platform=env.get("platform", ""),
            packages=dict(env.get("packages", {})),
        ),
        nbci_version=data.get("nbci_version", ""),
        schema=data["schema"],
        interrupted=data.get("interrupted", False),
        shard=data.get("shard"),
        planned=tuple(
            _job_id(job_id, ("planned", i), source)
            for i, job_id in enumerate(data.get("planned", []))
        ),
        report=data.get("report"),
    )


def _schema_file(data: Any, source: str) -> str:
    """The schema file for the version the document names (it must name one nbci reads)."""
    if not isinstance(data, dict) or "schema" not in data:
        raise ResultsError(
            f"{source}: not an nbci run: a results.json names its format at its top level "
            f'("schema": "{SCHEMA}"), this file does not'
        )
    version = data.get("schema")
    if not isinstance(version, str):
        raise ResultsError(f"{source}: schema: expected a string, got {shown(version)}")
    if version not in RESULTS_SCHEMAS:
        expected = " or ".join(repr(known) for known in RESULTS_SCHEMAS)
        raise ResultsError(f"{source}: schema {version!r} is not supported (expected {expected})")
    return RESULTS_SCHEMAS[version]


def _fail(source: str, where: Where, expected: str, value: Any) -> ResultsError:
    return ResultsError(
        f"{source}: {dotted(where) or 'top level'}: expected {expected}, got {shown(value)}"
    )


def _check_text_and_depth(value: Any, where: Where, source: str) -> None:
    """Every string (keys too) bounded and valid Unicode; nesting bounded (no recursion error)."""
    if len(where) > MAX_DEPTH:
        raise _fail(source, where, f"nesting at most {MAX_DEPTH} deep", "deeper")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _fail(
                source, where, f"at most {MAX_STRING} characters", f"{len(value)} characters"
            )
        if _SURROGATE.search(value):  # `"\ud800"` in JSON: no UTF-8 writer or renderer takes it
            raise _fail(source, where, "valid Unicode text", value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text_and_depth(key, where, source)
            _check_text_and_depth(item, (*where, key), source)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text_and_depth(item, (*where, index), source)


def _job_id(value: str, where: Where, source: str) -> str:
    """The schema's pattern, matched whole: Python's `$` also matches before a final newline."""
    if not JOB_ID.fullmatch(value):
        raise ResultsError(f"{source}: {dotted(where)}: {value!r} is not a valid job id")
    return value


def _optional_path(value: str | None, where: Where, source: str, *, under: str) -> str | None:
    return None if value is None else _path_below(value, where, source, under=under)


def _path_below(value: str, where: Where, source: str, *, under: str) -> str:
    """A posix path inside the run directory, below `under/`.

    The schema's pattern says the same; this is the check nbci relies on before
    a path from an untrusted file reaches the file system.
    """
    path = PurePosixPath(value)
    if (
        "\\" in value
        or path.is_absolute()
        or ".." in path.parts
        or len(path.parts) < 2
        or path.parts[0] != under
        or not all(PATH_PART.fullmatch(part) for part in path.parts)
    ):
        raise _fail(source, where, f"a relative path below {under}/", value)
    return value


def _notebook_from_dict(nb: dict[str, Any], where: Where, source: str) -> NotebookResult:
    duration = nb.get("duration_s", 0.0)
    if finite_float(duration) is None:
        raise _fail(source, (*where, "duration_s"), "a finite number of seconds ≥ 0", duration)
    return NotebookResult(
        id=_job_id(nb["id"], (*where, "id"), source),
        path=nb["path"],
        parameters=nb.get("parameters", {}),
        status=nb["status"],
        cached=nb.get("cached", False),
        duration_s=float(duration),
        output=_optional_path(nb.get("output"), (*where, "output"), source, under="notebooks"),
        html=_optional_path(nb.get("html"), (*where, "html"), source, under="notebooks"),
        error=_error_from_dict(nb.get("error")),
        metrics={name: _decode_number(value) for name, value in nb.get("metrics", {}).items()},
        scraps={
            name: Scrap(kind=scrap["kind"], value=scrap.get("value"))
            for name, scrap in nb.get("scraps", {}).items()
        },
        figures=tuple(
            Figure(
                name=figure["name"],
                path=_path_below(
                    figure["path"], (*where, "figures", i, "path"), source, under="figures"
                ),
            )
            for i, figure in enumerate(nb.get("figures", []))
        ),
        series=_series_from_list(nb.get("series", []), where, source),
        notes=tuple(nb.get("notes", [])),
        cache_key=nb.get("cache_key"),
        kernel=nb.get("kernel"),
        effective_parameters={
            name: _parameter_from_dict(parameter)
            for name, parameter in nb.get("effective_parameters", {}).items()
        },
    )


def _parameter_from_dict(data: dict[str, Any]) -> Parameter:
    """`/3`'s effective parameter (the schema checked its shape)."""
    if "code" in data:
        return Parameter(data["code"], data["source"], data.get("via"), expression=True)
    return Parameter(data.get("value"), data["source"], data.get("via"))


def _series_from_list(groups: list[Any], where: Where, source: str) -> tuple[SeriesGroup, ...]:
    """`/2`'s series (a `/1` run has none); the schema checked the shape, this the bounds."""
    try:
        return tuple(
            group_from_dict(group, dotted((*where, "series", i))) for i, group in enumerate(groups)
        )
    except ValueError as exc:
        raise ResultsError(f"{source}: {exc}") from None


def _decode_number(value: float | int | bool | str) -> float | int | bool:
    return _NONFINITE[value] if isinstance(value, str) else value


def _error_from_dict(error: dict[str, Any] | None) -> ErrorInfo | None:
    if error is None:
        return None
    cell = error.get("cell")
    return ErrorInfo(
        cell=None if cell is None else int(cell),  # the schema allows 3.0 for 3
        ename=error.get("ename"),
        evalue=error.get("evalue"),
        traceback=error.get("traceback"),
        message=error.get("message"),
    )
