"""Plan: which notebooks run with which parameters, as a list of `Job`s.

A job id is the notebook's name plus the matrix values that tell its jobs
apart (`train`, `train-C-0.1`), the same on every machine. Parameters are
checked against each notebook's `parameters` cell before anything runs.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from nbci.config import Config, NotebookEntry
from nbci.errors import ConfigError, UsageError
from nbci.model import Job

MAX_ID = 120
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Problem:
    """A notebook that will not run, and why (it becomes an `invalid` result)."""

    job: Job
    message: str


@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]
    problems: tuple[Problem, ...] = ()
    """Jobs known to be `invalid` before any kernel starts."""


def parse_parameter(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line; VALUE is JSON when it parses, else a string."""
    if not _is_utf8(text):
        raise UsageError(f"-p {_shown(text)}: not valid UTF-8 text")
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise UsageError(f"-p {text!r}: expected NAME=VALUE with a Python identifier as NAME")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


def plan(
    config: Config,
    paths: Sequence[Path] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    out_dir: Path | None = None,
) -> Plan:
    """Jobs for the notebooks in `paths` (files or folders), or for the configured ones.

    Notebooks in the output directory (`out_dir`, default the configured one) and in
    the cache are nbci's own executed copies: a folder or glob never selects them.
    """
    overrides = dict(overrides or {})
    own = (
        (out_dir or config.root / config.out).resolve(),
        (config.root / config.cache_dir).resolve(),
    )
    notebooks = _select_notebooks(config, paths, own)
    jobs: list[Job] = []
    problems: list[Problem] = []
    for notebook in notebooks:
        if not _is_utf8(notebook):
            job = _unnamable(notebook)
            jobs.append(job)
            message = f"{job.path}: the file name is not valid UTF-8; rename it"
            problems.append(Problem(job, message))
            continue
        defined = _parameters_defined(config.root / notebook)
        for job in _jobs_for(config, notebook, overrides, defined):
            jobs.append(job)
            problem = _check_parameters(config, job, defined, explicit=set(overrides))
            if problem:
                problems.append(Problem(job, problem))
    _check_global_parameters(config, overrides, notebooks)
    return Plan(jobs=tuple(_unique_ids(jobs)), problems=tuple(problems))


# -- which notebooks ---------------------------------------------------------


def _select_notebooks(config: Config, paths: Sequence[Path], own: tuple[Path, ...]) -> list[str]:
    """Posix paths relative to the root, sorted; every configured glob must match."""
    root = config.root
    if paths:
        found = [_relative(root, p) for p in _expand_paths(paths, own)]
    else:
        found = []
        for pattern in config.notebooks:
            matches = _glob(root, pattern, own)
            if not matches:
                raise ConfigError(f"{_where(config)}notebooks: {pattern!r} matches no notebook")
            found.extend(matches)
        for entry in config.entries:
            matches = _glob(root, entry.pattern, own)
            if not matches:
                raise ConfigError(
                    f"{_where(config)}notebook.path: {entry.pattern!r} matches no notebook"
                )
            found.extend(matches)
    excluded = {m for pattern in config.exclude for m in _glob(root, pattern, own)}
    return sorted(set(found) - excluded)


