"""The one data model that every stage passes on.

Plain frozen dataclasses, no I/O. Derived figures are properties, not stored
copies. `results.py` turns a `Run` into `results.json` and back; nothing else
knows the JSON shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

SCHEMA = "nbci.results/3"
"""The results.json version written (`nbci.schemas.RESULTS_SCHEMAS` lists those read): `/3`
added each notebook's effective parameters to `/2`, which added its series to `/1`; runs
of every version are still read, compared and merged."""

Status = Literal["ok", "failed", "timeout", "died", "invalid", "interrupted"]
"""`interrupted`: the run was stopped (SIGINT/SIGTERM) before this job finished."""
STATUSES: tuple[Status, ...] = ("ok", "failed", "timeout", "died", "invalid", "interrupted")

ScrapKind = Literal["text", "json", "table", "html"]
SCRAP_KINDS: tuple[ScrapKind, ...] = ("text", "json", "table", "html")

MetricValue = int | float | bool

ParameterSource = Literal["default", "injected"]
"""`default`: the notebook's `parameters` cell set it; `injected`: nbci put it in."""
Injector = Literal["-p", "config", "matrix"]
"""What injected a parameter: the command line, the configuration's `parameters`, a matrix."""
INJECTORS: tuple[Injector, ...] = ("-p", "config", "matrix")


@dataclass(frozen=True)
class Parameter:
    """A value a job effectively ran with, and where it came from."""

    value: Any
    """A JSON value; for a default that is not a literal, its source text (`expression`)."""
    source: ParameterSource
    via: Injector | None = None
    """What injected it (None for a default, and in runs that did not record it)."""
    expression: bool = False
    """`value` is the code of the default (`np.arange(3)`), not a value."""

    @property
    def origin(self) -> str:
        """How reports say where it came from: `default`, `-p`, `matrix`, `config`."""
        return self.via or self.source


@dataclass(frozen=True)
class Job:
    """One notebook with one parameter set: the unit that is executed."""

    id: str
    """Stable, unique, filesystem-safe: `train`, `train-lr-0.1`."""
    path: str
    """The notebook, posix path relative to the project root."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    """Kernel name; None means the notebook's own kernelspec."""
    cell_timeout: float = 600.0
    timeout: float = 3600.0
    """Whole-notebook timeout in seconds."""
    deps: tuple[str, ...] = ()
    """Globs of data files the notebook reads (part of the cache key)."""
    effective: Mapping[str, Parameter] = field(default_factory=dict)
    """Every parameter it runs with: the `parameters` cell's defaults, overlaid with
    `parameters` (which alone are injected)."""


def finite_float(value: object) -> float | None:
    """The one test of a finite number: `value` as a float when it is an int or float (not a
    bool) that a float holds and that is finite; None otherwise (NaN, ±inf, `10**400`)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class ErrorInfo:
    """Why a job is not `ok`: the failing cell, or a message for the rest."""

    cell: int | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: str | None = None
    """Plain text, ANSI colour codes stripped."""
    message: str | None = None

    @property
    def summary(self) -> str:
        """One line: `ename: evalue`, or the message."""
        if self.ename:
            return f"{self.ename}: {self.evalue}" if self.evalue else self.ename
        return self.message or "unknown error"


@dataclass(frozen=True)
class Scrap:
    """A glued value that is not a metric or a figure.

    `value` by kind: `text` a str; `json` any JSON value; `html` a str of
    untrusted HTML; `table` a dict `{"columns": [...], "rows": [[...]],
    "total_rows": N}` (rows may be truncated, `total_rows` is the real count).
    """

    kind: ScrapKind
    value: Any


@dataclass(frozen=True)
class Figure:
    name: str
    """The scrap name as glued (untrusted)."""
    path: str
    """Posix path relative to the output directory: `figures/<job-id>/<safe-name>.png`."""


FigureState = Literal["unchanged", "changed", "added", "removed"]


@dataclass(frozen=True)
class FigureChange:
    """One figure of a run against the baseline's figure at the same path."""

    job_id: str
    name: str
    state: FigureState
    path: str | None = None
    """This run's figure, relative to its output directory; None when removed."""
    baseline_path: str | None = None
    """The baseline's figure, relative to the baseline's directory; None when added."""
    diff_path: str | None = None
    """The difference image (`diffs/<job>/<name>.png`), when changed and of the same size."""
    note: str = ""
    """The change in words: `1,234 pixels changed (0.5%)`, `size changed from …`."""


