"""Charts, figure comparison and notebooks for a publish: made here, hosted by `assets.store`.

The baseline's figures are on the assets branch already (stored with its
run). A figure whose blob equals the stored one is unchanged without a
request; a figure that differs is fetched to be compared pixel by pixel and
to draw its difference image, at most `MAX_FETCHED` of them, so a publish
stays a bounded number of API calls however many figures changed. The rest
are shown as changed, beside the baseline's, without a difference image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from nbci.errors import PublishError, ResultsError
from nbci.figures import Reader, figure_changes
from nbci.formats import MAX_FIGURE_BYTES
from nbci.model import CodeChange, FigureChange, Run
from nbci.publish.assets import Asset, FigureFile, Tip
from nbci.publish.baseline import Baseline
from nbci.publish.forge import Forge, PermissionDenied
from nbci.publish.notebooks import notebook_assets, stored_path
from nbci.render.charts import write_charts
from nbci.render.visuals import Drawn, visuals_by_job

logger = logging.getLogger(__name__)

MAX_FETCHED = 10
"""Baseline figures fetched for a pixel comparison in one publish."""
MAX_NOTEBOOK_BYTES = 16 * 1024 * 1024
"""A stored baseline notebook read for the code diff (they are stored trimmed, a few MB)."""


@dataclass(frozen=True)
class Prepared:
    """What a publish adds to the assets commit, and the view of it for the report."""

    drawn: Drawn
    images: tuple[FigureFile, ...] = ()
    """Charts and difference images, paths relative to the run (`charts/…`, `diffs/…`):
    hosted and linked like the figures."""
    notebooks: tuple[Asset, ...] = ()
    """The executed notebooks, paths on the assets branch."""
    notebook_paths: Mapping[str, str] = field(default_factory=dict)
    """Job id → its executed notebook's path on the assets branch."""


def prepare(
    forge: Forge,
    tip: Tip,
    run: Run,
    figures: Iterable[FigureFile],
    *,
    out_dir: Path,
    work_dir: Path,
    folder: str,
    baseline: Baseline | None,
    baseline_label: str | None,
    with_charts: bool,
    with_notebooks: bool,
    notes: list[str],
) -> Prepared:
    """Charts, difference images and notebooks for the assets commit of one publish."""
    stored = notebook_assets(run, out_dir, folder) if with_notebooks else None
    visuals = Prepared(Drawn({}))
    if with_charts:
        visuals = prepare_visuals(
            forge,
            tip,
            run,
            figures,
            baseline=baseline.run if baseline else None,
            baseline_folder=baseline.folder if baseline else None,
            baseline_label=baseline_label,
            work_dir=work_dir,
            notes=notes,
            out_dir=out_dir,
            own_notebooks=_by_job(stored.assets, stored.paths) if stored else {},
        )
    if stored is None:
        return visuals
    notes.extend(f"notebook not stored: {line}" for line in stored.skipped)
    return replace(visuals, notebooks=stored.assets, notebook_paths=stored.paths)


def prepare_visuals(
    forge: Forge,
    tip: Tip,
    run: Run,
    figures: Iterable[FigureFile],
    *,
    baseline: Run | None,
    baseline_folder: str | None,
    baseline_label: str | None,
    work_dir: Path,
    notes: list[str],
    out_dir: Path | None = None,
    own_notebooks: Mapping[str, Asset] | None = None,
) -> Prepared:
    """Draw the charts and compare the figures into `work_dir`; with `out_dir`, compare the
    notebooks' code with the baseline's stored notebooks (`own_notebooks`: job id → this
    run's notebook as stored, which spares a request when the baseline's is the same)."""
    charts, left_out = write_charts(run, baseline, work_dir, baseline_label=baseline_label)
    changes: tuple[FigureChange, ...] = ()
    code: tuple[CodeChange, ...] = ()
    if baseline is not None and baseline_folder is not None:
        head = {f.path: f.data for f in figures}
        read_base = _branch_reader(forge, tip, baseline_folder, head, notes)
        changes = figure_changes(run, baseline, head.get, read_base, work_dir)
        if out_dir is not None:
            code = _code_changes(
                forge, tip, run, baseline, baseline_folder, out_dir, own_notebooks or {}, notes
            )
    paths = [c.path for c in charts] + [c.diff_path for c in changes if c.diff_path]
    images = tuple(FigureFile(path, (work_dir / path).read_bytes()) for path in paths)
    return Prepared(Drawn(visuals_by_job(charts, changes, code), left_out), images)


def _code_changes(
    forge: Forge,
    tip: Tip,
    run: Run,
    baseline: Run,
    folder: str,
    out_dir: Path,
    own: Mapping[str, Asset],
    notes: list[str],
) -> tuple[CodeChange, ...]:
    """This run's notebooks against the baseline's stored ones: one request per notebook
    whose stored file differs from this run's (none when the bytes are the same)."""
    from nbci.code_changes import code_changes, notebook_reader

    job_of = {nb.output: nb.id for nb in baseline.notebooks if nb.output}

    def read_base(output: str) -> bytes | None:
        job_id = job_of.get(output)
        if job_id is None:
            return None
        path = stored_path(folder, job_id)
        listed = tip.files.get(path)
        mine = own.get(job_id)
        if listed is not None and mine is not None and mine.sha == listed[0]:
            return mine.data  # the same notebook as stored: no code change, no request
        if listed is None and tip.files and not tip.truncated:
            return None  # not stored with the baseline
        return _fetch_notebook(forge, tip, path, notes)

    return code_changes(run, baseline, notebook_reader(out_dir), read_base)


def _fetch_notebook(forge: Forge, tip: Tip, path: str, notes: list[str]) -> bytes | None:
    if tip.commit is None:
        return None
    try:
        return forge.read_stored_file(path, tip=tip, limit=MAX_NOTEBOOK_BYTES)
    except PublishError as exc:
        notes.append(f"the baseline's notebook could not be read for the code diff: {exc}")
    except ResultsError as exc:
        logger.warning("%s", exc)
    return None


def _by_job(assets: Iterable[Asset], paths: Mapping[str, str]) -> dict[str, Asset]:
    """Job id → its notebook asset."""
    by_path = {asset.path: asset for asset in assets}
    return {job: by_path[path] for job, path in paths.items() if path in by_path}


def _branch_reader(
    forge: Forge, tip: Tip, folder: str, head: dict[str, bytes], notes: list[str]
) -> Reader:
    """Reads the baseline's figures from the branch; an unchanged blob is not fetched."""
    fetched = 0

    def read(path: str) -> bytes | None:
        nonlocal fetched
        stored = tip.files.get(f"{folder}/{path}")
        if stored is None:
            return None
        blob_sha, size = stored
        own = head.get(path)
        if own is not None and Asset(path, own).sha == blob_sha:
            return own  # the same bytes: unchanged, nothing to fetch
        if fetched >= MAX_FETCHED or size > MAX_FIGURE_BYTES:
            return None
        fetched += 1
        return _fetch(forge, tip, f"{folder}/{path}", notes)

    return read


def _fetch(forge: Forge, tip: Tip, path: str, notes: list[str]) -> bytes | None:
    try:
        return forge.read_file(tip, path, MAX_FIGURE_BYTES)
    except PermissionDenied as exc:
        notes.append(f"the baseline's figures could not be read ({exc.permission} missing)")
    except ResultsError as exc:
        logger.warning("%s", exc)
    return None
