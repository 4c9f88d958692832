"""pyproject.toml declares what nbci needs: every library the package imports itself, and a
build backend that understands the metadata."""

from __future__ import annotations

import fnmatch
import re
import sys
import tomllib
from pathlib import Path

from source_imports import ROOT, imports

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DISTRIBUTION = {  # import name → the distribution that provides it, where they differ
    "PIL": "pillow",
    "github": "pygithub",
    "gitlab": "python-gitlab",
    "jinja2": "jinja2",
    "yaml": "pyyaml",
}
OPTIONAL = {"pandas", "numpy", "torch", "tensorflow", "jax", "polars", "pyarrow", "plotly"}
"""Imported only when a notebook's value is one of theirs (nbci.glue), never installed by nbci."""


def declared() -> set[str]:
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in PROJECT["project"]["dependencies"]}
    return {name.lower().replace("_", "-") for name in names}


def imported() -> dict[str, str]:
    """Top-level third-party module → a file of nbci that imports it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "nbci").rglob("*.py")):
        for name in sorted(imports(path)):
            top = name.split(".")[0]
            if top and top not in sys.stdlib_module_names and top != "nbci":
                found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_library_nbci_imports_is_declared() -> None:
    wanted = declared()
    missing = {
        module: where
        for module, where in imported().items()
        if module not in OPTIONAL
        and DISTRIBUTION.get(module, module).lower().replace("_", "-") not in wanted
    }
    assert missing == {}, f"imported by nbci but not in pyproject's dependencies: {missing}"


def test_the_build_backend_reads_an_spdx_license() -> None:
    """`license = "MIT"` (PEP 639) needs setuptools 77 or later; 76 fails the build."""
    assert isinstance(PROJECT["project"]["license"], str)
    (setuptools,) = [r for r in PROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert floor is not None and int(floor[1]) >= 77, setuptools


def test_every_package_of_nbci_is_in_the_wheel() -> None:
    """Package discovery (`find_packages`, as pyproject configures it) takes a folder only if it
    holds an `__init__.py` and its name matches `include`: a new sub-package that misses either
    (say `nbci/publish/github/`) is left out of the wheel, and the installed nbci fails."""
    include = PROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = {path.parent for path in (ROOT / "nbci").rglob("*.py")}

    def name(folder: Path) -> str:
        return ".".join(folder.relative_to(ROOT).parts)

    assert {f"nbci.publish.{forge}" for forge in ("github", "gitlab", "bitbucket")} <= set(
        map(name, folders)
    )
    left_out = {
        name(folder)
        for folder in folders
        if not (folder / "__init__.py").is_file()
        or not any(fnmatch.fnmatchcase(name(folder), pattern) for pattern in include)
    }
    assert left_out == set(), "folders of nbci's modules that the wheel leaves out"
