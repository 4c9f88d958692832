"""`results.json`: the Run on disk, written atomically and read back with validation.

A results file may come from a fork's artifact, so reading it trusts nothing:
every field is type-checked, every path must stay inside the run directory, and
sizes are bounded. Non-finite metrics (NaN, ±inf) are stored as the strings
`"NaN"`, `"Infinity"` and `"-Infinity"` so the file stays standard JSON.
"""

from __future__ import annotations

import json
import math
import platform
import re
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from nbci import __version__
from nbci._files import write_text_atomic
from nbci.errors import ResultsError
from nbci.model import (
    SCHEMA,
    SCRAP_KINDS,
    STATUSES,
    Environment,
    ErrorInfo,
    Figure,
    GitInfo,
    NotebookResult,
    Run,
    Scrap,
)
from nbci.vocabulary import JSON_NONFINITE, json_number

RESULTS_FILE = "results.json"
MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_NOTEBOOKS = 10_000
MAX_METRICS = 20_000
MAX_STRING = 2 * 1024 * 1024
MAX_NAME = 1_000
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
    text = json.dumps(run_to_dict(run), indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(out_dir / RESULTS_FILE, text + "\n")


def run_to_dict(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": run.schema,
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
    return data


def _notebook_to_dict(nb: NotebookResult) -> dict[str, Any]:
    return {
        "id": nb.id,
        "path": nb.path,
        "parameters": _json_safe(nb.parameters),
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
        "notes": list(nb.notes),
        "cache_key": nb.cache_key,
    }


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


def git_info(root: Path) -> GitInfo:
    """Commit, branch and dirtiness of the checkout at `root` (all None outside git)."""

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
        return GitInfo()
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(
        sha=sha,
        branch=None if branch in (None, "HEAD") else branch,
        dirty=None if status is None else bool(status),
    )


def environment_info() -> Environment:
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return Environment(
        python=platform.python_version(),
        platform=f"{platform.system()}-{platform.machine()} ({sys.implementation.name})",
        packages=packages,
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
    """Build a Run from parsed JSON, rejecting anything off-contract with `source: field: why`."""
    v = _Validator(source)
    top = v.mapping(data, "")
    schema = v.string(top.get("schema"), "schema")
    if schema != SCHEMA:
        raise ResultsError(f"{source}: schema {schema!r} is not supported (expected {SCHEMA!r})")
    notebooks_raw = v.sequence(top.get("notebooks"), "notebooks", limit=MAX_NOTEBOOKS)
    notebooks = tuple(
        _notebook_from_dict(v, raw, f"notebooks[{i}]") for i, raw in enumerate(notebooks_raw)
    )
    seen: set[str] = set()
    for nb in notebooks:
        if nb.id in seen:
            raise ResultsError(f"{source}: notebooks: job id {nb.id!r} appears twice")
        seen.add(nb.id)
    git = v.mapping(top.get("git", {}), "git")
    env = v.mapping(top.get("environment", {}), "environment")
    packages = v.mapping(env.get("packages", {}), "environment.packages")
    shard = v.optional_string(top.get("shard"), "shard")
    if shard is not None and not re.fullmatch(r"[1-9][0-9]*/[1-9][0-9]*", shard):
        raise ResultsError(f"{source}: shard: expected K/N, got {shard!r}")
    return Run(
        notebooks=notebooks,
        created=v.string(top.get("created"), "created"),
        git=GitInfo(
            sha=v.optional_string(git.get("sha"), "git.sha"),
            branch=v.optional_string(git.get("branch"), "git.branch"),
            dirty=v.optional_bool(git.get("dirty"), "git.dirty"),
        ),
        environment=Environment(
            python=v.string(env.get("python", ""), "environment.python"),
            platform=v.string(env.get("platform", ""), "environment.platform"),
            packages={
                v.string(k, "environment.packages"): v.string(val, f"environment.packages.{k}")
                for k, val in packages.items()
            },
        ),
        nbci_version=v.string(top.get("nbci_version", ""), "nbci_version"),
        schema=schema,
        interrupted=v.boolean(top.get("interrupted", False), "interrupted"),
        shard=shard,
        planned=tuple(
            _job_id(v, job_id, "planned")
            for job_id in v.sequence(top.get("planned", []), "planned", limit=MAX_NOTEBOOKS)
        ),
    )


def _job_id(v: _Validator, value: Any, where: str) -> str:
    job_id = v.string(value, where)
    if not JOB_ID.fullmatch(job_id):
        raise ResultsError(f"{v.source}: {where}: {job_id!r} is not a valid job id")
    return job_id


def _notebook_from_dict(v: _Validator, raw: Any, where: str) -> NotebookResult:
    nb = v.mapping(raw, where)
    job_id = _job_id(v, nb.get("id"), f"{where}.id")
    status = v.string(nb.get("status"), f"{where}.status")
    if status not in STATUSES:
        raise ResultsError(f"{v.source}: {where}.status: {status!r} is not one of {STATUSES}")
    duration = v.seconds(nb.get("duration_s", 0.0), f"{where}.duration_s")
    metrics_raw = v.mapping(nb.get("metrics", {}), f"{where}.metrics", limit=MAX_METRICS)
    scraps_raw = v.mapping(nb.get("scraps", {}), f"{where}.scraps", limit=MAX_METRICS)
    figures_raw = v.sequence(nb.get("figures", []), f"{where}.figures", limit=MAX_METRICS)
    return NotebookResult(
        id=job_id,
        path=v.string(nb.get("path"), f"{where}.path"),
        parameters=v.json_value(v.mapping(nb.get("parameters", {}), f"{where}.parameters")),
        status=status,
        cached=v.boolean(nb.get("cached", False), f"{where}.cached"),
        duration_s=duration,
        output=v.relative_path(nb.get("output"), f"{where}.output", under="notebooks"),
        html=v.relative_path(nb.get("html"), f"{where}.html", under="notebooks"),
        error=_error_from_dict(v, nb.get("error"), f"{where}.error"),
        metrics={
            v.name(name, f"{where}.metrics"): v.metric(value, f"{where}.metrics.{name}")
            for name, value in metrics_raw.items()
        },
        scraps={
            v.name(name, f"{where}.scraps"): _scrap_from_dict(v, s, f"{where}.scraps.{name}")
            for name, s in scraps_raw.items()
        },
        figures=tuple(
            _figure_from_dict(v, f, f"{where}.figures[{i}]") for i, f in enumerate(figures_raw)
        ),
        notes=tuple(
            v.string(n, f"{where}.notes")
            for n in v.sequence(nb.get("notes", []), f"{where}.notes", limit=1000)
        ),
        cache_key=v.optional_string(nb.get("cache_key"), f"{where}.cache_key"),
    )


def _error_from_dict(v: _Validator, raw: Any, where: str) -> ErrorInfo | None:
    if raw is None:
        return None
    error = v.mapping(raw, where)
    cell = error.get("cell")
    if cell is not None and (not isinstance(cell, int) or isinstance(cell, bool) or cell < 0):
        raise ResultsError(f"{v.source}: {where}.cell: expected a cell index, got {cell!r}")
    return ErrorInfo(
        cell=cell,
        ename=v.optional_string(error.get("ename"), f"{where}.ename"),
        evalue=v.optional_string(error.get("evalue"), f"{where}.evalue"),
        traceback=v.optional_string(error.get("traceback"), f"{where}.traceback"),
        message=v.optional_string(error.get("message"), f"{where}.message"),
    )


def _scrap_from_dict(v: _Validator, raw: Any, where: str) -> Scrap:
    scrap = v.mapping(raw, where)
    kind = v.string(scrap.get("kind"), f"{where}.kind")
    if kind not in SCRAP_KINDS:
        raise ResultsError(f"{v.source}: {where}.kind: {kind!r} is not one of {SCRAP_KINDS}")
    value = v.json_value(scrap.get("value"))
    if kind in ("text", "html") and not isinstance(value, str):
        raise ResultsError(f"{v.source}: {where}.value: expected a string for a {kind} scrap")
    if kind == "table":
        table = v.mapping(value, f"{where}.value")
        v.sequence(table.get("columns"), f"{where}.value.columns", limit=MAX_METRICS)
        for row in v.sequence(table.get("rows"), f"{where}.value.rows", limit=1_000_000):
            v.sequence(row, f"{where}.value.rows[]", limit=MAX_METRICS)
        v.count(table.get("total_rows"), f"{where}.value.total_rows")
    return Scrap(kind=kind, value=value)


def _figure_from_dict(v: _Validator, raw: Any, where: str) -> Figure:
    figure = v.mapping(raw, where)
    path = v.relative_path(figure.get("path"), f"{where}.path", under="figures")
    if path is None:
        raise ResultsError(f"{v.source}: {where}.path: missing")
    return Figure(name=v.name(figure.get("name"), f"{where}.name"), path=path)


class _Validator:
    """Type checks that raise ResultsError naming the source file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, value: Any) -> ResultsError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return ResultsError(
            f"{self.source}: {where or 'top level'}: expected {expected}, got {shown}"
        )

    def mapping(self, value: Any, where: str, *, limit: int | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "an object", value)
        if limit is not None and len(value) > limit:
            raise self.fail(where, f"at most {limit} entries", f"{len(value)} entries")
        return value

    def sequence(self, value: Any, where: str, *, limit: int) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, "a list", value)
        if len(value) > limit:
            raise self.fail(where, f"at most {limit} items", f"{len(value)} items")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, "a string", value)
        if len(value) > MAX_STRING:
            raise self.fail(where, f"at most {MAX_STRING} characters", f"{len(value)} characters")
        if _SURROGATE.search(value):  # `"\ud800"` in JSON: no UTF-8 writer or renderer takes it
            raise self.fail(where, "valid Unicode text", value)
        return value

    def optional_string(self, value: Any, where: str) -> str | None:
        return None if value is None else self.string(value, where)

    def name(self, value: Any, where: str) -> str:
        name = self.string(value, where)
        if len(name) > MAX_NAME:
            raise self.fail(where, f"a name of at most {MAX_NAME} characters", name)
        return name

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "true or false", value)
        return value

    def optional_bool(self, value: Any, where: str) -> bool | None:
        return None if value is None else self.boolean(value, where)

    def number(self, value: Any, where: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, "a number", value)
        return value

    def seconds(self, value: Any, where: str) -> float:
        """A duration: finite and not negative, so that it can be written back."""
        number = self.number(value, where)
        try:
            seconds = float(number)
        except OverflowError:  # an int beyond float range
            seconds = math.inf
        if not (math.isfinite(seconds) and seconds >= 0):
            raise self.fail(where, "a finite number of seconds ≥ 0", value)
        return seconds

    def count(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, "a whole number ≥ 0", value)
        return value

    def metric(self, value: Any, where: str) -> float | int | bool:
        if isinstance(value, str) and value in _NONFINITE:
            return _NONFINITE[value]
        if not isinstance(value, int | float):
            raise self.fail(where, "a number or a boolean", value)
        return value

    def json_value(self, value: Any, depth: int = 0) -> Any:
        """Any JSON value, bounded in depth and string size."""
        if depth > MAX_DEPTH:
            raise self.fail("value", f"nesting at most {MAX_DEPTH} deep", "deeper")
        if isinstance(value, dict):
            return {self.string(k, "key"): self.json_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_value(v, depth + 1) for v in value]
        if isinstance(value, str):
            return self.string(value, "value")
        return value

    def relative_path(self, value: Any, where: str, *, under: str) -> str | None:
        """A posix path inside the run directory, below `under/`; None stays None."""
        if value is None:
            return None
        text = self.string(value, where)
        path = PurePosixPath(text)
        if (
            not text
            or "\\" in text
            or "\x00" in text
            or path.is_absolute()
            or ".." in path.parts
            or path.parts[0] != under
            or len(path.parts) < 2
            or not all(PATH_PART.fullmatch(part) for part in path.parts)
        ):
            raise self.fail(where, f"a relative path below {under}/", text)
        return text
