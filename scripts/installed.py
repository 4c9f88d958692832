"""Exit 0 when `pip install -e '.[test]'` would change nothing, else say why and exit 1.

scripts/test.sh asks this first: a pip install that has nothing to do still builds the
editable wheel in a fresh build environment (10 to 20 s). Up to date means: nbci is
installed editable from this checkout, with the version, requirements and entry points
that pyproject.toml declares now, and every requirement of nbci and its `test` extra,
and of theirs in turn, is installed in a version that satisfies it. Anything it cannot
tell (no `packaging` yet, an unreadable file) counts as not up to date.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("test",)
"""The extras scripts/test.sh installs."""


def main() -> int:
    try:
        reason = why_not_up_to_date()
    except Exception as error:  # anything unexpected: let pip decide
        reason = f"cannot tell ({type(error).__name__}: {error})"
    if reason is None:
        return 0
    print(f"scripts/test.sh: installing nbci: {reason}", file=sys.stderr)
    return 1


def why_not_up_to_date() -> str | None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    try:
        dist = metadata.distribution(project["name"])
    except metadata.PackageNotFoundError:
        return "it is not installed"
    from packaging.requirements import Requirement  # installed with pytest, like nbci

    source = json.loads(dist.read_text("direct_url.json") or "{}")
    if not source.get("dir_info", {}).get("editable"):
        return "it is not installed editable"
    if source.get("url") != ROOT.as_uri():
        return f"it is installed from {source.get('url')}, not from {ROOT.as_uri()}"
    if dist.version != _version():
        return f"version {dist.version} installed, {_version()} declared"
    if {Requirement(r) for r in dist.requires or []} != _declared(project):
        return "pyproject.toml declares other requirements than were installed"
    if {(e.group, e.name, e.value) for e in dist.entry_points} != _entry_points(project):
        return "pyproject.toml declares other entry points than were installed"
    return _unsatisfied(dist, set(EXTRAS))


def _version() -> str:
    """`__version__` of nbci/__init__.py, where pyproject.toml takes the version from."""
    text = (ROOT / "nbci" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    return found.group(1) if found else ""


def _declared(project: dict[str, Any]) -> set[Any]:
    """pyproject.toml's requirements, as the installed metadata writes them."""
    from packaging.requirements import Requirement

    wanted = {Requirement(r) for r in project.get("dependencies", [])}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        for text in requirements:
            requirement = Requirement(text)
            marker = f"({requirement.marker}) and " if requirement.marker else ""
            requirement.marker = None
            wanted.add(Requirement(f'{requirement}; {marker}extra == "{extra}"'))
    return wanted


def _entry_points(project: dict[str, Any]) -> set[tuple[str, str, str]]:
    groups = dict(project.get("entry-points", {}))
    groups["console_scripts"] = project.get("scripts", {})
    groups["gui_scripts"] = project.get("gui-scripts", {})
    return {
        (group, name, value) for group, names in groups.items() for name, value in names.items()
    }


def _unsatisfied(root: metadata.Distribution, extras: set[str]) -> str | None:
    """The first requirement of `root` (with `extras`), or of what it needs in turn, that
    the installed distributions do not satisfy."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [(root, extra) for extra in {"", *extras}]
    seen: set[tuple[str, str]] = set()
    while todo:
        dist, extra = todo.pop()
        name, _, requires = _headers(dist)
        if (canonicalize_name(name), extra) in seen:
            continue
        seen.add((canonicalize_name(name), extra))
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
                continue
            try:
                needed = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                return f"{requirement} is not installed"
            _, version, _ = _headers(needed)
            if not requirement.specifier.contains(version, prereleases=True):
                return f"{requirement} is wanted, {version} is installed"
            todo += [(needed, e) for e in {"", *requirement.extras}]
    return None


def _headers(dist: metadata.Distribution) -> tuple[str, str, list[str]]:
    """Name, version and requirements of an installed distribution, read from the headers
    of its METADATA only: `dist.metadata` parses the long description too, ten times slower."""
    text = dist.read_text("METADATA")
    if text is None:  # an egg-info: importlib.metadata knows where it keeps what
        return dist.metadata["Name"], dist.version, dist.requires or []
    fields: dict[str, list[str]] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value.strip())
    return fields["Name"][0], fields["Version"][0], fields.get("Requires-Dist", [])


if __name__ == "__main__":
    sys.exit(main())
