"""Plan: which notebooks run with which parameters, as a list of `Job`s.

Job ids follow `nbci.ids` (path and matrix values only). Parameters are
checked against each notebook's `parameters` cell before anything runs.
"""

from __future__ import annotations

import ast
import itertools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from nbci._ast import parse_source
from nbci.config import Config, NotebookEntry
from nbci.errors import ConfigError, UsageError
from nbci.ids import job_id
from nbci.model import Injector, Job, Parameter
from nbci.results import RESULTS_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """A notebook that will not run, and why (it becomes an `invalid` result)."""

    job: Job
    message: str


@dataclass(frozen=True)
class Note:
    """Something a reader of a job's result should know about how it was planned."""

    job: Job
    message: str


@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]
    problems: tuple[Problem, ...] = ()
    """Jobs known to be `invalid` before any kernel starts."""
    notes: tuple[Note, ...] = ()
    """Parameters injected although nbci could not tell that the notebook defines them."""


@dataclass(frozen=True)
class ParametersCell:
    """What a notebook's cells tagged `parameters` define, as far as nbci can tell."""

    names: frozenset[str] = frozenset()
    tagged: bool = False
    doubt: str | None = None
    """Why other names may be defined too (a `%run`, a syntax error...); None when sure."""

    def takes(self, name: str) -> bool:
        """Whether `name` goes in: defined there, or perhaps defined (papermill injects)."""
        return name in self.names or self.doubt is not None


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

    Notebooks in the output directory (`out_dir`, default the configured one), in
    the cache, and in any other run folder or cache (`is_nbci_output`) are nbci's own
    executed copies: a folder or glob never selects them. Every `deps` glob must
    match a file and every `preload` module must be installed.
    """
    overrides = dict(overrides or {})
    own = (
        (out_dir or config.root / config.out).resolve(),
        (config.root / config.cache_dir).resolve(),
    )
    notebooks = _select_notebooks(config, paths, own)
    _check_deps(config)
    _check_preload(config)
    jobs: list[Job] = []
    problems: list[Problem] = []
    notes: list[Note] = []
    for notebook in notebooks:
        if not _is_utf8(notebook):
            job = _unnamable(notebook)
            jobs.append(job)
            message = f"{job.path}: the file name is not valid UTF-8; rename it"
            problems.append(Problem(job, message))
            continue
        cell = parameters_cell(config.root / notebook)
        defaults = parameter_defaults(config.root / notebook)
        for job in _jobs_for(config, notebook, overrides, cell, defaults):
            jobs.append(job)
            problem = _check_parameters(config, job, cell)
            if problem:
                problems.append(Problem(job, problem))
            elif warning := _doubt_warning(job, cell):
                log.warning("%s", warning)
                notes.append(Note(job, warning))
    _check_global_parameters(config, overrides, notebooks)
    _check_unique_ids(jobs)
    return Plan(jobs=tuple(jobs), problems=tuple(problems), notes=tuple(notes))


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
    selected = sorted(set(found) - excluded)
    if found and not selected:
        raise ConfigError(f"{_where(config)}exclude: leaves no notebook to run")
    return selected


def _expand_paths(paths: Sequence[Path], own: tuple[Path, ...]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*.ipynb"))
                if _wanted(p.relative_to(path))
                and not _inside_any(p.resolve(), own)
                and not is_nbci_output(p)
            ]
            if not found:
                raise UsageError(f"{path}: the folder holds no notebook")
            yield from found
        elif path.exists():
            yield path
        else:
            raise UsageError(f"{path}: no such notebook or folder")


def _glob(root: Path, pattern: str, own: tuple[Path, ...]) -> list[str]:
    matches = []
    for path in sorted(root.glob(pattern)):
        wanted = _wanted(path.relative_to(root)) and not is_nbci_output(path)
        if path.suffix == ".ipynb" and wanted and not _inside_any(path.resolve(), own):
            matches.append(path.relative_to(root).as_posix())
    return matches


def is_nbci_output(notebook: Path) -> bool:
    """An executed notebook nbci wrote: `notebooks/<id>.ipynb` in a run folder (it holds an
    nbci results.json: an earlier `--out`, a shard) or in a cache entry (`entry.json`)."""
    folder = notebook.parent
    if folder.name != "notebooks":
        return False
    holder = folder.parent
    if (holder / "entry.json").is_file() and holder.parent.name == "entries":
        return True
    try:
        with (holder / RESULTS_FILE).open(encoding="utf-8", errors="replace") as f:
            start = f.read(200)
    except OSError:
        return False
    return '"nbci.results/' in start


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


# -- what the jobs read ------------------------------------------------------


def _check_deps(config: Config) -> None:
    """A `deps` glob that matches no file is a typo: the cache would not see the file change."""
    listed = [("deps", config.deps)]
    listed += [(f"notebook[{i}].deps", entry.deps) for i, entry in enumerate(config.entries)]
    for key, patterns in listed:
        for pattern in patterns:
            try:
                found = any(p.is_file() for p in config.root.glob(pattern))
            except (ValueError, NotImplementedError):
                raise ConfigError(
                    f"{_where(config)}{key}: {pattern!r} is not a glob relative to the project"
                ) from None
            if not found:
                raise ConfigError(f"{_where(config)}{key}: {pattern!r} matches no file")


def _check_preload(config: Config) -> None:
    """A `preload` module that is not installed is a typo: it would be skipped unseen."""
    from importlib.util import find_spec

    for name in config.preload or ():
        top = name.partition(".")[0]
        try:
            found = bool(top) and find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError(f"{_where(config)}preload: {name!r} is not an installed module")


# -- parameter sets ----------------------------------------------------------


def _jobs_for(
    config: Config,
    notebook: str,
    overrides: Mapping[str, Any],
    cell: ParametersCell | None,
    defaults: Mapping[str, Parameter] | None = None,
) -> list[Job]:
    entries = [e for e in config.entries if PurePosixPath(notebook).match(e.pattern)]
    if not entries:
        entries = [NotebookEntry(pattern=notebook)]
    jobs = []
    for entry in entries:
        axes = {name: values for name, values in entry.matrix.items() if name not in overrides}
        for combo in itertools.product(*axes.values()):
            varying = dict(zip(axes, combo, strict=True))
            layers: tuple[tuple[Injector, Mapping[str, Any]], ...] = (
                ("config", _applicable(config.parameters, cell)),
                ("config", entry.parameters),
                ("matrix", varying),
                ("-p", _applicable(overrides, cell)),
            )
            parameters = {name: value for _, layer in layers for name, value in layer.items()}
            effective = dict(defaults or {})
            for via, layer in layers:
                effective.update(
                    (name, Parameter(value, "injected", via)) for name, value in layer.items()
                )
            jobs.append(
                Job(
                    id=job_id(notebook, varying),
                    path=notebook,
                    parameters=parameters,
                    kernel=entry.kernel or config.kernel,
                    cell_timeout=entry.cell_timeout or config.cell_timeout,
                    timeout=entry.timeout or config.timeout,
                    deps=(*config.deps, *entry.deps),
                    effective=effective,
                )
            )
    return jobs


def _applicable(parameters: Mapping[str, Any], cell: ParametersCell | None) -> dict[str, Any]:
    """Project-wide parameters go to the notebooks whose parameters cell (perhaps) defines them."""
    if cell is None:
        return {}
    return {name: value for name, value in parameters.items() if cell.takes(name)}


def _check_parameters(config: Config, job: Job, cell: ParametersCell | None) -> str | None:
    """Raise for a parameter the notebook does not define; a message if it has no such cell.

    A project-wide or `-p` parameter only reaches the notebooks that take it
    (`_applicable`): another notebook runs as it is.
    """
    if cell is None:
        return None  # unreadable notebook: the executor reports it as invalid
    if not job.parameters:
        return None
    if not cell.tagged:
        return (
            f"{job.path}: has no cell tagged 'parameters', "
            f"so it cannot take {', '.join(sorted(job.parameters))}"
        )
    unknown = sorted(name for name in job.parameters if not cell.takes(name))
    if unknown:
        raise ConfigError(
            f"{_where(config)}parameters for {job.path}: {unknown[0]!r} is not defined in its "
            f"'parameters' cell (expected one of: {', '.join(sorted(cell.names)) or 'none'})"
        )
    return None


def _doubt_warning(job: Job, cell: ParametersCell | None) -> str | None:
    """Said when a parameter went in although nbci cannot see the cell define it."""
    unseen = sorted(name for name in job.parameters if cell and name not in cell.names)
    if cell is None or cell.doubt is None or not unseen:
        return None
    return (
        f"{job.path}: injected {', '.join(unseen)} although nbci cannot tell whether its "
        f"'parameters' cell defines {'it' if len(unseen) == 1 else 'them'} ({cell.doubt})"
    )


def _check_global_parameters(
    config: Config, overrides: Mapping[str, Any], notebooks: Sequence[str]
) -> None:
    """A project-wide or -p parameter that no selected notebook (perhaps) defines is a typo."""
    cells = [c for n in notebooks if (c := parameters_cell(config.root / n)) is not None]
    if not cells:
        return
    for name in config.parameters:
        if not any(cell.takes(name) for cell in cells):
            raise ConfigError(
                f"{_where(config)}parameters.{name}: no selected notebook's 'parameters' cell "
                "defines it"
            )
    for name in overrides:
        if not any(cell.takes(name) for cell in cells):
            raise UsageError(f"-p {name}: no selected notebook's 'parameters' cell defines it")


# -- what a parameters cell defines -------------------------------------------------

_NAME_MAKING_MAGICS = frozenset({"run", "store", "load", "macro"})
"""Line magics that can define names a reader of the cell cannot see."""
_NAME_MAKING_CALLS = frozenset({"exec", "eval", "globals", "locals", "vars", "setattr"})


def parameters_cell(path: Path) -> ParametersCell | None:
    """What the notebook's cells tagged `parameters` define; None when it cannot be read.

    Like papermill, every tagged cell counts. A cell that is not plain Python
    (`%matplotlib inline`, `!pip ...`) is read the way IPython runs it.
    """
    cells = _code_cells(path)
    if cells is None:
        return None
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    names: set[str] = set()
    doubts: list[str] = []
    for cell in tagged:
        found, doubt = _names_defined(_source(cell))
        names |= found
        doubts += [doubt] if doubt else []
    return ParametersCell(frozenset(names), bool(tagged), "; ".join(doubts) or None)


def parameter_defaults(path: Path) -> dict[str, Parameter]:
    """The values the cells tagged `parameters` give their names, read as `-p` reads them.

    Top-level assignments only, the last one winning, in cell order (as papermill runs
    them); a value that is not a literal (`np.arange(3)`, a name) is kept as its code.
    Empty when the notebook cannot be read or has no such cell.
    """
    defaults: dict[str, Parameter] = {}
    for cell in _code_cells(path) or []:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        parsed = _parse(_source(cell))
        if isinstance(parsed, str):
            continue
        tree, code = parsed
        for statement in tree.body:
            defaults.update(_assigned(statement, code))
    return defaults


def _assigned(statement: ast.stmt, code: str) -> dict[str, Parameter]:
    """`name = value` (`a = b = 1`, `a, b = 1, 2`, `n: int = 3` too) as defaults."""
    targets: list[ast.expr]
    if isinstance(statement, ast.AnnAssign) and statement.value is not None:
        targets, value = [statement.target], statement.value
    elif isinstance(statement, ast.Assign):
        targets, value = statement.targets, statement.value
    else:
        return {}
    found: dict[str, Parameter] = {}
    for target in targets:
        if isinstance(target, ast.Name):
            found[target.id] = _default(value, code)
        elif _unpacked(target, value):
            assert isinstance(target, ast.Tuple | ast.List)
            assert isinstance(value, ast.Tuple | ast.List)
            for name, item in zip(target.elts, value.elts, strict=True):
                if isinstance(name, ast.Name):
                    found[name.id] = _default(item, code)
    return found


def _unpacked(target: ast.expr, value: ast.expr) -> bool:
    """`a, b = 1, 2`: as many names as values."""
    sequences = ast.Tuple | ast.List
    return (
        isinstance(target, sequences)
        and isinstance(value, sequences)
        and len(target.elts) == len(value.elts)
    )


def _default(node: ast.expr, code: str) -> Parameter:
    """A literal that JSON can hold as its value; anything else as its code."""
    try:
        value = ast.literal_eval(node)
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        text = ast.get_source_segment(code, node) or ast.unparse(node)
        return Parameter(" ".join(text.split()), "default", expression=True)
    return Parameter(_as_json(value), "default")


def _as_json(value: Any) -> Any:
    """Tuples as lists: what the value becomes in results.json, so that runs compare."""
    return json.loads(json.dumps(value))


def _parse(source: str) -> tuple[ast.Module, str] | str:
    """The cell's tree and the code it was parsed from (magics as IPython runs them), or
    why it cannot be parsed."""
    try:
        return parse_source(source), source
    except SyntaxError:
        code = _as_ipython_runs_it(source)
        try:
            return parse_source(code), code
        except SyntaxError as error:
            return f"line {error.lineno}: {error.msg}"


def _names_defined(source: str) -> tuple[set[str], str | None]:
    """Names the code assigns or imports, and why there may be more (None: there are not)."""
    parsed = _parse(source)
    if isinstance(parsed, str):
        return set(), parsed
    tree, _ = parsed
    names: set[str] = set()
    doubt = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    doubt = "it has a star import"
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Call) and (why := _name_making_call(node)):
            doubt = why
    return names, doubt


def _as_ipython_runs_it(source: str) -> str:
    """Magics and shell escapes as the `get_ipython()` calls IPython turns them into."""
    from IPython.core.inputtransformer2 import TransformerManager

    return str(TransformerManager().transform_cell(source))


def _name_making_call(call: ast.Call) -> str | None:
    """Why a call may define names: `exec(...)`, `%run`, a cell magic; else None."""
    function = call.func
    if isinstance(function, ast.Name) and function.id in _NAME_MAKING_CALLS:
        return f"it calls {function.id}()"
    if not (isinstance(function, ast.Attribute) and call.args):
        return None
    first = call.args[0]
    magic = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
    if function.attr == "run_cell_magic":
        return f"it is a %%{magic} cell"
    if function.attr == "run_line_magic" and magic.lstrip("%") in _NAME_MAKING_MAGICS:
        return f"it runs %{magic}"
    return None


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
    return Job(id=job_id(shown, {}), path=shown)


# -- ids ---------------------------------------------------------------------


def _check_unique_ids(jobs: Sequence[Job]) -> None:
    """Two jobs whose paths or values only differ in characters an id cannot hold."""
    seen: dict[str, Job] = {}
    for job in jobs:
        other = seen.setdefault(job.id, job)
        if other is not job and other.path == job.path:
            raise ConfigError(
                f"{job.path}: two [[notebook]] entries give it the job id {job.id!r}; "
                "tell them apart with different matrix values"
            )
        if other is not job:
            raise ConfigError(
                f"{other.path} and {job.path} would both have the job id {job.id!r}: "
                "rename one (ids keep only letters, digits, '.', '_' and '-')"
            )
