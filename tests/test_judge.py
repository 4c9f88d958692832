"""One path judges a run: `judge` (compare, then gates), and the words it is told in."""

from __future__ import annotations

import math

from handmade_runs import nb, run

from nbci.gates import parse_gates
from nbci.judge import Criteria, judge, run_label
from nbci.model import GitInfo, MetricDelta
from nbci.vocabulary import describe_change, format_move, json_number

RULES = parse_gates({"acc": {"min": 0.5, "max_drop": "10%"}}, "pyproject.toml")


def test_without_a_baseline_only_the_gates_judge() -> None:
    judged = judge(run(nb("a", acc=0.4)), None, label="", criteria=Criteria(RULES))
    assert judged.comparison is None
    assert [r.check for r in judged.verdict.failures] == ["min"]
    assert "no baseline" in judged.verdict.results[1].reason


def test_with_a_baseline_the_gates_see_the_comparison() -> None:
    criteria = Criteria(RULES, lower_is_better=("acc",))
    judged = judge(run(nb("a", acc=0.6)), run(nb("a", acc=0.9)), label="main", criteria=criteria)
    assert judged.comparison is not None and judged.comparison.baseline_label == "main"
    assert judged.comparison.deltas[0].change == "improved"  # the config's direction counts
    assert [r.check for r in judged.verdict.failures] == ["max_drop"]


def test_run_label_is_the_commit_else_the_fallback() -> None:
    assert run_label(run(), "runs/a") == "runs/a"
    with_sha = run()
    with_sha = type(with_sha)(notebooks=(), created="x", git=GitInfo(sha="0123456789abcdef"))
    assert run_label(with_sha, "runs/a") == "0123456789ab"


def test_whole_numbers_change_by_whole_numbers() -> None:
    assert format_move(MetricDelta("a", "n", 100, 161, "neutral")) == "▲ +61 (+61%)"
    huge = MetricDelta("a", "n", 10**30, 10**30 + 1, "higher")
    assert describe_change(huge) == "▲ +1 (+<0.01%) improved"
    assert format_move(MetricDelta("a", "t", 1.0, 2.5, "lower")) == "▲ +1.500 (+150%)"


def test_change_words() -> None:
    assert describe_change(MetricDelta("a", "m", None, 1)) == "added"
    assert describe_change(MetricDelta("a", "m", 1, None)) == "removed"
    assert describe_change(MetricDelta("a", "m", 1, 1)) == "unchanged"
    # Text is outside MetricValue (results.json holds numbers only); the words still cope.
    text = MetricDelta("a", "m", "x", "y")  # type: ignore[arg-type]
    assert describe_change(text) == "changed"
    assert describe_change(MetricDelta("a", "loss", 1.0, math.nan, "lower")) == (
        "regressed (now NaN)"
    )
    assert describe_change(MetricDelta("a", "acc", math.nan, 1.0, "higher")) == (
        "improved (was NaN)"
    )


def test_json_numbers_are_spelled_as_in_results_json() -> None:
    assert [json_number(v) for v in (math.nan, math.inf, -math.inf, 1.5, 2)] == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.5,
        2,
    ]


def test_how_far_outside_the_range() -> None:
    from nbci.model import Range

    counts = Range(1000.0, 1000.0, 1000.0, (1000.0,) * 5)
    assert describe_change(MetricDelta("a", "n_rows", 1000, 1061, "neutral", counts)) == (
        "▲ +61 (+6.1%), 61 above the base branch's range"
    )
    spread = Range(0.89, 0.92, 0.9, (0.89, 0.9, 0.91, 0.92, 0.9))
    assert describe_change(MetricDelta("a", "acc", 0.9, 0.85, "higher", spread)) == (
        "▼ -0.05000 (-5.6%) regressed, 0.04000 below the base branch's range"
    )
    assert describe_change(MetricDelta("a", "acc", 0.9, 0.91, "higher", spread)) == (
        "▲ +0.01000 (+1.1%) within the base branch's range"
    )