def _expand_paths(paths: Sequence[Path], own: tuple[Path, ...]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            yield from (
                p
                for p in sorted(path.rglob("*.ipynb"))
                if _wanted(p.relative_to(path)) and not _inside_any(p.resolve(), own)
            )
        elif path.exists():
            yield path
        else:
            raise UsageError(f"{path}: no such notebook or folder")


def _glob(root: Path, pattern: str, own: tuple[Path, ...]) -> list[str]:
    matches = []
    for path in sorted(root.glob(pattern)):
        wanted = _wanted(path.relative_to(root))
        if path.suffix == ".ipynb" and wanted and not _inside_any(path.resolve(), own):
            matches.append(path.relative_to(root).as_posix())
    return matches


def _wanted(path: Path) -> bool:
    """Not a checkpoint, nor inside a hidden folder (such as a run's staging folder)."""
    return not any(part.startswith(".") and part not in (".", "..") for part in path.parts)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _inside_any(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(_inside(path, folder) for folder in folders)


def _relative(root: Path, path: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(f"{path}: not inside the project at {root}") from None


# -- parameter sets ----------------------------------------------------------


def _jobs_for(
    config: Config, notebook: str, overrides: Mapping[str, Any], defined: set[str] | None
) -> list[Job]:
    entries = [e for e in config.entries if PurePosixPath(notebook).match(e.pattern)]
    if not entries:
        entries = [NotebookEntry(pattern=notebook)]
    jobs = []
    for entry in entries:
        axes = {name: values for name, values in entry.matrix.items() if name not in overrides}
        for combo in itertools.product(*axes.values()):
            varying = dict(zip(axes, combo, strict=True))
            parameters = {
                **_applicable(config.parameters, defined),
                **entry.parameters,
                **varying,
                **_applicable(overrides, defined),
            }
            jobs.append(
                Job(
                    id=_job_id(notebook, varying),
                    path=notebook,
                    parameters=parameters,
                    kernel=entry.kernel or config.kernel,
                    cell_timeout=entry.cell_timeout or config.cell_timeout,
                    timeout=entry.timeout or config.timeout,
                    deps=(*config.deps, *entry.deps),
                )
            )
    return jobs


def _applicable(parameters: Mapping[str, Any], defined: set[str] | None) -> dict[str, Any]:
    """Project-wide parameters go to the notebooks whose parameters cell defines them."""
    if defined is None:
        return {}
    return {name: value for name, value in parameters.items() if name in defined}


def _check_parameters(
    config: Config, job: Job, defined: set[str] | None, *, explicit: set[str]
) -> str | None:
    """Raise for a parameter the notebook does not define; a message if it has no such cell."""
    if defined is None:
        return None  # unreadable notebook: the executor reports it as invalid
    given = set(job.parameters) | explicit
    if not given:
        return None
    if not defined and "parameters" not in _tags_seen(config.root / job.path):
        return (
            f"{job.path}: has no cell tagged 'parameters', "
            f"so it cannot take {', '.join(sorted(given))}"
        )
    unknown = sorted(set(job.parameters) - defined)
    if unknown:
        raise ConfigError(
            f"{_where(config)}parameters for {job.path}: {unknown[0]!r} is not defined in its "
            f"'parameters' cell (expected one of: {', '.join(sorted(defined)) or 'none'})"
        )
    return None


def _check_global_parameters(
    config: Config, overrides: Mapping[str, Any], notebooks: Sequence[str]
) -> None:
    """A project-wide or -p parameter that no selected notebook defines is a typo."""
    defined: set[str] = set()
    readable = False
    for notebook in notebooks:
        names = _parameters_defined(config.root / notebook)
        if names is not None:
            readable = True
            defined |= names
    if not readable:
        return
    for name in config.parameters:
        if name not in defined:
            raise ConfigError(
                f"{_where(config)}parameters.{name}: no selected notebook's 'parameters' cell "
                "defines it"
            )
    for name in overrides:
        if name not in defined:
            raise UsageError(f"-p {name}: no selected notebook's 'parameters' cell defines it")


def _parameters_defined(path: Path) -> set[str] | None:
    """Names assigned in the notebook's `parameters` cell; None when it cannot be read."""
    cells = _code_cells(path)
    if cells is None:
        return None
    names: set[str] = set()
    for cell in cells:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:
            return None
        for node in tree.body:
            targets = (
                node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            )
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _tags_seen(path: Path) -> set[str]:
    cells = _code_cells(path) or []
    return {tag for cell in cells for tag in cell.get("metadata", {}).get("tags", [])}


def _code_cells(path: Path) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cells = data["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(cells, list):
        return None
    return [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _where(config: Config) -> str:
    return f"{config.source} " if config.source else ""


def _is_utf8(text: str) -> bool:
    """False for a name the OS gave us with undecodable bytes (`surrogateescape`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """A name for messages and results: undecodable bytes as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unnamable(notebook: str) -> Job:
    """The `invalid` job of a notebook whose path cannot be written to results.json."""
    shown = _shown(notebook)
    return Job(id=_job_id(shown, {}), path=shown)


# -- ids ---------------------------------------------------------------------


def _job_id(notebook: str, varying: Mapping[str, Any]) -> str:
    parts = [PurePosixPath(notebook).stem]
    for name, value in sorted(varying.items()):
        parts += [name, value if isinstance(value, str) else json.dumps(value)]
    return _safe_id("-".join(str(p) for p in parts))


def _safe_id(text: str) -> str:
    cleaned = _ID_UNSAFE.sub("_", text).strip("._-") or "notebook"
    if len(cleaned) > MAX_ID:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: MAX_ID - 9]}-{digest}"
    return cleaned


def _unique_ids(jobs: list[Job]) -> list[Job]:
    """Jobs whose ids collide (same stem in two folders) get their folder in the id."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.id] = counts.get(job.id, 0) + 1
    unique = []
    for job in jobs:
        if counts[job.id] > 1:
            parent = PurePosixPath(job.path).parent.as_posix().replace("/", "-")
            digest = hashlib.sha256(
                json.dumps([job.path, job.parameters], sort_keys=True, default=str).encode()
            ).hexdigest()[:6]
            job = replace(job, id=_safe_id(f"{parent}-{job.id}-{digest}"))
        unique.append(job)
    return unique