CellChangeKind = Literal["edited", "added", "removed", "moved"]
DiffLine = tuple[Literal[" ", "-", "+"], str]
"""One line of a diff: ` ` on both sides, `-` the baseline's only, `+` this run's only."""


@dataclass(frozen=True)
class CellImage:
    """An image output of a changed cell, against the baseline cell's at the same place."""

    path: str | None
    """This run's image, relative to the output directory (None: the baseline's only)."""
    baseline_path: str | None
    """The baseline's image, copied into the output directory (None: this run's only)."""
    diff_path: str | None = None
    note: str = ""
    """The change in words, as for figures (`1,234 pixels changed (0.5%)`)."""


@dataclass(frozen=True)
class CellChange:
    """A code cell whose source differs from the baseline's executed notebook."""

    kind: CellChangeKind
    number: int | None
    """Its `In [N]` in this run; None when removed."""
    baseline_number: int | None
    """Its `In [N]` in the baseline; None when added."""
    source: tuple[DiffLine, ...]
    """The source line by line (all `+` when added, all `-` when removed)."""
    outputs: tuple[DiffLine, ...] = ()
    """Its text outputs (streams, plain text, errors) line by line, likewise."""
    images: tuple[CellImage, ...] = ()


@dataclass(frozen=True)
class CodeChange:
    """Which code cells of a job's notebook changed against its baseline's."""

    job_id: str
    cells: tuple[CellChange, ...]


@dataclass(frozen=True)
class Series:
    """One glued curve: y against x, at most `nbci.series.MAX_POINTS` points kept."""

    name: str
    """Its metric prefix: the scrap name (`loss`), or `group.key` in a group (`history.loss`)."""
    x: tuple[float, ...]
    y: tuple[float, ...]
    """NaN where the notebook had NaN, ±inf or null: a gap in the line."""
    points: int
    """How many points were glued; more than `len(y)` when downsampled."""


@dataclass(frozen=True)
class SeriesGroup:
    """Series glued together (a dict of curves, a DataFrame): drawn on one chart."""

    name: str
    """The scrap name (untrusted)."""
    series: tuple[Series, ...]

    def label(self, series_name: str) -> str:
        """A series' name inside its group: `loss` for `history.loss`."""
        prefix = f"{self.name}."
        return series_name[len(prefix) :] if series_name.startswith(prefix) else series_name


@dataclass(frozen=True)
class Chart:
    """A drawn series group: this run's curves against the baseline's."""

    job_id: str
    group: str
    """The group's name (untrusted)."""
    path: str
    """The PNG, relative to the output directory: `charts/<job-id>/<safe-name>.png`."""
    change: float = 0.0
    """How much the curves moved against the baseline (`nbci.series.change_score`)."""


@dataclass(frozen=True)
class NotebookResult:
    """What one job produced."""

    id: str
    path: str
    parameters: Mapping[str, Any]
    status: Status
    cached: bool = False
    duration_s: float = 0.0
    output: str | None = None
    """The executed notebook, relative to the output directory."""
    html: str | None = None
    """nbconvert HTML of the executed notebook, relative to the output directory."""
    error: ErrorInfo | None = None
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    scraps: Mapping[str, Scrap] = field(default_factory=dict)
    figures: tuple[Figure, ...] = ()
    series: tuple[SeriesGroup, ...] = ()
    notes: tuple[str, ...] = ()
    """What collection trimmed or skipped, said to the reader."""
    cache_key: str | None = None
    kernel: str | None = None
    """The kernel that ran the notebook, as installed (`python` in a notebook runs `python3`)."""
    effective_parameters: Mapping[str, Parameter] = field(default_factory=dict)
    """Every parameter it ran with, defaults included (`Job.effective`); empty in runs
    written before `/3`, which recorded only the injected `parameters`."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def ran_for(self) -> float | None:
        """Seconds the job ran; None for one the run stopped before it started (shown as a
        dash, not `0.0 s`)."""
        return None if self.status == "interrupted" and not self.duration_s else self.duration_s

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the result names (notebook, HTML, figures), relative to the output dir."""
        return tuple(p for p in (self.output, self.html) if p) + tuple(f.path for f in self.figures)

    @classmethod
    def of(cls, job: Job, status: Status = "ok", message: str | None = None) -> NotebookResult:
        """A result for `job` with nothing collected yet; a message becomes its error."""
        error = ErrorInfo(message=message) if message is not None else None
        return cls(
            id=job.id,
            path=job.path,
            parameters=job.parameters,
            status=status,
            error=error,
            effective_parameters=job.effective,
        )


