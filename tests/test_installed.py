"""scripts/installed.py: scripts/test.sh skips its pip install only when that install would
change nothing, against installed distributions made up in a temporary site folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[project]
name = "nbci"
dynamic = ["version"]
dependencies = ["alpha>=1", "beta[x]>=2"]

[project.optional-dependencies]
test = ["nbci[examples]", "delta==3"]
examples = ["epsilon"]

[project.scripts]
nbci = "nbci.cli:main"
"""
INSTALLED = {  # distribution → (version, Requires-Dist)
    "alpha": ("1.5", []),
    "beta": ("2.0", ['gamma>=1; extra == "x"', 'omega; extra == "unused"']),
    "gamma": ("1.0", []),
    "delta": ("3", []),
    "epsilon": ("0.1", ["alpha"]),
}
NBCI_REQUIRES = [
    "alpha>=1",
    "beta[x]>=2",
    'nbci[examples]; extra == "test"',
    'delta==3; extra == "test"',
    'epsilon; extra == "examples"',
]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("installed", ROOT / "scripts" / "installed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dist_info(site: Path, name: str, version: str, requires: list[str]) -> Path:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n\nA long description.\nName: no\n")
    return info


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path, Path]:
    """(scripts/installed.py looking at a made-up checkout, the checkout, nbci's dist-info)
    with everything installed as the checkout's pyproject.toml says."""
    root, site = tmp_path / "checkout", tmp_path / "site"
    (root / "nbci").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "nbci" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    for name, (version, requires) in INSTALLED.items():
        dist_info(site, name, version, requires)
    nbci = dist_info(site, "nbci", "0.1.0", NBCI_REQUIRES)
    (nbci / "direct_url.json").write_text(
        json.dumps({"dir_info": {"editable": True}, "url": root.as_uri()})
    )
    (nbci / "entry_points.txt").write_text("[console_scripts]\nnbci = nbci.cli:main\n")
    monkeypatch.syspath_prepend(str(site))
    installed = load()
    monkeypatch.setattr(installed, "ROOT", root)
    return installed, root, nbci


def test_an_install_as_declared_is_up_to_date(checkout: tuple[ModuleType, Path, Path]) -> None:
    installed, _, _ = checkout
    reason: str | None = installed.why_not_up_to_date()
    assert reason is None


def test_installed_from_another_checkout(checkout: tuple[ModuleType, Path, Path]) -> None:
    installed, _, nbci = checkout
    url = {"dir_info": {"editable": True}, "url": "file:///elsewhere"}
    (nbci / "direct_url.json").write_text(json.dumps(url))
    assert "installed from file:///elsewhere" in installed.why_not_up_to_date()
    (nbci / "direct_url.json").write_text(json.dumps({"url": "file:///x", "archive_info": {}}))
    assert "not installed editable" in installed.why_not_up_to_date()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t.replace('"delta==3"', '"delta==3", "zeta"'), "other requirements"),
        (lambda t: t.replace("alpha>=1", "alpha>=1.2"), "other requirements"),
        (lambda t: t.replace('main"', 'main"\nnbci-x = "nbci.x:main"'), "other entry points"),
    ],
    ids=["a new test requirement", "a raised bound", "a new command"],
)
def test_a_changed_pyproject_is_installed_again(
    checkout: tuple[ModuleType, Path, Path], change: object, says: str
) -> None:
    installed, root, _ = checkout
    pyproject = root / "pyproject.toml"
    pyproject.write_text(change(pyproject.read_text()))  # type: ignore[operator]
    assert says in installed.why_not_up_to_date()


def test_a_new_version_is_installed_again(checkout: tuple[ModuleType, Path, Path]) -> None:
    installed, root, _ = checkout
    (root / "nbci" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    assert "version 0.1.0 installed, 0.2.0 declared" in installed.why_not_up_to_date()


@pytest.mark.parametrize(
    ("name", "version", "says"),
    [
        ("delta", "2", 'delta==3; extra == "test" is wanted, 2 is installed'),  # the test extra
        ("gamma", "0.5", 'gamma>=1; extra == "x" is wanted, 0.5 is installed'),  # beta[x]'s
        ("alpha", "0.9", "alpha>=1 is wanted, 0.9 is installed"),  # epsilon takes any
        ("epsilon", None, 'epsilon; extra == "examples" is not installed'),  # via nbci[examples]
    ],
)
def test_an_unsatisfied_requirement_is_installed(
    checkout: tuple[ModuleType, Path, Path], name: str, version: str | None, says: str
) -> None:
    installed, _, nbci = checkout
    site = nbci.parent
    (info,) = site.glob(f"{name}-*.dist-info")
    for path in info.iterdir():
        path.unlink()
    info.rmdir()
    if version is not None:
        dist_info(site, name, version, INSTALLED[name][1])
    assert installed.why_not_up_to_date() == says


def test_whatever_it_cannot_read_means_install(
    checkout: tuple[ModuleType, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    installed, root, _ = checkout
    (root / "pyproject.toml").write_text("[project\n")
    assert installed.main() == 1
    assert "installing nbci: cannot tell (TOMLDecodeError" in capsys.readouterr().err
