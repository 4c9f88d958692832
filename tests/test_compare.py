"""compare: every metric of every job, head against baseline, nothing dropped."""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import examples
from handmade_runs import nb, run
from hypothesis import given, settings
from hypothesis import strategies as st

from nbci.compare import DEFAULT_HIGHER, DEFAULT_LOWER, compare, direction_of
from nbci.model import Comparison, MetricDelta, Run, Status

NAN = float("nan")
INF = float("inf")


# -- direction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("accuracy", "higher"),
        ("val_accuracy", "higher"),
        ("Accuracy", "higher"),
        ("f1", "higher"),
        ("macro_f1", "higher"),
        ("scores.f1", "higher"),
        ("roc_auc", "higher"),
        ("precision", "higher"),
        ("recall", "higher"),
        ("r2", "higher"),
        ("test_r2", "higher"),
        ("loss", "lower"),
        ("val_loss", "lower"),
        ("error", "lower"),
        ("mae", "lower"),
        ("mse", "lower"),
        ("rmse", "lower"),
        ("val_rmse", "lower"),
        ("train_time", "lower"),
        ("fit_time_s", "lower"),
        ("accuracy_loss", "lower"),  # a loss first
        ("error2", "lower"),  # not caught by r2
        ("epochs", "neutral"),
        ("n_rows", "neutral"),
        ("lr", "neutral"),
    ],
)
def test_default_directions(metric: str, expected: str) -> None:
    assert direction_of(metric) == expected


def test_config_globs_win_over_defaults() -> None:
    assert direction_of("loss_reduction", higher=["loss_reduction"]) == "higher"
    assert direction_of("accuracy_drift", lower=["*_drift"]) == "lower"
    assert direction_of("throughput", lower=["throughput"]) == "lower"
    assert direction_of("coverage", higher=["cover*"]) == "higher"


def test_within_config_exact_names_beat_globs_and_lower_globs_beat_higher() -> None:
    assert direction_of("my_loss", higher=["my_loss"], lower=["*loss*"]) == "higher"
    assert direction_of("my_loss", higher=["my_*"], lower=["*loss"]) == "lower"


def test_dotted_metric_matches_by_last_segment_too() -> None:
    assert direction_of("eval.loss") == "lower"
    assert direction_of("scores.custom", higher=["custom"]) == "higher"
    # The whole name first: a config glob on the dotted name beats the segment default.
    assert direction_of("drift.loss", higher=["drift.*"]) == "higher"


def test_default_lists_are_lowercase_globs() -> None:
    for glob in (*DEFAULT_HIGHER, *DEFAULT_LOWER):
        assert glob == glob.lower()


# -- compare ---------------------------------------------------------------------


def delta(comparison: Comparison, job_id: str, metric: str) -> MetricDelta:
    """The delta of a metric the test knows is there."""
    found = comparison.delta(job_id, metric)
    assert found is not None, f"no delta for {job_id}/{metric}"
    return found


def test_joins_jobs_and_metrics() -> None:
    head = run(nb("train", accuracy=0.92, loss=0.25))
    base = run(nb("train", accuracy=0.90, loss=0.25))
    comparison = compare(head, base, label="main")
    assert comparison.baseline_label == "main"
    assert comparison.jobs == ()
    accuracy = delta(comparison, "train", "accuracy")
    assert accuracy == MetricDelta("train", "accuracy", 0.90, 0.92, "higher")
    assert accuracy.change == "improved"
    assert accuracy.absolute == pytest.approx(0.02)
    assert accuracy.relative == pytest.approx(0.02 / 0.90)
    assert delta(comparison, "train", "loss").change == "unchanged"


def test_regression_follows_direction() -> None:
    comparison = compare(
        run(nb("t", accuracy=0.8, loss=0.5, epochs=4)),
        run(nb("t", accuracy=0.9, loss=0.4, epochs=3)),
        label="b",
    )
    assert [d.change for d in comparison.deltas] == ["regressed", "regressed", "changed"]
    assert [d.metric for d in comparison.regressions] == ["accuracy", "loss"]


def test_config_direction_reaches_deltas() -> None:
    comparison = compare(
        run(nb("t", epochs=4)), run(nb("t", epochs=3)), label="b", lower=["epochs"]
    )
    assert delta(comparison, "t", "epochs").change == "regressed"


def test_added_and_removed_jobs_and_metrics_are_kept() -> None:
    head = run(nb("train", accuracy=0.9, f1=0.8), nb("new", rows=3))
    base = run(nb("train", accuracy=0.9, auc=0.7), nb("gone", rows=5))
    comparison = compare(head, base, label="main")
    assert [(d.job_id, d.metric, d.change) for d in comparison.deltas] == [
        ("train", "accuracy", "unchanged"),
        ("train", "f1", "added"),
        ("train", "auc", "removed"),
        ("new", "rows", "added"),
        ("gone", "rows", "removed"),
    ]
    assert comparison.added_jobs == ("new",)
    assert comparison.removed_jobs == ("gone",)
    assert comparison.newly_failing == ()


