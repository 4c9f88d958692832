"""The run cache: what the key covers, restore round trips, damaged entries, pruning.

No kernels: an "executed" job is a notebook, its HTML and a PNG written by hand,
which is all the cache sees of a real run.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nbci import cache
from nbci.cache import (
    CHARTS,
    CacheSettings,
    cache_key,
    environment_fingerprint,
    prune,
    restore,
    store,
)
from nbci.model import Figure, Job, NotebookResult

ENV = "env-fingerprint"


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_notebook(path: Path, *cells: NotebookNode, kernel: str = "python3") -> Path:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def parameters_cell(source: str = "lr = 0.1") -> NotebookNode:
    cell: NotebookNode = new_code_cell(source, metadata={"tags": ["parameters"]})
    return cell


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write_notebook(
        root / "notebooks" / "train.ipynb",
        new_markdown_cell("# Train"),
        parameters_cell(),
        new_code_cell("import numpy as np\nx = np.arange(10) * lr"),
        new_code_cell("print(x.sum())"),
    )
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("a,b\n1,2\n")
    return root


def job(**changes: Any) -> Job:
    base = Job(
        id="train", path="notebooks/train.ipynb", parameters={"lr": 0.5}, deps=("data/*.csv",)
    )
    return replace(base, **changes)


def key_of(root: Path, j: Job | None = None, env: str = ENV) -> str | None:
    return cache_key(j or job(), root, environment_fingerprint=env)


def edit_notebook(root: Path, edit: Callable[[NotebookNode], object]) -> None:
    path = root / "notebooks" / "train.ipynb"
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)


# -- the key ---------------------------------------------------------------------


def _outputs_and_counts(nb: NotebookNode) -> None:
    for count, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = count + 1
        cell.outputs = [new_output("stream", name="stdout", text="45.0\n")]
        cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}


def _markdown(nb: NotebookNode) -> None:
    nb.cells[0].source = "# Training, explained differently"
    nb.cells.append(new_markdown_cell("More prose."))


def _metadata(nb: NotebookNode) -> None:
    nb.metadata["language_info"] = {"name": "python", "version": "3.99"}
    nb.metadata["papermill"] = {"duration": 3.2}
    nb.cells[2].metadata["collapsed"] = True


@pytest.mark.parametrize("edit", [_outputs_and_counts, _markdown, _metadata])
def test_key_ignores_outputs_counts_markdown_and_metadata(
    project: Path, edit: Callable[[NotebookNode], None]
) -> None:
    before = key_of(project)
    edit_notebook(project, edit)
    assert key_of(project) == before


def test_key_ignores_parameter_order_and_is_a_hex_digest(project: Path) -> None:
    a = key_of(project, job(parameters={"lr": 0.5, "seed": 1}))
    b = key_of(project, job(parameters={"seed": 1, "lr": 0.5}))
    assert a == b
    assert a is not None and len(a) == 64 and int(a, 16) >= 0


def _change_code(root: Path) -> Job:
    edit_notebook(root, lambda nb: setattr(nb.cells[2], "source", "x = 2 * lr"))
    return job()


def _add_code_cell(root: Path) -> Job:
    edit_notebook(root, lambda nb: nb.cells.append(new_code_cell("pass")))
    return job()


def _move_parameters_tag(root: Path) -> Job:
    def move(nb: NotebookNode) -> None:
        nb.cells[1].metadata["tags"] = []
        nb.cells[2].metadata["tags"] = ["parameters"]

    edit_notebook(root, move)
    return job()


def _change_parameters(root: Path) -> Job:
    return job(parameters={"lr": 0.25})


def _change_job_kernel(root: Path) -> Job:
    return job(kernel="python3-gpu")


def _change_notebook_kernelspec(root: Path) -> Job:
    edit_notebook(root, lambda nb: nb.metadata["kernelspec"].update(name="other"))
    return job()


def _change_dep_content(root: Path) -> Job:
    (root / "data" / "train.csv").write_text("a,b\n1,3\n")
    return job()


def _add_dep_file(root: Path) -> Job:
    (root / "data" / "extra.csv").write_text("c\n")
    return job()


def _rename_dep_file(root: Path) -> Job:
    (root / "data" / "train.csv").rename(root / "data" / "train2.csv")
    return job()


def _change_deps_globs(root: Path) -> Job:
    return job(deps=("data/*.csv", "models/*.pkl"))


def _change_timeout(root: Path) -> Job:
    return job(timeout=60.0)


def _change_cell_timeout(root: Path) -> Job:
    return job(cell_timeout=2.0)


def _change_path(root: Path) -> Job:
    (root / "other").mkdir()
    (root / "notebooks" / "train.ipynb").rename(root / "other" / "train.ipynb")
    return job(path="other/train.ipynb")


@pytest.mark.parametrize(
    "change",
    [
        _change_code,
        _add_code_cell,
        _move_parameters_tag,
        _change_parameters,
        _change_job_kernel,
        _change_notebook_kernelspec,
        _change_dep_content,
        _add_dep_file,
        _rename_dep_file,
        _change_deps_globs,
        _change_path,
        _change_timeout,
        _change_cell_timeout,
    ],
)
def test_each_key_component_changes_the_key(project: Path, change: Callable[[Path], Job]) -> None:
    before = key_of(project)
    after = key_of(project, change(project))
    assert after is not None and after != before


def test_environment_and_schema_change_the_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = key_of(project)
    assert key_of(project, env="another-environment") != before
    monkeypatch.setattr(cache, "SCHEMA", "nbci.results/4")
    assert key_of(project) != before


def test_job_kernel_overrides_the_notebooks_kernelspec(project: Path) -> None:
    assert key_of(project, job(kernel="python3")) == key_of(project, job(kernel=None))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"nbformat": 4, "cells": "x"}'])
def test_unreadable_notebook_has_no_key(project: Path, content: str) -> None:
    (project / "notebooks" / "train.ipynb").write_text(content)
    assert key_of(project) is None


def test_missing_notebook_has_no_key(project: Path) -> None:
    assert key_of(project, job(path="notebooks/nope.ipynb")) is None


def test_environment_fingerprint_follows_lock_files(project: Path) -> None:
    plain = environment_fingerprint(project)
    assert plain == environment_fingerprint(project)
    (project / "uv.lock").write_text("version = 1\n")
    locked = environment_fingerprint(project)
    assert locked != plain
    (project / "uv.lock").write_text("version = 2\n")
    assert environment_fingerprint(project) not in (plain, locked)


def test_the_fingerprint_lists_what_importlib_metadata_finds() -> None:
    from importlib import metadata

    def normalized(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    parsed = {f"{normalized(d.metadata['Name'])}=={d.version}" for d in metadata.distributions()}
    assert set(cache._installed_distributions()) == parsed


def test_the_fingerprint_follows_installs_and_upgrades(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "Foo_Bar-1.2.dist-info").mkdir(parents=True)
    (site / "legacy.egg-info").write_text("Metadata-Version: 1.0\nName: Legacy.Pkg\nVersion: 3\n")
    (site / "broken.egg-info").mkdir()  # no metadata to read: it still counts, by its name
    (site / "not-a-distribution").mkdir()
    before = environment_fingerprint(project)
    monkeypatch.syspath_prepend(str(site))
    installed = environment_fingerprint(project)
    found = cache._installed_distributions()
    assert {"foo-bar==1.2", "legacy-pkg==3", "broken==None"} <= set(found)
    (site / "Foo_Bar-1.2.dist-info").rename(site / "Foo_Bar-1.3.dist-info")
    assert len({before, installed, environment_fingerprint(project)}) == 3


# -- store and restore -----------------------------------------------------------


def executed(root: Path, out_dir: Path, j: Job | None = None, **changes: Any) -> NotebookResult:
    """Files and result of a finished job, as the executor leaves them in `out_dir`."""
    j = j or job()
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(root / j.path, as_version=4)
    _outputs_and_counts(nb)
    nbformat.write(nb, out_dir / "notebooks" / f"{j.id}.ipynb")
    (out_dir / "notebooks" / f"{j.id}.html").write_text("<html><body>train</body></html>")
    (out_dir / "figures" / j.id).mkdir(parents=True, exist_ok=True)
    (out_dir / "figures" / j.id / "curve.png").write_bytes(png_bytes())
    result = NotebookResult(
        id=j.id,
        path=j.path,
        parameters=j.parameters,
        status="ok",
        duration_s=2.5,
        output=f"notebooks/{j.id}.ipynb",
        html=f"notebooks/{j.id}.html",
        metrics={"accuracy": 0.93, "converged": True, "loss": float("nan")},
        figures=(Figure(name="learning curve", path=f"figures/{j.id}/curve.png"),),
        notes=("a note",),
    )
    return replace(result, **changes)


@pytest.fixture
def settings(tmp_path: Path) -> CacheSettings:
    return CacheSettings(directory=tmp_path / "cache")


def stored(project: Path, settings: CacheSettings, tmp_path: Path, j: Job | None = None) -> str:
    j = j or job()
    key = key_of(project, j)
    assert key is not None
    out = tmp_path / f"run-{j.id}"
    store(settings, key, executed(project, out, j), out)
    return key


def test_restore_round_trip_under_another_jobs_id(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    key = stored(project, settings, tmp_path)
    other = job(id="train-copy")
    out = tmp_path / "second-run"

    result = restore(settings, key, other, out)

    assert result is not None
    assert (result.id, result.path, result.cached, result.cache_key) == (
        "train-copy",
        "notebooks/train.ipynb",
        True,
        key,
    )
    assert result.output == "notebooks/train-copy.ipynb"
    assert result.html == "notebooks/train-copy.html"
    assert result.figures == (Figure("learning curve", "figures/train-copy/curve.png"),)
    assert result.metrics["accuracy"] == 0.93 and result.metrics["converged"] is True
    assert result.duration_s == 2.5 and result.notes == ("a note",)
    nbformat.validate(nbformat.read(out / result.output, as_version=4))
    assert (out / result.html).read_text().startswith("<html>")
    assert (out / result.figures[0].path).read_bytes() == png_bytes()


def test_restore_misses_without_an_entry_and_when_disabled(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    assert restore(settings, "0" * 64, job(), tmp_path / "out") is None
    key = stored(project, settings, tmp_path)
    assert restore(replace(settings, enabled=False), key, job(), tmp_path / "out") is None


@pytest.mark.parametrize("status", ["failed", "timeout", "died", "invalid", "interrupted"])
def test_only_ok_results_are_stored(
    project: Path, settings: CacheSettings, tmp_path: Path, status: str
) -> None:
    out = tmp_path / "run"
    store(settings, "k" * 64, executed(project, out, status=status), out)
    assert not (settings.entries / ("k" * 64)).exists()


def test_disabled_cache_stores_nothing(project: Path, tmp_path: Path) -> None:
    settings = CacheSettings(directory=tmp_path / "cache", enabled=False)
    out = tmp_path / "run"
    store(settings, "k" * 64, executed(project, out), out)
    assert not settings.directory.exists()


def test_store_with_a_missing_output_file_is_skipped_not_fatal(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = executed(project, out)
    (out / "notebooks" / "train.html").unlink()
    store(settings, "k" * 64, result, out)
    assert restore(settings, "k" * 64, job(), tmp_path / "again") is None
    assert list(settings.tmp.iterdir()) == []


# -- damaged entries ---------------------------------------------------------------


def _garbage_entry_json(entry: Path) -> None:
    (entry / "entry.json").write_text("{garbage")


def _entry_json_off_contract(entry: Path) -> None:
    data = json.loads((entry / "entry.json").read_text())
    data["run"]["notebooks"][0]["status"] = "exploded"
    (entry / "entry.json").write_text(json.dumps(data))


def _escaping_file_list(entry: Path) -> None:
    data = json.loads((entry / "entry.json").read_text())
    data["files"]["../../../etc/passwd"] = "0" * 64
    (entry / "entry.json").write_text(json.dumps(data))


def _missing_figure(entry: Path) -> None:
    next(entry.glob("figures/*/*.png")).unlink()


def _truncated_notebook(entry: Path) -> None:
    notebook = next(entry.glob("notebooks/*.ipynb"))
    notebook.write_bytes(notebook.read_bytes()[:50])


def _missing_entry_json(entry: Path) -> None:  # a half-copied entry
    (entry / "entry.json").unlink()


@pytest.mark.parametrize(
    "damage",
    [
        _garbage_entry_json,
        _entry_json_off_contract,
        _escaping_file_list,
        _missing_figure,
        _truncated_notebook,
        _missing_entry_json,
    ],
)
def test_damaged_entry_is_ignored_removed_and_replaced(
    project: Path, settings: CacheSettings, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    key = stored(project, settings, tmp_path)
    damage(settings.entries / key)

    assert restore(settings, key, job(), tmp_path / "second") is None
    assert not (settings.entries / key).exists()

    stored(project, settings, tmp_path)  # the run that follows the miss stores afresh
    assert restore(settings, key, job(), tmp_path / "third") is not None


def test_store_replaces_a_damaged_entry_in_place(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    key = stored(project, settings, tmp_path)
    _missing_figure(settings.entries / key)
    stored(project, settings, tmp_path)
    assert restore(settings, key, job(), tmp_path / "again") is not None


def test_half_written_entry_of_a_killed_run_is_never_read_and_pruned_when_stale(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    key = stored(project, settings, tmp_path)
    # A killed run leaves its staging folder, complete or not, in tmp/.
    os.rename(settings.entries / key, settings.tmp / "store-killed")
    (settings.tmp / "store-killed" / "entry.json").write_text('{"format": 1, "ke')
    fresh = settings.tmp / "store-running"  # maybe a parallel run, still writing
    fresh.mkdir()

    assert restore(settings, key, job(), tmp_path / "second") is None

    hour_ago = time.time() - 2 * cache.STALE_TMP_SECONDS
    os.utime(settings.tmp / "store-killed", (hour_ago, hour_ago))
    prune(settings)
    assert sorted(p.name for p in settings.tmp.iterdir()) == ["store-running"]


# -- pruning -----------------------------------------------------------------------


def _entry_size(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())


def _age(entry: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(entry, (then, then))


def test_prune_keeps_the_cache_under_its_size_evicting_least_recently_used(
    project: Path, tmp_path: Path
) -> None:
    roomy = CacheSettings(directory=tmp_path / "cache")
    first = stored(project, roomy, tmp_path, job(parameters={"lr": 1}))
    size = _entry_size(roomy.entries / first)
    settings = replace(roomy, max_bytes=int(size * 2.5))  # room for two entries
    second = stored(project, settings, tmp_path, job(parameters={"lr": 2}))
    _age(settings.entries / first, 300)
    _age(settings.entries / second, 200)
    assert restore(settings, first, job(parameters={"lr": 1}), tmp_path / "hit") is not None

    third = stored(project, settings, tmp_path, job(parameters={"lr": 3}))

    kept = {p.name for p in settings.entries.iterdir()}
    assert kept == {first, third}  # `second` was the least recently used
    assert sum(_entry_size(e) for e in settings.entries.iterdir()) <= settings.max_bytes


def test_prune_drops_entries_unused_for_max_age_days(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    old = stored(project, settings, tmp_path, job(parameters={"lr": 1}))
    recent = stored(project, settings, tmp_path, job(parameters={"lr": 2}))
    _age(settings.entries / old, (settings.max_age_days + 1) * 86400)
    prune(settings)
    assert {p.name for p in settings.entries.iterdir()} == {recent}


def test_prune_drops_charts_unused_for_max_age_days_and_nothing_else_there(
    settings: CacheSettings,
) -> None:
    charts = settings.directory / CHARTS
    charts.mkdir(parents=True)
    old, recent, users = charts / f"{'a' * 64}.png", charts / f"{'b' * 64}.png", charts / "x.png"
    for path in (old, recent, users):
        path.write_bytes(b"png")
    for path in (old, users):
        _age(path, (settings.max_age_days + 1) * 86400)
    prune(settings)
    assert sorted(p.name for p in charts.iterdir()) == sorted([recent.name, users.name])


def test_an_entry_larger_than_the_whole_cache_is_not_stored(project: Path, tmp_path: Path) -> None:
    settings = CacheSettings(directory=tmp_path / "cache", max_bytes=100)
    key = stored(project, settings, tmp_path)
    assert not (settings.entries / key).exists()
    assert list(settings.tmp.iterdir()) == []


def test_cache_folder_is_tagged_for_backup_tools(
    project: Path, settings: CacheSettings, tmp_path: Path
) -> None:
    stored(project, settings, tmp_path)
    tag = (settings.directory / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_deps_outside_the_root_are_hashed_and_absolute_globs_mean_no_key(project: Path) -> None:
    shared = project.parent / "shared"
    shared.mkdir()
    (shared / "labels.csv").write_text("x\n")
    outside = job(deps=("../shared/*.csv",))
    before = key_of(project, outside)
    (shared / "labels.csv").write_text("y\n")
    assert before is not None and key_of(project, outside) not in (None, before)
    assert key_of(project, job(deps=(str(shared / "*.csv"),))) is None
