"""Headline metrics: which of a notebook's metrics lead its tables, its sweep table and the
trend charts.

The configuration's `headline` globs choose them (a `[[notebook]]` entry's for the
notebooks it matches, else the project's), in the globs' order. Without globs a
notebook's glued scalars lead, and the metrics its curves give (`NAME.last`, `.min`,
`.max`) do not: they are shown with their chart (unless the notebook glued no scalar
at all). A metric a gate names leads either way.
Globs match metric names as gates do (`fnmatch`, case-sensitive).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from nbci.model import Direction, NotebookResult, Run, Verdict

if TYPE_CHECKING:
    from nbci.config import Config


@dataclass(frozen=True)
class Headline:
    """The configuration's `headline` globs: the project's, and each notebook entry's."""

    globs: tuple[str, ...] | None = None
    """None: every notebook's glued scalars lead."""
    entries: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(notebook path or glob, its globs), for the `[[notebook]]` entries that set `headline`."""
    higher_is_better: tuple[str, ...] = ()
    """The configuration's direction globs: which value of a sweep is the best."""
    lower_is_better: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: Config) -> Headline:
        entries = tuple((e.pattern, e.headline) for e in config.entries if e.headline is not None)
        return cls(config.headline, entries, config.higher_is_better, config.lower_is_better)

    def direction(self, metric: str) -> Direction:
        """Which way `metric` improves (`nbci.compare.direction_of`)."""
        from nbci.compare import direction_of

        return direction_of(metric, self.higher_is_better, self.lower_is_better)

    def globs_for(self, path: str) -> tuple[str, ...] | None:
        """The globs for the notebook at `path`: the first matching entry's (matched as the
        plan matches entries), else the project's."""
        for pattern, globs in self.entries:
            if PurePosixPath(path).match(pattern):
                return globs
        return self.globs


@dataclass(frozen=True)
class Leads:
    """Which metric of which job is a headline metric, for one run and its gates."""

    notebooks: dict[str, NotebookResult]
    headline: Headline = field(default_factory=Headline)
    gated: frozenset[tuple[str, str]] = frozenset()
    curves: dict[str, frozenset[str]] = field(default_factory=dict)
    """Job id → the metrics its curves give."""

    @classmethod
    def of(cls, run: Run, headline: Headline | None, verdict: Verdict | None = None) -> Leads:
        gated = frozenset((r.job_id, r.metric) for r in verdict.results) if verdict else frozenset()
        notebooks = {nb.id: nb for nb in run.notebooks}
        curves = {nb.id: curve_metrics(nb) for nb in run.notebooks}
        return cls(notebooks, headline or Headline(), gated, curves)

    def leads(self, job_id: str, metric: str) -> bool:
        """Whether `metric` of `job_id` is a headline metric; every metric of a job this run
        does not have is (the baseline's only)."""
        nb = self.notebooks.get(job_id)
        if nb is None or (job_id, metric) in self.gated:
            return True
        globs = self.headline.globs_for(nb.path)
        if globs is None:  # its scalars; its curves' metrics when it glued no scalar
            curves = self.curves.get(job_id, frozenset())
            return metric not in curves or all(m in curves for m in nb.metrics)
        return any(fnmatch.fnmatchcase(metric, glob) for glob in globs)

    def metrics(self, nb: NotebookResult) -> tuple[str, ...]:
        """`nb`'s headline metrics: in the globs' order with globs, else as glued."""
        globs = self.headline.globs_for(nb.path)
        names: Iterable[str] = nb.metrics
        if globs is not None:
            names = [m for glob in globs for m in nb.metrics if fnmatch.fnmatchcase(m, glob)]
            names += [m for m in nb.metrics if (nb.id, m) in self.gated]
        return tuple(m for m in dict.fromkeys(names) if self.leads(nb.id, m))

    def first(self, job_id: str, metrics: Sequence[str]) -> list[str]:
        """`metrics` with the headline ones first, each part in its order."""
        return sorted(metrics, key=lambda m: not self.leads(job_id, m))


def curve_metrics(nb: NotebookResult) -> frozenset[str]:
    """The metrics `nb`'s curves give."""
    from nbci.series import summary_metrics

    return frozenset(
        metric
        for group in nb.series
        for series in group.series
        for metric in summary_metrics(series.name, ())
    )