@dataclass(frozen=True)
class GitInfo:
    sha: str | None = None
    branch: str | None = None
    dirty: bool | None = None


@dataclass(frozen=True)
class Environment:
    python: str = ""
    platform: str = ""
    packages: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One `nbci run`: every job's result plus where and when it ran."""

    notebooks: tuple[NotebookResult, ...]
    created: str
    """ISO 8601 UTC, `2026-11-26T22:00:00Z`."""
    git: GitInfo = field(default_factory=GitInfo)
    environment: Environment = field(default_factory=Environment)
    nbci_version: str = ""
    schema: str = SCHEMA
    interrupted: bool = False
    shard: str | None = None
    """`K/N` for a shard run, None for a whole run (or a merged one)."""
    planned: tuple[str, ...] = ()
    """A shard run's record of every job id the plan had, in order, so that a merge
    can tell a job that no shard ran; empty for other runs."""
    report: str | None = None
    """The report name a stored run was published under (`nbci publish --name`);
    None in a run folder, and in runs stored before nbci recorded it."""

    def get(self, job_id: str) -> NotebookResult | None:
        return next((nb for nb in self.notebooks if nb.id == job_id), None)

    @property
    def counts(self) -> dict[Status, int]:
        """Jobs per status, every status present (zero when none)."""
        counts = dict.fromkeys(STATUSES, 0)
        for nb in self.notebooks:
            counts[nb.status] += 1
        return counts

    @property
    def cached_count(self) -> int:
        return sum(nb.cached for nb in self.notebooks)

    @property
    def duration_s(self) -> float:
        return sum(nb.duration_s for nb in self.notebooks)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(nb.ok for nb in self.notebooks)


# -- comparison and gates ----------------------------------------------------

Direction = Literal["higher", "lower", "neutral"]
"""Which way a metric improves."""

Change = Literal["improved", "regressed", "within", "unchanged", "changed", "added", "removed"]
"""`changed`: a neutral (or non-numeric) metric moved; `added`/`removed`: present on one
side only. A directional metric that became NaN has `regressed`. `within`: it would have
regressed or improved, but the value lies inside the base branch's range (noise)."""


@dataclass(frozen=True)
class Range:
    """What the base branch's recent runs showed for one metric of one job.

    `low`..`high` is the robust range (see `nbci.history`); `values` are the
    history's values in order, oldest first.
    """

    low: float
    high: float
    median: float
    values: tuple[float, ...]

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def outside_by(self, value: float) -> float:
        """How far `value` lies outside (positive above, negative below); 0 inside."""
        if value > self.high:
            return value - self.high
        if value < self.low:
            return value - self.low
        return 0.0


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one job, head against baseline."""

    job_id: str
    metric: str
    baseline: MetricValue | None
    value: MetricValue | None
    direction: Direction = "neutral"
    range: Range | None = None
    """The base branch's range for this metric; None without enough history."""

    @property
    def inside_range(self) -> bool | None:
        """Whether this run's value lies inside `range`; None without a range or a number."""
        value = self.value
        if self.range is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            return self.range.contains(float(value))
        except OverflowError:
            return False

    @property
    def difference(self) -> int | float | None:
        """Head minus baseline, exact between whole numbers; None unless both are numbers."""
        base, value = self.baseline, self.value
        if not isinstance(base, int | float) or not isinstance(value, int | float):
            return None  # absent, or not a number (bools count as 0 and 1)
        if isinstance(base, int) and isinstance(value, int):
            return int(value) - int(base)
        try:
            return float(value) - float(base)
        except OverflowError:  # an int beyond float range
            return None

    @property
    def absolute(self) -> float | None:
        """Head minus baseline as a float; None unless both are numbers (or too big for one)."""
        difference = self.difference
        try:
            return None if difference is None else float(difference)
        except OverflowError:
            return None

    @property
    def relative(self) -> float | None:
        """Change as a fraction of |baseline|; None for a zero or missing baseline."""
        difference, base = self.difference, self.baseline
        if difference is None or not isinstance(base, int | float) or base == 0:
            return None
        if isinstance(base, float) and not math.isfinite(base):
            return None
        try:
            return float(difference / abs(base))  # true division copes with huge ints
        except OverflowError:
            return None

    @property
    def change(self) -> Change:
        if self.baseline is None:
            return "added"
        if self.value is None:
            return "removed"
        if _same(self.baseline, self.value):
            return "unchanged"
        difference = self.difference
        if self.direction == "neutral" or difference is None or self.absolute is None:
            return "changed"
        if math.isnan(difference):
            # One side is NaN (both NaN is unchanged): a metric that became NaN is
            # broken, one that stopped being NaN is mended, whichever way it improves.
            return "regressed" if _is_nan(self.value) else "improved"
        if self.inside_range:
            return "within"
        better = difference > 0 if self.direction == "higher" else difference < 0
        return "improved" if better else "regressed"


