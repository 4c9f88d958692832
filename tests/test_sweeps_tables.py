"""Sweeps, headline metrics and tables against the baseline: goldens of the comment for a
3 × 3 sweep and for a changed table, and what each decides (see tests/sweep_samples.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from chart_layout import assert_fits_snugly
from goldtest import check_gold
from sweep_samples import profile_runs, sweep_runs, train_job

from nbci.compare import compare
from nbci.config import parse_config
from nbci.errors import ConfigError
from nbci.glue import table_from_dataframe
from nbci.headline import Headline, Leads
from nbci.model import GateResult, NotebookResult, Run, Verdict
from nbci.render import markdown_report, write_reports
from nbci.render.build import build_view
from nbci.render.sweep_charts import draw_sweep_chart, sweep_figure
from nbci.render.sweeps import find_sweeps
from nbci.render.table_diff import table_diff


def test_gold_sweep_against_its_baseline() -> None:
    head, _, comparison = sweep_runs()
    check_gold("report_sweep.md", markdown_report(head, comparison=comparison))


def test_gold_changed_tables() -> None:
    head, _, comparison = profile_runs()
    check_gold("report_tables.md", markdown_report(head, comparison=comparison))


# -- sweeps ----------------------------------------------------------------------


def test_a_sweep_has_a_row_per_combination_and_its_headline_metrics() -> None:
    head, _, comparison = sweep_runs()
    (sweep,) = build_view(head, comparison=comparison).sweeps
    assert sweep.table.columns == (
        "C", "model", "accuracy", "f1_macro", "train_time_s", "cv_accuracy"
    )  # fmt: skip
    assert len(sweep.table.rows) == 9
    assert sweep.jobs.size == 90 and not sweep.jobs.rows  # every metric, all folded
    texts = [[c.text for c in row] for row in sweep.table.rows]
    assert texts[4][:3] == ["1.0", "svc", "0.9550 ▲ +0.005000 (+0.53%)"]
    best = [row for row in texts if "★" in row[2]]
    assert [row[:2] for row in best] == [["1.0", "forest"]]  # the highest accuracy
    fastest = [row[:2] for row in texts if "★" in row[4]]
    assert fastest == [["0.1", "logreg"]]  # train_time_s: lower is better
    assert sweep.table.rows[8][2].tone == "worse"  # forest C=10 regressed


def test_the_best_value_follows_the_configured_direction() -> None:
    head, _, _ = sweep_runs()
    headline = Headline(higher_is_better=("train_time_s",))
    (sweep,) = build_view(head, headline=headline).sweeps
    slowest = [[c.text for c in row][:2] for row in sweep.table.rows if "★" in row[4].text]
    assert slowest == [["10.0", "forest"]]


def test_jobs_of_a_sweep_leave_the_comparison_table() -> None:
    head, _, comparison = sweep_runs()
    view = build_view(head, comparison=comparison)
    assert view.metrics == ()
    assert all(nb.metrics_elsewhere for nb in view.notebooks)


def test_one_job_per_notebook_is_no_sweep() -> None:
    run = Run((train_job("svc", 1.0),), created="2026-12-03T12:00:00Z")
    assert find_sweeps(run, Leads.of(run, None)) == ()


def test_sweep_charts_are_drawn_and_inlined(tmp_path: Path) -> None:
    head, base, comparison = sweep_runs()
    write_reports(head, tmp_path, comparison=comparison, baseline=base)
    charts = sorted(p.name for p in (tmp_path / "sweeps" / "train").glob("*.png"))
    assert charts == [
        f"{m}-C.png" for m in sorted(("accuracy", "cv_accuracy", "f1_macro", "train_time_s"))
    ]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'alt="accuracy against C"' in html
    (sweep,) = find_sweeps(head, Leads.of(head, None))
    assert draw_sweep_chart(sweep, "accuracy", "C", comparison).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("xs", "ys"),
    [
        ([1, 2, 3, 4], [0.42, 0.51, 0.47, 0.45]),
        ([0, 100, 200], [1.2e9, 4.4e9, 0.3e9]),  # an offset text (1e9) above the y axis
        ([0.001, 0.1, 10.0], [-1234.5, -20.25, 3.0]),  # a log x axis, wide negative labels
        ([100_000, 400_000, 800_000], [1e-7, 3e-7, 2e-7]),  # wide x labels, tiny values
    ],
)
def test_a_sweep_chart_fits_its_labels_snugly(xs: list[float], ys: list[float]) -> None:
    """Its margins, fitted to the labels without a layout engine (`fit_margins`)."""
    jobs = tuple(
        NotebookResult(f"s-{x}", "notebooks/s.ipynb", {"lr": x}, "ok", metrics={"val_loss": y})
        for x, y in zip(xs, ys, strict=True)
    )
    run = Run(jobs, created="2026-12-03T12:00:00Z")
    (sweep,) = find_sweeps(run, Leads.of(run, None))
    assert_fits_snugly(sweep_figure(sweep, "val_loss", "lr"), "s: val_loss against lr")


def test_a_second_render_draws_no_chart_it_drew_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweep charts are kept in the chart store as series charts are: a warm run's reports
    copy every chart (nothing is drawn), and a chart that shows something else is drawn."""
    from matplotlib.figure import Figure

    head, base, comparison = sweep_runs()
    store = tmp_path / "cache" / "charts"
    first, again = tmp_path / "one", tmp_path / "two"
    write_reports(head, first, comparison=comparison, baseline=base, chart_store=store)
    drawn: list[Figure] = []
    savefig = Figure.savefig

    def counting(figure: Figure, *args: Any, **kwargs: Any) -> None:
        drawn.append(figure)
        savefig(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", counting)

    write_reports(head, again, comparison=comparison, baseline=base, chart_store=store)

    assert drawn == []
    kept = sorted(p.relative_to(first) for p in first.glob("sweeps/*/*.png"))
    assert len(kept) == 4 and kept == sorted(
        p.relative_to(again) for p in again.glob("sweeps/*/*.png")
    )
    assert all((first / p).read_bytes() == (again / p).read_bytes() for p in kept)
    write_reports(head, tmp_path / "three", chart_store=store)  # no baseline: no dashed lines
    assert len(drawn) == 4 + len(head.notebooks)  # the sweep's, and each job's learning curve


# -- headline metrics ---------------------------------------------------------------


def test_curves_metrics_fold_unless_a_gate_names_them() -> None:
    head, base, _ = sweep_runs()
    run = Run((head.notebooks[0],), created=head.created)
    baseline = Run(
        (
            replace(
                base.notebooks[0],
                metrics={**base.notebooks[0].metrics, "learning.training.last": 0.9},
            ),
        ),
        created=head.created,
    )
    comparison = compare(run, baseline, label="main")
    (table,) = build_view(run, comparison=comparison).metrics
    assert [r[1].text for r in table.rows] == []  # the curve moved, no headline metric did
    assert table.folded_label == "4 unchanged metrics, 6 other metrics"
    gate = GateResult(
        "learning.training.last", run.notebooks[0].id, "learning.training.last", True, "ok"
    )
    (table,) = build_view(run, comparison=comparison, verdict=Verdict((gate,))).metrics
    assert [r[1].text for r in table.rows] == ["learning.training.last"]


def test_headline_globs_choose_and_order_the_metrics() -> None:
    head, _, _ = sweep_runs()
    headline = Headline(globs=("f1_*", "accuracy"))
    (sweep,) = build_view(head, headline=headline).sweeps
    assert sweep.table.columns == ("C", "model", "f1_macro", "accuracy")
    entry = Headline(globs=("accuracy",), entries=(("notebooks/train.ipynb", ("cv_*",)),))
    (sweep,) = build_view(head, headline=entry).sweeps
    assert sweep.table.columns == ("C", "model", "cv_accuracy")


def test_headline_in_the_config(tmp_path: Path) -> None:
    config = parse_config(
        {"headline": ["accuracy", "f1_*"], "notebook": [{"path": "a.ipynb", "headline": "loss"}]},
        root=tmp_path,
        file="nbci.toml",
    )
    assert Headline.of(config).globs == ("accuracy", "f1_*")
    assert Headline.of(config).globs_for("a.ipynb") == ("loss",)
    with pytest.raises(ConfigError, match="headline"):
        parse_config({"headline": 3}, root=tmp_path, file="nbci.toml")


# -- tables ---------------------------------------------------------------------------


def test_an_equal_table_is_named_only() -> None:
    head, _, comparison = profile_runs()
    (nb,) = build_view(head, comparison=comparison).notebooks
    assert nb.unchanged_tables == ("columns",)
    assert [s.name for s in nb.scraps] == ["class_balance", "pixel_stats"]


def test_a_changed_table_shows_changed_cells_and_rows() -> None:
    head, base, _ = profile_runs()
    diff = table_diff(
        head.notebooks[0].scraps["class_balance"].value,
        base.notebooks[0].scraps["class_balance"].value,
    )
    assert diff is not None
    assert diff.columns == ("digit", "change", "count", "share")
    assert [[c.text for c in row] for row in diff.rows] == [
        ["1", "changed", "182 → 150", "0.1013 → 0.08580"],
        ["3", "added", "183", "0.1018"],
        ["2", "removed", "177", "0.09850"],
    ]
    assert diff.note.startswith("1 of 3 rows changed, 1 added, 1 removed")


def test_rows_without_an_index_are_matched_by_position() -> None:
    head = {"columns": ["a", "b"], "rows": [[1, "x"], [2, "y"], [3, "z"]], "total_rows": 3}
    base = {"columns": ["a", "b"], "rows": [[1, "x"], [5, "y"]], "total_rows": 2}
    diff = table_diff(head, base)
    assert diff is not None
    assert [[c.text for c in row] for row in diff.rows] == [
        ["2", "changed", "5 → 2"],
        ["3", "added", "3"],
    ]
    assert "matched by position" in diff.note


def test_a_changed_table_is_bounded() -> None:
    big = {
        "columns": ["i", "v"],
        "rows": [[i, i] for i in range(1000)],
        "total_rows": 5000,
        "index": 1,
    }
    moved = {**big, "rows": [[i, i + 1] for i in range(1000)]}
    diff = table_diff(moved, big)
    assert diff is not None and len(diff.rows) == 200
    assert "showing 200 of 1,000" in diff.note and "the first 1000 rows compared" in diff.note


def test_a_dataframe_index_is_recorded() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", "b"], name="k"))
    assert table_from_dataframe(frame)["index"] == 1
    assert "index" not in table_from_dataframe(pd.DataFrame({"v": [1, 2]}))


def test_a_failed_combination_keeps_its_row_and_says_so() -> None:
    head, _, _ = sweep_runs()
    failed = replace(head.notebooks[4], status="failed", metrics={}, series=())
    run = replace(head, notebooks=(*head.notebooks[:4], failed, *head.notebooks[5:]))
    (sweep,) = build_view(run).sweeps
    row = sweep.table.rows[4]
    assert row[0].status == "failed" and row[0].anchor == "nb-5"
    assert [c.text for c in row[2:]] == ["–"] * 4
    text = markdown_report(run)
    assert "| ❌ 1.0 | svc | – | – | – | – |" in text


def test_names_from_notebooks_are_escaped_in_a_sweep() -> None:
    head, _, _ = sweep_runs()
    hostile = "acc|<b>@team"
    run = replace(
        head,
        notebooks=tuple(
            replace(nb, metrics={hostile: nb.metrics["accuracy"]}, series=())
            for nb in head.notebooks
        ),
    )
    text = markdown_report(run)
    assert "| C | model | acc\\|&lt;b&gt;@\u200bteam |" in text  # no cell break, tag or mention


def test_trend_charts_go_to_headline_and_gated_metrics_first() -> None:
    from nbci.model import Comparison, MetricDelta, Range
    from nbci.render.trends import trend_deltas

    job = train_job("svc", 1.0)
    run = Run((job,), created="2026-12-03T12:00:00Z")
    spread = Range(0.0, 1.0, 0.5, (0.4, 0.5, 0.6, 0.5, 0.5))
    deltas = tuple(
        MetricDelta(job.id, metric, 0.5, 2.0, "higher", spread)
        for metric in (
            "learning.training.last",
            "learning.training.min",
            "accuracy",
            "train_time_s",
        )
    )
    comparison = Comparison("main", deltas)
    leads = Leads.of(run, None)
    assert [d.metric for d in trend_deltas(comparison, None, leads)] == [
        "accuracy",
        "train_time_s",
        "learning.training.last",
        "learning.training.min",
    ]
    gate = GateResult("learning.training.min", job.id, "learning.training.min", True, "ok")
    gated = Leads.of(run, Headline(globs=("train_*",)), Verdict((gate,)))
    assert [d.metric for d in trend_deltas(comparison, None, gated)][:2] == [
        "learning.training.min",
        "train_time_s",
    ]


def test_a_notebooks_own_table_puts_its_headline_metrics_first() -> None:
    job = train_job("svc", 1.0)
    run = Run((job,), created="2026-12-03T12:00:00Z")
    (nb,) = build_view(run, headline=Headline(globs=("cv_accuracy",))).notebooks
    assert nb.metrics is not None
    assert [row[0].text for row in nb.metrics.rows][:2] == ["cv_accuracy", "accuracy"]
