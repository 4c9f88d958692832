"""Configuration: `[tool.nbci]` in pyproject.toml or an `nbci.toml`, validated.

Every mistake is one `ConfigError` line naming the file, the key and what was
expected. Unknown keys get a "did you mean". Paths are relative to the folder
that holds the config file (the project root).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbci.errors import ConfigError

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
    higher_is_better: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    gates: tuple[GateRule, ...] = ()
    preload: tuple[str, ...] | None = ()
    """Modules Python kernels get pre-imported besides the notebooks' own imports
    (`preload = [...]`); None (`preload = false`): every kernel starts from scratch."""


# Key → (checker, what a user is told is expected).
_TOP_KEYS = {
    "notebooks",
    "exclude",
    "notebook",
    "parameters",
    "deps",
    "kernel",
    "cell_timeout",
    "timeout",
    "jobs",
    "out",
    "cache_dir",
    "cache_max_mb",
    "cache_max_age_days",
    "templates",
    "name",
    "assets_branch",
    "higher_is_better",
    "lower_is_better",
    "gates",
    "preload",
}
_ENTRY_KEYS = {"path", "parameters", "matrix", "deps", "kernel", "timeout", "cell_timeout"}


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
    """Validate a config table (the contents of `[tool.nbci]` or of nbci.toml)."""
    source = f"{file}: [tool.nbci]" if in_pyproject else f"{file}:"
    check = _Checker(source)
    table = check.table(table, "")
    check.known_keys(table, _TOP_KEYS, "")
    defaults = Config(root=root)
    gates_table = check.table(table.get("gates", {}), "gates")
    out = Path(check.string(table.get("out", DEFAULT_OUT), "out"))
    cache_dir = Path(check.string(table.get("cache_dir", DEFAULT_CACHE), "cache_dir"))
    check.folder_apart(root, cache_dir, out)
    return Config(
        root=root,
        source=source,
        notebooks=check.strings(table.get("notebooks", list(DEFAULT_NOTEBOOKS)), "notebooks"),
        exclude=check.strings(table.get("exclude", []), "exclude"),
        entries=tuple(
            _parse_entry(check, entry, f"notebook[{i}]")
            for i, entry in enumerate(check.list(table.get("notebook", []), "notebook"))
        ),
        parameters=check.parameters(table.get("parameters", {}), "parameters"),
        deps=check.strings(table.get("deps", []), "deps"),
        kernel=check.optional_string(table.get("kernel"), "kernel"),
        cell_timeout=check.seconds(
            table.get("cell_timeout", defaults.cell_timeout), "cell_timeout"
        ),
        timeout=check.seconds(table.get("timeout", defaults.timeout), "timeout"),
        jobs=check.count(table.get("jobs", defaults.jobs), "jobs"),
        out=out,
        cache_dir=cache_dir,
        cache_max_mb=check.positive(
            table.get("cache_max_mb", defaults.cache_max_mb), "cache_max_mb", "megabytes"
        ),
        cache_max_age_days=check.positive(
            table.get("cache_max_age_days", defaults.cache_max_age_days),
            "cache_max_age_days",
            "days",
        ),
        templates=_optional_path(check.optional_string(table.get("templates"), "templates")),
        name=check.identifier(table.get("name", defaults.name), "name"),
        assets_branch=check.identifier(
            table.get("assets_branch", defaults.assets_branch), "assets_branch"
        ),
        higher_is_better=check.strings(table.get("higher_is_better", []), "higher_is_better"),
        lower_is_better=check.strings(table.get("lower_is_better", []), "lower_is_better"),
        gates=_parse_gates(gates_table, file, "[tool.nbci.gates]" if in_pyproject else "[gates]"),
        preload=_parse_preload(check, table.get("preload", True)),
    )


def _parse_gates(table: Mapping[str, Any], file: str, table_name: str) -> tuple[GateRule, ...]:
    if not table:
        return ()
    from nbci.gates import parse_gates

    return parse_gates(table, file, table_name=table_name)


def _parse_preload(check: _Checker, value: Any) -> tuple[str, ...] | None:
    """`preload = false` turns pre-importing off; a list names more modules to pre-import."""
    if value is False:
        return None
    if value is True:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(name, str) and all(part.isidentifier() for part in name.split("."))
        for name in value
    ):
        raise check.error("preload", "true, false or a list of module names", value)
    return tuple(value)


def _parse_entry(check: _Checker, raw: Any, where: str) -> NotebookEntry:
    entry = check.table(raw, where)
    check.known_keys(entry, _ENTRY_KEYS, where)
    if "path" not in entry:
        raise check.error(f"{where}.path", "a notebook path or glob", "nothing")
    matrix = check.table(entry.get("matrix", {}), f"{where}.matrix")
    for name, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise check.error(f"{where}.matrix.{name}", "a non-empty list of values", values)
        check.parameter_value(values, f"{where}.matrix.{name}")
    return NotebookEntry(
        pattern=check.string(entry["path"], f"{where}.path"),
        parameters=check.parameters(entry.get("parameters", {}), f"{where}.parameters"),
        matrix={name: tuple(values) for name, values in matrix.items()},
        deps=check.strings(entry.get("deps", []), f"{where}.deps"),
        kernel=check.optional_string(entry.get("kernel"), f"{where}.kernel"),
        timeout=_optional_seconds(check, entry.get("timeout"), f"{where}.timeout"),
        cell_timeout=_optional_seconds(check, entry.get("cell_timeout"), f"{where}.cell_timeout"),
    )


def _optional_seconds(check: _Checker, value: Any, where: str) -> float | None:
    return None if value is None else check.seconds(value, where)


def _optional_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


class _Checker:
    """Type checks that raise one ConfigError line: `source key: expected X, got Y`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, expected: str, value: Any) -> ConfigError:
        shown = value if isinstance(value, str) and value == "nothing" else repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        where = f" {key}" if key else ""
        return ConfigError(f"{self.source}{where}: expected {expected}, got {shown}")

    def known_keys(self, table: Mapping[str, Any], known: set[str], where: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                prefix = f"{where}." if where else ""
                raise ConfigError(f"{self.source} {prefix}{key}: unknown key{hint}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, "a table", value)
        return value

    def parameters(self, value: Any, key: str) -> dict[str, Any]:
        table = self.table(value, key)
        for name, item in table.items():
            self.parameter_value(item, f"{key}.{name}")
        return table

    def parameter_value(self, value: Any, key: str) -> None:
        """Parameters travel as JSON (ids, results.json): TOML dates and times do not."""
        if isinstance(value, dict):
            for name, item in value.items():
                self.parameter_value(item, f"{key}.{name}")
        elif isinstance(value, list):
            for item in value:
                self.parameter_value(item, key)
        elif not isinstance(value, str | int | float | bool):
            raise self.error(
                key, "text, numbers, booleans, lists or tables (quote dates and times)", value
            )

    def list(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(key, "a list", value)
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, "a non-empty string", value)
        return value

    def optional_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "a list of strings", value)
        return tuple(value)

    def positive(self, value: Any, key: str, unit: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.error(key, f"a positive number of {unit}", value)
        if value == float("inf"):
            raise self.error(key, f"a finite number of {unit}", value)
        return float(value)

    def seconds(self, value: Any, key: str) -> float:
        return self.positive(value, key, "seconds")

    def count(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(key, "a whole number ≥ 1", value)
        return value

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

    def identifier(self, value: Any, key: str) -> str:
        text = self.string(value, key)
        if not all(c.isalnum() or c in "-_./" for c in text) or ".." in text:
            raise self.error(key, "letters, digits and - _ . / only", value)
        return text