@dataclass(frozen=True)
class JobChange:
    """A job present on one side only, or whose status differs."""

    job_id: str
    baseline_status: Status | None
    status: Status | None

    @property
    def newly_failing(self) -> bool:
        return self.baseline_status == "ok" and self.status not in (None, "ok")

    @property
    def fixed(self) -> bool:
        return self.baseline_status not in (None, "ok") and self.status == "ok"


@dataclass(frozen=True)
class ParameterChange:
    """A parameter of a job on both sides whose effective value differs."""

    job_id: str
    name: str
    baseline: str | None
    """The value as compact JSON (a default's code as it is); None when the baseline did
    not have it, or ran with a default its run did not record (`baseline_origin`)."""
    value: str | None
    """The value as compact JSON (a default's code as it is); None when this run did not
    have it."""
    baseline_origin: str | None = None
    """Where the baseline's value came from (`Parameter.origin`, or `injected`); None
    when it did not have it."""
    origin: str | None = None
    """Where this run's value came from; None when it did not have it."""


@dataclass(frozen=True)
class TableChange:
    """A table scrap that a job has on both sides: equal, or the baseline's table to show
    this run's against (`nbci.render.table_diff`)."""

    job_id: str
    name: str
    baseline: Any = None
    """The baseline's table (its `Scrap.value`) when the two differ; None when they are equal."""

    @property
    def unchanged(self) -> bool:
        return self.baseline is None


@dataclass(frozen=True)
class Comparison:
    """A run against its baseline run."""

    baseline_label: str
    """How the report names the baseline: a commit SHA or a directory."""
    deltas: tuple[MetricDelta, ...]
    jobs: tuple[JobChange, ...] = ()
    """Jobs added, removed, or whose status changed."""
    parameters: tuple[ParameterChange, ...] = ()
    """Parameters that differ between the two runs, job by job: a change of a metric
    may come from them rather than from the code."""
    history_runs: int = 0
    """How many of the base branch's runs the ranges come from (0: no history)."""
    tables: tuple[TableChange, ...] = ()
    """Table scraps that both sides of a job have, equal or not."""

    @property
    def added_jobs(self) -> tuple[str, ...]:
        return tuple(j.job_id for j in self.jobs if j.baseline_status is None)

    @property
    def removed_jobs(self) -> tuple[str, ...]:
        return tuple(j.job_id for j in self.jobs if j.status is None)

    @property
    def newly_failing(self) -> tuple[str, ...]:
        return tuple(j.job_id for j in self.jobs if j.newly_failing)

    @property
    def regressions(self) -> tuple[MetricDelta, ...]:
        """Regressed metrics; a move inside the base branch's range is not one."""
        return tuple(d for d in self.deltas if d.change == "regressed")

    def delta(self, job_id: str, metric: str) -> MetricDelta | None:
        return self._by_key.get((job_id, metric))

    @cached_property
    def _by_key(self) -> dict[tuple[str, str], MetricDelta]:
        # Built once, so looking up every metric of a big run stays linear.
        return {(d.job_id, d.metric): d for d in reversed(self.deltas)}  # first one wins


@dataclass(frozen=True)
class GateResult:
    """One rule applied to one job's metric."""

    rule: str
    """The rule's key as written in the config: `accuracy`, `train:loss`, `*_f1`."""
    job_id: str
    metric: str
    passed: bool
    reason: str
    """One line for a human: `train:accuracy 0.912 < min 0.93`."""
    check: str = ""
    """Which bound was checked: `min`, `max`, `max_drop`, `max_rise`, `required`, or
    `status` (the job is not `ok`)."""


@dataclass(frozen=True)
class Verdict:
    """Every gate's result; no gates at all passes."""

    results: tuple[GateResult, ...] = ()

    @property
    def failures(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def passed(self) -> bool:
        return not self.failures


def passed(run: Run, verdict: Verdict | None) -> bool:
    """The one rule for a run's verdict: every notebook ok and every gate passed (no gates
    judged: passed). Reports, the exit code and the forge's status all ask this."""
    return run.ok and (verdict is None or verdict.passed)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
