"""What is installed: one scan of the distributions on `sys.path`, read by the cache's
environment fingerprint (every one) and by a run's recorded environment (a few versions)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterable, Mapping

_SEPARATORS = re.compile(r"[-_.]+")


def installed_distributions() -> list[tuple[str, str | None]]:
    """Every distribution on `sys.path` (where importlib.metadata finds them) as
    `(normalized name, version)`, in the order importlib.metadata finds them; the version
    is None when its metadata cannot be read.

    Read from the name of its metadata folder when that has both (a wheel's
    `{name}-{version}.dist-info`), else from its metadata: parsing every
    distribution's metadata took 0.12 s of a run whose notebooks all came
    from the cache, and asking importlib.metadata for a dozen versions 0.065 s.
    """
    found = []
    for entry in sys.path:
        with contextlib.suppress(OSError), os.scandir(entry or ".") as folders:
            for folder in folders:
                stem, _, kind = folder.name.rpartition(".")
                if kind not in ("dist-info", "egg-info"):
                    continue
                name, _, version = stem.partition("-")
                version = version.partition("-")[0]  # an egg's `-py3.11` tag is no version
                found.append(
                    (normalized(name), version)
                    if version
                    else _read_name_version(folder.path, stem)
                )
    return found


def versions(names: Iterable[str]) -> Mapping[str, str]:
    """The installed version of each of `names` that is installed, as
    `importlib.metadata.version` gives it (the first distribution on `sys.path`)."""
    first: dict[str, str | None] = {}
    for name, version in installed_distributions():
        first.setdefault(name, version)
    return {name: v for name in names if (v := first.get(normalized(name))) is not None}


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares them (`Foo_Bar.baz` is `foo-bar-baz`)."""
    return _SEPARATORS.sub("-", name).lower()


def _read_name_version(path: str, stem: str) -> tuple[str, str | None]:
    """`(name, version)` from a distribution's metadata (`(stem, None)` when it cannot be read)."""
    from importlib import metadata

    try:
        fields = metadata.Distribution.at(path).metadata
        name, version = fields["Name"] or stem, fields["Version"]
    except Exception:  # unreadable or malformed metadata: it still counts, by its name
        name, version = stem, None
    return normalized(name), version