def test_status_changes_call_out_newly_failing_and_fixed() -> None:
    head = run(nb("a", "failed"), nb("b", "ok"), nb("c", "timeout"), nb("d", "ok"))
    base = run(nb("a", "ok", x=1), nb("b", "died"), nb("c", "failed"), nb("d", "ok"))
    comparison = compare(head, base, label="main")
    changes = {j.job_id: (j.baseline_status, j.status) for j in comparison.jobs}
    assert changes == {"a": ("ok", "failed"), "b": ("died", "ok"), "c": ("failed", "timeout")}
    assert comparison.newly_failing == ("a",)
    assert [j.job_id for j in comparison.jobs if j.fixed] == ["b"]
    assert delta(comparison, "a", "x").change == "removed"


def test_nan_and_infinite_values() -> None:
    head = run(nb("t", loss=NAN, acc=NAN, f1=0.5, auc=INF, mse=INF, r2=0.3))
    base = run(nb("t", loss=0.3, acc=NAN, f1=NAN, auc=0.9, mse=INF, r2=-INF))
    comparison = compare(head, base, label="b")
    change = {d.metric: d.change for d in comparison.deltas}
    assert change == {
        "loss": "regressed",  # became NaN
        "acc": "unchanged",  # NaN both sides
        "f1": "improved",  # stopped being NaN
        "auc": "improved",
        "mse": "unchanged",
        "r2": "improved",
    }
    nan_move = delta(comparison, "t", "loss").absolute
    assert nan_move is not None and math.isnan(nan_move)
    assert delta(comparison, "t", "auc").absolute == INF
    assert delta(comparison, "t", "r2").relative is None  # infinite baseline


def test_zero_baseline_has_no_relative_change() -> None:
    comparison = compare(
        run(nb("t", loss=0.1, flag=True)), run(nb("t", loss=0, flag=False)), label="b"
    )
    loss = delta(comparison, "t", "loss")
    assert loss.absolute == pytest.approx(0.1)
    assert loss.relative is None
    assert loss.change == "regressed"
    assert delta(comparison, "t", "flag").relative is None


def test_string_and_bool_metrics_do_not_crash() -> None:
    head = run(nb("t", note="fast", converged=True, accuracy="n/a"))
    base = run(nb("t", note="slow", converged=False, accuracy=0.9))
    comparison = compare(head, base, label="b")
    note = delta(comparison, "t", "note")
    assert (note.absolute, note.relative, note.change) == (None, None, "changed")
    converged = delta(comparison, "t", "converged")
    assert converged.absolute == 1.0
    assert converged.change == "changed"  # neutral
    assert delta(comparison, "t", "accuracy").change == "changed"  # not a number any more


def test_huge_ints_do_not_overflow() -> None:
    comparison = compare(run(nb("t", rows=10**400)), run(nb("t", rows=1)), label="b")
    assert delta(comparison, "t", "rows").absolute is None
    assert delta(comparison, "t", "rows").change == "changed"


def test_empty_runs() -> None:
    comparison = compare(run(), run(), label="b")
    assert comparison.deltas == () and comparison.jobs == ()


# -- properties ------------------------------------------------------------------

metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.text(max_size=5),
)
metric_maps = st.dictionaries(st.text(max_size=6), metric_values, max_size=4)
statuses = st.sampled_from(["ok", "failed", "timeout", "died", "invalid", "interrupted"])
job_maps = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.tuples(statuses, metric_maps))


def _run_of(jobs: dict[str, tuple[Status, dict[str, Any]]]) -> Run:
    return run(*(nb(job_id, status, **metrics) for job_id, (status, metrics) in jobs.items()))


@settings(max_examples=examples(200), deadline=None)
@given(head=job_maps, base=job_maps, higher=st.lists(st.text(max_size=4), max_size=2))
def test_compare_keeps_every_metric_and_never_raises(
    head: dict[str, Any], base: dict[str, Any], higher: list[str]
) -> None:
    comparison = compare(_run_of(head), _run_of(base), label="b", higher=higher)
    expected = {(j, m) for side in (head, base) for j, (_, ms) in side.items() for m in ms}
    pairs = [(d.job_id, d.metric) for d in comparison.deltas]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == expected
    for delta in comparison.deltas:
        delta.absolute, delta.relative  # noqa: B018  # computing them must not raise
        assert delta.change in ("improved", "regressed", "unchanged", "changed", "added", "removed")
    assert set(comparison.added_jobs) == set(head) - set(base)
    assert set(comparison.removed_jobs) == set(base) - set(head)
