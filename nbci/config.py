"""Configuration: `[tool.nbci]` in pyproject.toml or an `nbci.toml`, validated.

Every mistake is one `ConfigError` line naming the file, the key and what was
expected. Unknown keys get a "did you mean". The keys and their types are the
JSON Schema `nbci/schemas/config.schema.json`. Paths are relative to the folder
that holds the config file (the project root).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from nbci.errors import ConfigError
from nbci.schemas import CONFIG_SCHEMA, Where, first_problem, shown

if TYPE_CHECKING:
    from nbci.gates import GateRule

CONFIG_FILE = "nbci.toml"
PYPROJECT = "pyproject.toml"
DEFAULT_NOTEBOOKS = ("notebooks/**/*.ipynb",)
DEFAULT_OUT = "nbci-out"
DEFAULT_CACHE = ".nbci-cache"


@dataclass(frozen=True)
class NotebookEntry:
    """A `[[tool.nbci.notebook]]` table: settings for the notebooks a path or glob matches."""

    pattern: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    matrix: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    kernel: str | None = None
    timeout: float | None = None
    cell_timeout: float | None = None
    headline: tuple[str, ...] | None = None
    """Metric-name globs that lead this entry's notebooks' tables (None: the project's)."""


@dataclass(frozen=True)
class Config:
    root: Path
    source: str | None = None
    """Where the configuration came from, as messages name it (None: defaults)."""
    notebooks: tuple[str, ...] = DEFAULT_NOTEBOOKS
    exclude: tuple[str, ...] = ()
    entries: tuple[NotebookEntry, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    kernel: str | None = None
    cell_timeout: float = 600.0
    timeout: float = 3600.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    out: Path = Path(DEFAULT_OUT)
    cache_dir: Path = Path(DEFAULT_CACHE)
    cache_max_mb: float = 2048.0
    cache_max_age_days: float = 30.0
    templates: Path | None = None
    name: str = "nbci"
    assets_branch: str = "nbci-assets"
    publish_notebooks: bool = True
    """`nbci publish` commits the executed notebooks to the assets branch too."""
    token_env: str | None = None
    """The variable with `nbci publish`'s token (None: GITHUB_TOKEN / GITLAB_TOKEN); kernels
    never get it, nor the forges' own token variables."""
    higher_is_better: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    headline: tuple[str, ...] | None = None
    """Metric-name globs that lead the tables, sweep tables and trend charts (`nbci.headline`);
    None: each notebook's glued scalars lead."""
    gates: tuple[GateRule, ...] = ()
    history: int = 20
    """How many default-branch commits `nbci publish` reads stored runs of, for each
    metric's range (`nbci.history`); 0 turns history off."""
    keep_runs: int = 200
    """Stored runs each report keeps on the assets branch (never fewer than `history`);
    0: every one (`nbci.publish.index`)."""
    keep_pr_days: float = 30.0
    """Days a pull request's folder on the assets branch outlives its last publish; 0: forever."""
    preload: tuple[str, ...] | None = ()
    """Modules Python kernels get pre-imported besides the notebooks' own imports
    (`preload = [...]`); None (`preload = false`): every kernel starts from scratch."""


def find_config_file(start: Path) -> tuple[Path, str] | None:
    """The nearest `nbci.toml`, or `pyproject.toml` with `[tool.nbci]`, from `start` upwards.

    Returns the file and how messages name its table. Stops at the first folder
    that has either file or a `.git`. Both files configuring nbci is an error.
    """
    for folder in (start, *start.parents):
        own = folder / CONFIG_FILE
        pyproject = folder / PYPROJECT
        in_pyproject = pyproject.is_file() and "nbci" in _load(pyproject).get("tool", {})
        if own.is_file() and in_pyproject:
            raise ConfigError(
                f"{own}: nbci is configured both here and in {pyproject} [tool.nbci]; keep one"
            )
        if own.is_file():
            return own, ""
        if in_pyproject:
            return pyproject, "[tool.nbci] "
        if pyproject.is_file() or (folder / ".git").exists():
            return None
    return None


def load_config(start: Path | None = None, *, config_file: Path | None = None) -> Config:
    """Find and validate the configuration for the project at (or above) `start`."""
    start = (start or Path.cwd()).resolve()
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"{config_file}: no such configuration file")
        config_file = config_file.resolve()
        table_name = "[tool.nbci] " if config_file.name == PYPROJECT else ""
        found: tuple[Path, str] | None = (config_file, table_name)
    else:
        found = find_config_file(start)
    if found is None:
        return Config(root=start)
    path, table_name = found
    data = _load(path)
    in_pyproject = bool(table_name)
    table = data.get("tool", {}).get("nbci", {}) if in_pyproject else data
    return parse_config(table, root=path.parent, file=path.name, in_pyproject=in_pyproject)


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def parse_config(table: Any, *, root: Path, file: str, in_pyproject: bool = False) -> Config:
    """Validate a config table (the contents of `[tool.nbci]` or of nbci.toml).

    The shape is `nbci/schemas/config.schema.json`; a new key is a property
    there, a field of `Config` and a line here. What follows the schema are the
    checks it cannot make: finite numbers, safe names, folders kept apart.
    """
    source = f"{file}: [tool.nbci]" if in_pyproject else f"{file}:"
    tool = table.get("tool") if isinstance(table, dict) else None
    if not in_pyproject and isinstance(tool, dict) and "nbci" in tool:
        raise ConfigError(
            f"{source} [tool.nbci]: in {file} the keys go at the top level, without "
            "[tool.nbci] (that table is for pyproject.toml)"
        )
    problem = first_problem(table, CONFIG_SCHEMA)
    if problem is not None:
        key = _key(problem.where)
        raise ConfigError(f"{source}{' ' + key if key else ''}: {problem.message}")
    check = _Checker(source)
    defaults = Config(root=root)
    out = Path(table.get("out", DEFAULT_OUT))
    cache_dir = Path(table.get("cache_dir", DEFAULT_CACHE))
    check.folder_apart(root, cache_dir, out)
    return Config(
        root=root,
        source=source,
        notebooks=_strings(table.get("notebooks", DEFAULT_NOTEBOOKS)),
        exclude=_strings(table.get("exclude", ())),
        entries=tuple(
            _parse_entry(check, entry, f"notebook[{i}]")
            for i, entry in enumerate(table.get("notebook", []))
        ),
        parameters=table.get("parameters", {}),
        deps=_strings(table.get("deps", ())),
        kernel=table.get("kernel"),
        cell_timeout=check.finite(table, "cell_timeout", defaults.cell_timeout, "seconds"),
        timeout=check.finite(table, "timeout", defaults.timeout, "seconds"),
        jobs=int(table.get("jobs", defaults.jobs)),
        out=out,
        cache_dir=cache_dir,
        cache_max_mb=check.finite(table, "cache_max_mb", defaults.cache_max_mb, "megabytes"),
        cache_max_age_days=check.finite(
            table, "cache_max_age_days", defaults.cache_max_age_days, "days"
        ),
        templates=_optional_path(table.get("templates")),
        name=check.identifier(table.get("name", defaults.name), "name"),
        assets_branch=check.identifier(
            table.get("assets_branch", defaults.assets_branch), "assets_branch"
        ),
        publish_notebooks=table.get("publish_notebooks", defaults.publish_notebooks),
        token_env=table.get("token_env"),
        higher_is_better=_strings(table.get("higher_is_better", ())),
        lower_is_better=_strings(table.get("lower_is_better", ())),
        headline=_optional_strings(table.get("headline")),
        gates=_parse_gates(
            table.get("gates", {}), file, "[tool.nbci.gates]" if in_pyproject else "[gates]"
        ),
        history=int(table.get("history", defaults.history)),
        keep_runs=int(table.get("keep_runs", defaults.keep_runs)),
        keep_pr_days=check.finite(table, "keep_pr_days", defaults.keep_pr_days, "days"),
        preload=_preload(table.get("preload", True)),
    )


def _key(where: Where) -> str:
    """`notebook[0].matrix.lr`: [[notebook]] tables by number, a value in a list by the list."""
    key = ""
    for part in where:
        if isinstance(part, int):
            key += f"[{part}]" if key == "notebook" else ""
        else:
            key += f".{part}" if key else part
    return key


def _strings(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A list of strings, where one string alone is allowed for a list of one."""
    return (value,) if isinstance(value, str) else tuple(value)


def _optional_strings(value: str | list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _strings(value)


def _parse_gates(table: Mapping[str, Any], file: str, table_name: str) -> tuple[GateRule, ...]:
    if not table:
        return ()
    from nbci.gates import parse_gates

    return parse_gates(table, file, table_name=table_name)


def _parse_entry(check: _Checker, entry: dict[str, Any], where: str) -> NotebookEntry:
    return NotebookEntry(
        pattern=entry["path"],
        parameters=entry.get("parameters", {}),
        matrix={name: tuple(values) for name, values in entry.get("matrix", {}).items()},
        deps=_strings(entry.get("deps", ())),
        kernel=entry.get("kernel"),
        timeout=check.finite(entry, "timeout", None, "seconds", where=where),
        cell_timeout=check.finite(entry, "cell_timeout", None, "seconds", where=where),
        headline=_optional_strings(entry.get("headline")),
    )


def _preload(value: bool | list[str]) -> tuple[str, ...] | None:
    """`preload = false` turns pre-importing off; a list names more modules to pre-import."""
    if value is False:
        return None
    return () if value is True else tuple(value)


def _optional_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


class _Checker:
    """What the schema cannot check, as one ConfigError line: `source key: expected X, got Y`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.source} {key}: expected {expected}, got {shown(value)}")

    @overload
    def finite(
        self, table: Mapping[str, Any], key: str, default: float, unit: str, *, where: str = ""
    ) -> float: ...

    @overload
    def finite(
        self, table: Mapping[str, Any], key: str, default: None, unit: str, *, where: str = ""
    ) -> float | None: ...

    def finite(
        self,
        table: Mapping[str, Any],
        key: str,
        default: float | None,
        unit: str,
        *,
        where: str = "",
    ) -> float | None:
        """A positive number the schema let through, unless TOML's `nan` or `inf`."""
        value = table.get(key, default)
        if value is None:
            return None
        name = f"{where}.{key}" if where else key
        if math.isnan(value):
            raise self.error(name, f"a positive number of {unit}", value)
        if math.isinf(value):
            raise self.error(name, f"a finite number of {unit}", value)
        return float(value)

    def folder_apart(self, root: Path, cache_dir: Path, out: Path) -> None:
        """The cache prunes and the output directory is replaced: neither may hold the other,
        nor the project."""
        cache, out, root = (root / cache_dir).resolve(), (root / out).resolve(), root.resolve()
        if cache == root or cache in root.parents:
            raise self.error(
                "cache_dir", "a folder of its own, not one holding the project", str(cache_dir)
            )
        if cache == out or cache in out.parents or out in cache.parents:
            raise self.error(
                "cache_dir", "a folder apart from the output directory", str(cache_dir)
            )

    def identifier(self, text: str, key: str) -> str:
        """Letters are any script's (the schema's ASCII-only `\\w` would say otherwise)."""
        if not all(c.isalnum() or c in "-_./" for c in text) or ".." in text:
            raise self.error(key, "letters, digits and - _ . / only", text)
        return text
