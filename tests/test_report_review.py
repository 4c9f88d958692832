"""Reports with curves and figures against a baseline: golden markdown and what they hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from goldtest import check_gold
from review_samples import review_runs, square_png, without_figures, write_compared

from nbci.model import Run
from nbci.render import write_reports
from nbci.render.charts import MAX_COMMENT_CHARTS
from nbci.series import MAX_POINTS

Written = tuple[Path, Run, Run]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """Both reports of the review run against its baseline, written into `<tmp>/out`."""
    return write_compared(tmp_path_factory.mktemp("review"))


def test_gold_report_with_curves_and_figures(compared: Written) -> None:
    check_gold("report_review.md", (compared[0] / "report.md").read_text(encoding="utf-8"))


def test_every_group_is_charted_the_changed_ones_first(compared: Written) -> None:
    out, _, _ = compared
    charts = sorted(p.relative_to(out).as_posix() for p in (out / "charts").rglob("*.png"))

    assert charts == [
        "charts/sweep/lr.png",
        "charts/train/history.png",
        "charts/train/long.png",
    ]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert markdown.index("charts/train/history.png") < markdown.index("charts/sweep/lr.png")


def test_the_long_series_is_stored_downsampled(compared: Written) -> None:
    _, run, _ = compared
    (long,) = run.notebooks[0].series[1].series
    assert long.points == 50_000 and len(long.y) <= MAX_POINTS


def test_figures_are_sorted_by_what_changed(compared: Written) -> None:
    out, _, _ = compared
    markdown = (out / "report.md").read_text(encoding="utf-8")

    assert "diffs/train/moved.png" in markdown  # baseline | this run | difference
    assert "size changed from 40×30 to 50×30" in markdown  # no difference image for it
    assert "diffs/train/resized.png" not in markdown
    assert "(added)" in markdown and "Removed figures: gone" in markdown
    assert "1 unchanged figure</summary>\n\nsame" in markdown
    assert "figures/train/same.png" not in markdown  # named only, not shown
    assert (out / "diffs" / "train" / "moved.png").is_file()


def test_the_comment_shows_a_bounded_number_of_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbci.render import markdown as markdown_module

    monkeypatch.setattr(markdown_module, "MAX_COMMENT_CHARTS", 1)
    run, baseline = review_runs(tmp_path / "out", tmp_path / "base")
    write_reports(run, tmp_path / "out", baseline=baseline)

    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert markdown.count("charts/") == 1
    assert markdown.count("1 more chart in report.html") == 2  # train's second, sweep's
    assert html.count('alt="history"') + html.count('alt="long"') + html.count('alt="lr"') == 3
    assert MAX_COMMENT_CHARTS == 8  # the real bound


def test_without_a_baseline_the_runs_own_curves(tmp_path: Path) -> None:
    run, _ = review_runs(tmp_path / "out", tmp_path / "base")

    write_reports(without_figures(run), tmp_path / "out")

    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert markdown.count("charts/") == 3 and "unchanged" not in markdown
    check_gold("report_curves.md", markdown)


def test_a_huge_run_with_curves_and_figures_fits_a_comment() -> None:
    from nbci.model import Chart, FigureChange, FigureState, NotebookResult
    from nbci.render import markdown_report
    from nbci.render.visuals import visuals_by_job

    jobs = [f"job-{i:03}" for i in range(300)]
    run = Run(
        notebooks=tuple(
            NotebookResult(id=j, path=f"{j}.ipynb", parameters={}, status="ok") for j in jobs
        ),
        created="2026-12-01T00:00:00Z",
    )
    charts = [Chart(j, f"group {k}", f"charts/{j}/g{k}.png", 1.0) for j in jobs for k in range(5)]
    states: tuple[FigureState, ...] = ("changed", "added", "unchanged", "removed")
    changes = [
        FigureChange(j, f"fig {k}", state, f"figures/{j}/f{k}.png", f"figures/{j}/f{k}.png")
        for j in jobs
        for k, state in enumerate(states)
    ]

    text = markdown_report(run, visuals=visuals_by_job(charts, changes))

    assert len(text) <= 65_000
    assert 0 < text.count('src="charts/') <= MAX_COMMENT_CHARTS


def test_hostile_series_and_figure_names_are_escaped_and_kept_inside(tmp_path: Path) -> None:
    from nbci.model import Figure, NotebookResult
    from nbci.series import recognise

    nasty = '<img src=x onerror="alert(1)"> @team #12 ../../escape'
    found = recognise(nasty, {"$\\frac{": [1.0, 2.0]})
    assert found is not None
    figure = tmp_path / "out" / "figures" / "train" / "f.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(square_png((1, 2, 3)))
    run = Run(
        notebooks=(
            NotebookResult(
                id="train",
                path="t.ipynb",
                parameters={},
                status="ok",
                series=(found.group,),
                figures=(Figure(nasty, "figures/train/f.png"),),
            ),
        ),
        created="2026-12-01T00:00:00Z",
    )

    write_reports(run, tmp_path / "out")

    charts = list((tmp_path / "out" / "charts").rglob("*.png"))
    assert len(charts) == 1 and charts[0].is_relative_to(tmp_path / "out" / "charts" / "train")
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in markdown and "@team" not in markdown
    assert 'onerror="alert' not in html
