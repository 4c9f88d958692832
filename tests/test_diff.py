"""`nbci diff` output: markdown pinned by golden files, JSON by shape.

Golden files live in tests/gold/ (see tests/goldtest.py for updating them).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import examples
from goldtest import check_gold
from handmade_runs import nb, run
from hypothesis import given, settings
from hypothesis import strategies as st

from nbci.compare import compare
from nbci.gates import evaluate, parse_gates
from nbci.model import Comparison, MetricDelta
from nbci.render import markdown_report
from nbci.render.diff import DIFF_SCHEMA, diff_json, diff_markdown, for_terminal

NAN = float("nan")
INF = float("inf")


BASE = run(
    nb("train-lr-0.1", accuracy=0.9512, loss=0.2103, epochs=10, fit_time_s=12.5, auc=0.97),
    nb("train-lr-0.01", accuracy=0.93, loss=0.25, **{"scores.f1": 0.81, "scores.recall": NAN}),
    nb("eval", mse=0.0, rows=150000, status_note="calibrated"),
    nb("prep", rows=1000),
    nb("old-notebook", accuracy=0.5),
    nb("flaky", "failed"),
)
HEAD = run(
    nb("train-lr-0.1", accuracy=0.9398, loss=0.2350, epochs=10, fit_time_s=9.75, auc=0.97),
    nb("train-lr-0.01", accuracy=0.9355, loss=NAN, **{"scores.f1": 0.81, "scores.recall": 0.7}),
    nb("eval", mse=0.0012, rows=150000, status_note="not <b>calibrated</b> @alice #12"),
    nb("prep", "timeout"),
    nb("flaky", accuracy=0.88),
    nb("new | job", **{"weird|name\nwith `code` [x](y)": 1}),
)
GATES = {
    "accuracy": {"min": 0.93, "max_drop": "1%"},
    "train-*:loss": {"max": 0.3},
    "*f1*": {"required": True},
}


@pytest.fixture
def comparison() -> Comparison:
    return compare(HEAD, BASE, label="main (abc1234)")


def test_markdown_matches_gold(comparison: Comparison) -> None:
    check_gold("diff.md", diff_markdown(comparison))


def test_markdown_all_matches_gold(comparison: Comparison) -> None:
    check_gold("diff-all.md", diff_markdown(comparison, show_all=True))


def test_markdown_with_gates_matches_gold(comparison: Comparison) -> None:
    verdict = evaluate(parse_gates(GATES, "pyproject.toml"), HEAD, comparison)
    check_gold("diff-gates.md", diff_markdown(comparison, verdict=verdict))


def test_a_terminal_gets_characters_not_entities(comparison: Comparison) -> None:
    verdict = evaluate(parse_gates(GATES, "pyproject.toml"), HEAD, comparison)
    text = for_terminal(diff_markdown(comparison, verdict=verdict))
    assert "dropped 1.2% (0.9512 → 0.9398) > max_drop 1%" in text
    assert "not <b>calibrated</b>" in text and "&" not in text
    assert for_terminal("&amp;#27; &amp;lt;") == "&#27; &lt;"  # one level: no control comes back


def test_hidden_rows_are_counted(comparison: Comparison) -> None:
    text = diff_markdown(comparison)
    unchanged = [d for d in comparison.deltas if d.change == "unchanged"]
    assert f"{len(unchanged)} unchanged metrics hidden" in text
    assert "| train-lr-0.1 | epochs |" not in text
    assert "| train-lr-0.1 | epochs | 10 | 10 | unchanged |" in diff_markdown(
        comparison, show_all=True
    )


def test_regressions_are_marked_in_words_not_only_colour(comparison: Comparison) -> None:
    text = diff_markdown(comparison)
    accuracy = "| train-lr-0.1 | accuracy | 0.9512 | 0.9398 | **▼ -0.01140 (-1.2%) regressed** |"
    assert accuracy in text
    assert "| train-lr-0.1 | fit_time_s | 12.50 | 9.750 | ▼ -2.750 (-22%) improved |" in text
    assert "| train-lr-0.01 | loss | 0.2500 | NaN | **regressed (now NaN)** |" in text
    assert "- ❌ prep timed out now (passed on the baseline)" in text


def test_diff_and_report_word_a_change_alike(comparison: Comparison) -> None:
    """The same change reads the same in `nbci diff` and in the report (issue 15)."""
    whole = compare(run(nb("a", n=161, t=2.0)), run(nb("a", n=100, t=1.0)), label="main")
    text = diff_markdown(whole)
    assert "| a | n | 100 | 161 | ▲ +61 (+61%) |" in text
    report = markdown_report(run(nb("a", n=161, t=2.0)), comparison=whole)
    assert "| a | n | 100 | 161 | ▲ +61 (+61%) |" in report
    assert "+61.00" not in text + report


def test_different_parameters_are_said() -> None:
    base = run(replace(nb("train", acc=0.9), parameters={"lr": 0.1, "opt": "adam"}))
    head = run(replace(nb("train", acc=0.8), parameters={"lr": 0.01, "seed": 3}))
    comparison = compare(head, base, label="main")
    line = (
        "Parameters differ from the baseline: "
        "train: lr 0.1 (injected) → 0.01 (injected), seed (default) → 3 (injected), "
        'opt "adam" (injected) → (default)'
    )
    assert f"- ℹ️ {line}" in diff_markdown(comparison)
    assert line in markdown_report(head, comparison=comparison)
    assert diff_json(comparison)["parameters"] == [
        {"job": "train", "name": "lr", "baseline": "0.1", "value": "0.01"}
        | {"baseline_origin": "injected", "origin": "injected"},
        {"job": "train", "name": "seed", "baseline": None, "value": "3"}
        | {"baseline_origin": "default", "origin": "injected"},
        {"job": "train", "name": "opt", "baseline": '"adam"', "value": None}
        | {"baseline_origin": "injected", "origin": "default"},
    ]
    same = compare(base, base, label="main")
    assert "Parameters differ" not in diff_markdown(same)
    assert same.parameters == ()


def test_every_table_row_keeps_five_columns(comparison: Comparison) -> None:
    for line in diff_markdown(comparison, show_all=True).splitlines():
        if line.startswith("|"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 6, line


def test_nothing_changed() -> None:
    same = compare(run(nb("a", x=1, y=2)), run(nb("a", x=1, y=2)), label="main")
    assert diff_markdown(same) == (
        "### nbci diff against main\n\n2 unchanged.\n\n"
        "Every metric is unchanged (2); `--all` lists them.\n"
    )
    one_hidden = compare(run(nb("a", x=1, y=3)), run(nb("a", x=1, y=2)), label="main")
    assert diff_markdown(one_hidden).endswith("1 unchanged metric hidden; `--all` shows it.\n")


def test_no_metrics_at_all() -> None:
    empty = compare(run(nb("a")), run(), label="main")
    assert diff_markdown(empty) == (
        "### nbci diff against main\n\n- ℹ️ New, not in the baseline: a\n\n"
        "No metrics in either run.\n"
    )


def test_gates_in_the_diff() -> None:
    head = run(nb("a", acc=0.9), nb("b", acc=0.1))
    comparison = compare(head, head, label="main")
    verdict = evaluate(parse_gates({"acc": {"min": 0.5}}, "x"), head, comparison)
    text = diff_markdown(comparison, verdict=verdict)
    assert "- ❌ Gate failed: b:acc 0.1000 &lt; min 0.5" in text
    assert "**Gates: 1 of 2 failed**" in text
    assert "a:acc 0.9000 ≥ min 0.5" not in text
    every = diff_markdown(comparison, verdict=verdict, show_all=True)
    assert "| **failed** | acc | **b:acc 0.1000 &lt; min 0.5** |" not in every
    assert "| passed | acc | a:acc 0.9000 ≥ min 0.5 |" in every
    none = evaluate((), head, comparison)
    assert "**Gates: none apply**" in diff_markdown(comparison, verdict=none)


def test_json_special_numbers_are_spelled_as_in_results_json(tmp_path: Path) -> None:
    from nbci.results import read_run, write_run

    head = run(nb("a", x=INF, y=-INF, z=NAN))
    write_run(head, tmp_path)
    stored = json.loads((tmp_path / "results.json").read_text())["notebooks"][0]["metrics"]
    base = run(nb("a", x=1.0, y=1.0, z=1.0))
    metrics = diff_json(compare(read_run(tmp_path), base, label="main"))["metrics"]
    assert {m["metric"]: m["value"] for m in metrics} == stored
    assert stored == {"x": "Infinity", "y": "-Infinity", "z": "NaN"}


def test_json_shape(comparison: Comparison) -> None:
    verdict = evaluate(parse_gates(GATES, "pyproject.toml"), HEAD, comparison)
    data = json.loads(json.dumps(diff_json(comparison, verdict=verdict), allow_nan=False))
    assert data["schema"] == DIFF_SCHEMA
    assert data["baseline"] == "main (abc1234)"
    assert data["added_jobs"] == ["new | job"]
    assert data["removed_jobs"] == ["old-notebook"]
    assert data["newly_failing"] == ["prep"]
    assert {"id": "flaky", "baseline_status": "failed", "status": "ok", "newly_failing": False,
            "fixed": True} in data["jobs"]  # fmt: skip
    assert len(data["metrics"]) == len(comparison.deltas)  # unchanged ones too
    loss = next(m for m in data["metrics"] if m["job"] == "train-lr-0.01" and m["metric"] == "loss")
    assert loss == {
        "job": "train-lr-0.01",
        "metric": "loss",
        "baseline": 0.25,
        "value": "NaN",
        "absolute": "NaN",
        "relative": "NaN",
        "direction": "lower",
        "change": "regressed",
        "range": None,
        "inside_range": None,
    }
    mse = next(m for m in data["metrics"] if m["metric"] == "mse")
    assert (mse["absolute"], mse["relative"], mse["change"]) == (0.0012, None, "regressed")
    assert data["summary"] == {
        change: sum(d.change == change for d in comparison.deltas)
        for change in (
            "regressed",
            "improved",
            "changed",
            "within",
            "added",
            "removed",
            "unchanged",
        )
    }
    assert data["gates"]["passed"] is False
    assert set(data["gates"]["results"][0]) == {
        "rule", "job", "metric", "check", "passed", "reason"
    }  # fmt: skip


def test_json_without_verdict_has_no_gates(comparison: Comparison) -> None:
    assert "gates" not in diff_json(comparison)


hostile = st.text(
    alphabet=st.sampled_from(list("ab|`*_[]()<>&@#!\n\r\\-=~ 1")) | st.characters(), max_size=12
)
values = st.one_of(
    st.floats(), st.integers(min_value=-(10**400), max_value=10**400), st.booleans(), hostile
)


@settings(max_examples=examples(150), deadline=None)
@given(
    deltas=st.lists(
        st.builds(
            MetricDelta,
            job_id=hostile,
            metric=hostile,
            baseline=st.none() | values,
            value=st.none() | values,
            direction=st.sampled_from(["higher", "lower", "neutral"]),
        ),
        max_size=5,
    ),
    label=hostile,
)
def test_hostile_names_and_values_never_break_a_row(deltas: list[MetricDelta], label: str) -> None:
    comparison = Comparison(baseline_label=label, deltas=tuple(deltas))
    text = diff_markdown(comparison, show_all=True)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == (len(deltas) + 2 if deltas else 0)
    for line in rows:
        assert len(re.findall(r"(?<!\\)\|", line)) == 6, line
    # nothing that could open a tag or a comment (`+<0.01%` is our own text, not markup)
    assert not re.search(r"<(?!br>|0\.01%)", text)
    assert not re.search(r"@[A-Za-z0-9]", text)
    json.dumps(diff_json(comparison), allow_nan=False)
