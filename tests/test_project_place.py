"""The template's test for a module of the project (`fork_server._project_place`), with each
folder resolved once (issue 21): links into the project are still followed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from nbci.execute import fork_server


def state(project: Path) -> fork_server._State:
    return fork_server._State(initial_path=[], environment={}, project=project, folders=[])


def test_a_module_linked_into_the_project_is_the_projects(tmp_path: Path) -> None:
    project, site = tmp_path / "project", tmp_path / "site"
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "src" / "own.py").write_text("")
    site.mkdir()
    (site / "own.py").symlink_to(project / "src" / "own.py")  # a linked file
    (site / "pkg").symlink_to(project / "src" / "pkg")  # a linked package folder
    (site / "src").symlink_to(project / "src")  # a module in a linked folder
    (site / "installed.py").write_text("")
    fork_server._real_folder.cache_clear()

    def place(file: str | None, path: list[str] | None = None) -> str | None:
        module = SimpleNamespace(__name__="m", __file__=file, __path__=path or [])
        return fork_server._project_place(module, state(project))

    assert place(str(site / "own.py")) == str(site / "own.py")
    assert place(None, [str(site / "pkg")]) == str(site / "pkg")
    assert place(str(site / "src" / "own.py")) == str(site / "src" / "own.py")
    assert place(str(site / "pkg" / "__init__.py")) == str(site / "pkg" / "__init__.py")
    assert place(str(site / "installed.py")) is None
    assert place(str(project / "src" / "own.py")) is not None


def test_each_folder_is_resolved_once(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "b.py").write_text("")
    fork_server._real_folder.cache_clear()

    for name in ("a.py", "b.py"):
        assert fork_server._resolved(str(tmp_path / name)) == (tmp_path / name).resolve()

    assert fork_server._real_folder.cache_info().currsize == 1
