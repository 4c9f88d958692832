"""Judging a run: compare it with its baseline, then evaluate the gates.

The one path every caller takes (`nbci run` and `nbci report` through the
pipeline, `nbci diff`, `nbci publish`), so that a run is judged the same way
wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbci.model import Comparison, Run, Verdict

if TYPE_CHECKING:
    from nbci.config import Config
    from nbci.gates import GateRule


@dataclass(frozen=True)
class Criteria:
    """What the configuration says about judging: gates and metric directions."""

    gates: Sequence[GateRule] = ()
    higher_is_better: Sequence[str] = ()
    """Metric-name globs; see `nbci.compare.direction_of`."""
    lower_is_better: Sequence[str] = ()

    @classmethod
    def of(cls, config: Config) -> Criteria:
        return cls(config.gates, config.higher_is_better, config.lower_is_better)


@dataclass(frozen=True)
class Judgement:
    comparison: Comparison | None
    """None without a baseline."""
    verdict: Verdict


def judge(
    run: Run,
    baseline: Run | None,
    *,
    label: str,
    criteria: Criteria,
    history: Sequence[Run] = (),
) -> Judgement:
    """`run` against `baseline` (if any), then every gate; `label` names the baseline.

    `history`: the base branch's recent runs, oldest first (see `nbci.history`).
    """
    from nbci.compare import compare
    from nbci.gates import evaluate

    comparison = None
    if baseline is not None:
        comparison = compare(
            run,
            baseline,
            label=label,
            higher=criteria.higher_is_better,
            lower=criteria.lower_is_better,
            history=history,
        )
    return Judgement(comparison, evaluate(criteria.gates, run, comparison))


def run_label(run: Run, fallback: str) -> str:
    """How a report names a run it was compared with: its commit, else `fallback`."""
    return run.git.sha[:12] if run.git.sha else fallback
