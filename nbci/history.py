"""History: what the base branch's recent runs say is normal for each metric.

A single baseline cannot tell a real change from a metric that always wobbles
(timings, non-deterministic training, sampling); the base branch's own recent
runs can. For each metric of each job, the history's values give its range:

    centre  = median of the values
    spread  = K * 1.4826 * MAD     (MAD: median absolute deviation from the median;
                                    1.4826 * MAD estimates a standard deviation)
    range   = [min(centre - spread, smallest value), max(centre + spread, largest value)]

with `K = 3`. The median and the MAD ignore a few wild values, and the range
never excludes a value the history itself showed. It needs at least
`MIN_RUNS` values (finite numbers from runs where the job passed); with fewer,
the metric has no range and is compared with the baseline alone, as without
history. A value inside the range is "within the base branch's range": neither
regressed nor improved.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from nbci.errors import ResultsError
from nbci.model import Range, Run, finite_float

logger = logging.getLogger(__name__)

MIN_RUNS = 5
"""Values a metric needs in the history to have a range."""
K = 3.0
"""How many (MAD-estimated) standard deviations the range reaches beyond the median."""
MAD_TO_SD = 1.4826


def metric_ranges(history: Sequence[Run]) -> dict[tuple[str, str], Range]:
    """(job id, metric) → its range, for every metric with at least `MIN_RUNS` values.

    `history` is in order, oldest first; a job's values are taken only from
    runs where it passed, and only finite numbers (not bools) count.
    """
    values: dict[tuple[str, str], list[float]] = {}
    for run in history:
        for nb in run.notebooks:
            if not nb.ok:
                continue
            for metric, value in nb.metrics.items():
                number = finite_float(value)
                if number is not None:
                    values.setdefault((nb.id, metric), []).append(number)
    return {key: found for key, series in values.items() if (found := robust_range(series))}


def robust_range(values: Iterable[float]) -> Range | None:
    """The range of `values` (see the module docstring); None for fewer than `MIN_RUNS`."""
    series = tuple(values)
    if len(series) < MIN_RUNS:
        return None
    centre = statistics.median(series)
    mad = statistics.median(abs(v - centre) for v in series)
    spread = K * MAD_TO_SD * mad
    low = min(centre - spread, min(series))
    high = max(centre + spread, max(series))
    return Range(low=low, high=high, median=centre, values=series)


def read_history(folders: Sequence[Path]) -> tuple[Run, ...]:
    """The runs in `folders` (oldest first) for `--history`; one that cannot be read is
    skipped with a warning: history informs the judgement, it never stops it."""
    from nbci.results import read_run

    runs = []
    for folder in folders:
        try:
            runs.append(read_run(folder))
        except ResultsError as exc:
            logger.warning("history: skipped %s", exc)
    return tuple(runs)
