"""History (issue 13): each metric against the base branch's recent runs, locally.

Run folders are written as `nbci run` writes them (results.json), then judged
through the command line with `--history`, oldest first.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from handmade_runs import nb, run
from hypothesis import given, settings
from hypothesis import strategies as st

from nbci.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from nbci.compare import compare
from nbci.config import load_config
from nbci.history import MIN_RUNS, metric_ranges, robust_range
from nbci.results import write_run

NOISY = [11.2, 12.9, 10.4, 13.8, 11.9, 12.2, 10.9, 13.1, 12.6, 11.5, 12.0, 13.4]
"""A timing that wobbles between about 10 and 14 seconds on unchanged code."""


def folder(root: Path, name: str, **metrics: float) -> Path:
    out = root / name
    write_run(run(nb("train", **metrics)), out)
    return out


def history(root: Path, values: list[float]) -> list[str]:
    """One run folder per value, oldest first; `accuracy` stays put."""
    return [
        str(folder(root, f"h{i:02d}", train_time_s=v, accuracy=0.9)) for i, v in enumerate(values)
    ]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def diff_json(project: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["diff", *args, "--json"]) == EXIT_OK
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def metric(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in data["metrics"] if m["metric"] == name)


def test_a_noisy_change_inside_the_range_is_not_a_regression(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = folder(project, "base", train_time_s=11.0, accuracy=0.9)
    head = folder(project, "head", train_time_s=13.5, accuracy=0.9)
    runs = history(project, NOISY)
    assert main(["diff", str(base), str(head)]) == EXIT_OK
    alone = capsys.readouterr().out
    assert "▲ +2.500 (+23%) regressed" in alone  # one baseline calls noise a regression

    assert main(["diff", str(base), str(head), "--history", *runs]) == EXIT_OK
    text = capsys.readouterr().out
    assert "▲ +2.500 (+23%) within the base branch's range |" in text
    assert "regressed" not in text
    assert "| Base branch range |" in text
    data = diff_json(project, capsys, str(base), str(head), "--history", *runs)
    timing = metric(data, "train_time_s")
    assert timing["change"] == "within" and timing["inside_range"] is True
    assert timing["range"]["runs"] == len(NOISY)
    assert timing["range"]["low"] <= 10.4 and timing["range"]["high"] >= 13.8
    assert data["history_runs"] == len(NOISY)
    assert data["summary"]["regressed"] == 0 and data["summary"]["within"] == 1


def test_a_real_step_outside_the_range_is_a_regression_and_says_how_far(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = folder(project, "base", train_time_s=11.0)
    head = folder(project, "head", train_time_s=40.0)
    runs = history(project, NOISY)
    data = diff_json(project, capsys, str(base), str(head), "--history", *runs)
    timing = metric(data, "train_time_s")
    assert timing["change"] == "regressed" and timing["inside_range"] is False
    assert main(["diff", str(base), str(head), "--history", *runs]) == EXIT_OK
    text = capsys.readouterr().out
    high = timing["range"]["high"]
    from nbci.vocabulary import format_number

    assert f"regressed, {format_number(40.0 - high)} above the base branch's range" in text


@pytest.mark.parametrize("count", [1, MIN_RUNS - 1])
def test_fewer_than_five_runs_change_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], count: int
) -> None:
    base = folder(project, "base", train_time_s=11.0)
    head = folder(project, "head", train_time_s=13.5)
    runs = history(project, NOISY[:count])
    with_history = diff_json(project, capsys, str(base), str(head), "--history", *runs)
    without = diff_json(project, capsys, str(base), str(head))
    assert metric(with_history, "train_time_s")["change"] == "regressed"
    assert metric(with_history, "train_time_s")["range"] is None
    assert with_history["metrics"] == without["metrics"]


def test_the_verdict_line_counts_only_changes_outside(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = folder(project, "base", train_time_s=11.0, accuracy=0.9, loss=0.30)
    head = folder(project, "head", train_time_s=13.5, accuracy=0.8, loss=0.31)
    runs = [
        str(folder(project, f"h{i:02d}", train_time_s=t, accuracy=0.9, loss=0.30 + i / 1000))
        for i, t in enumerate(NOISY)
    ]
    assert main(["report", str(head), "--baseline", str(base), "--history", *runs]) == EXIT_OK
    report = (head / "report.md").read_text()
    verdict_line = report.splitlines()[2]
    assert "1 regression ·" in verdict_line  # accuracy fell far outside its (flat) range
    assert "2 within the base branch's range" in verdict_line  # the timing and the loss
    assert "improvement" not in verdict_line
    assert "History" in (head / "report.html").read_text()


def test_gate_outside_range(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "nbci.toml").write_text(
        "[gates]\n"
        'train_time_s = { max_rise = "10%", outside_range = true }\n'
        'accuracy = { max_drop = "1%" }\n'
    )
    base = folder(project, "base", train_time_s=11.0, accuracy=0.9)
    noisy = folder(project, "noisy", train_time_s=13.5, accuracy=0.9)
    slow = folder(project, "slow", train_time_s=40.0, accuracy=0.9)
    runs = history(project, NOISY)
    assert main(["diff", str(base), str(noisy), "--gates", "--history", *runs]) == EXIT_OK
    text = capsys.readouterr().out
    assert "**Gates: all 2 passed**" in text
    data = diff_json(project, capsys, str(base), str(noisy), "--gates", "--history", *runs)
    rise = next(r for r in data["gates"]["results"] if r["check"] == "max_rise")
    assert rise["passed"] and "within the base branch's range" in rise["reason"]
    assert rise["reason"].endswith("(outside_range)")

    assert main(["diff", str(base), str(slow), "--gates", "--history", *runs]) == EXIT_FAILED
    assert "Gate failed: train:train_time_s rose" in capsys.readouterr().out
    # without history the same noisy rise fails the gate as it always did
    assert main(["diff", str(base), str(noisy), "--gates"]) == EXIT_FAILED
    capsys.readouterr()


def test_outside_range_needs_a_move_bound(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "nbci.toml").write_text("[gates]\nacc = { min = 0.5, outside_range = true }\n")
    base = folder(project, "base", acc=0.9)
    assert main(["diff", str(base), str(base)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "outside_range = true qualifies max_drop or max_rise" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "ok"), [("0", True), ("20", True), ("-1", False), ("true", False), ('"5"', False)]
)
def test_history_setting(project: Path, value: str, ok: bool) -> None:
    (project / "nbci.toml").write_text(f"history = {value}\n")
    if ok:
        assert load_config(project).history == int(value)
    else:
        with pytest.raises(Exception, match="history: expected a whole number of commits"):
            load_config(project)


def test_an_unreadable_history_folder_is_skipped(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = folder(project, "base", train_time_s=11.0)
    head = folder(project, "head", train_time_s=13.5)
    broken = project / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    runs = history(project, NOISY)
    data = diff_json(project, capsys, str(base), str(head), "--history", str(broken), *runs)
    assert metric(data, "train_time_s")["change"] == "within"


def test_the_range_rule() -> None:
    assert robust_range([1.0] * (MIN_RUNS - 1)) is None
    flat = robust_range([2.0] * MIN_RUNS)
    assert flat is not None and (flat.low, flat.high) == (2.0, 2.0)
    # median 10, MAD 1: 10 ± 3 * 1.4826
    spread = robust_range([9.0, 10.0, 11.0, 10.0, 9.0, 11.0, 10.0])
    assert spread is not None and spread.median == 10.0
    assert math.isclose(spread.low, 10 - 3 * 1.4826) and math.isclose(spread.high, 10 + 3 * 1.4826)
    # never narrower than what the history itself showed
    wild = robust_range([10.0, 10.0, 10.0, 10.0, 10.0, 30.0])
    assert wild is not None and (wild.low, wild.high) == (10.0, 30.0)


def test_ranges_use_only_passing_jobs_and_finite_numbers() -> None:
    runs = [run(nb("a", x=float(i), flag=True, bad=math.nan)) for i in range(MIN_RUNS)]
    runs.append(run(nb("a", "failed", x=1000.0)))
    ranges = metric_ranges(runs)
    assert set(ranges) == {("a", "x")}
    assert ranges["a", "x"].values == tuple(float(i) for i in range(MIN_RUNS))


@pytest.mark.parametrize("length", [5, 12, 20])
def test_noise_is_within_for_any_history_length(length: int) -> None:
    rng = random.Random(length)
    values = [10 + rng.gauss(0, 1) for _ in range(length)]
    runs = [run(nb("a", train_time_s=v)) for v in values]
    median = sorted(values)[length // 2]
    base, head = run(nb("a", train_time_s=min(values))), run(nb("a", train_time_s=max(values)))
    delta = compare(head, base, label="main", history=runs).deltas[0]
    assert delta.change == "within"
    slow = run(nb("a", train_time_s=median + 50))
    assert compare(slow, base, label="main", history=runs).deltas[0].change == "regressed"


def test_reports_show_trend_charts_changed_first_then_gated(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "nbci.toml").write_text('[gates]\n"train:accuracy" = { min = 0.5 }\n')
    base = folder(project, "base", train_time_s=11.0, accuracy=0.9, steady=3.0)
    head = folder(project, "head", train_time_s=40.0, accuracy=0.9, steady=3.0)
    runs = [
        str(folder(project, f"h{i:02d}", train_time_s=t, accuracy=0.9, steady=3.0))
        for i, t in enumerate(NOISY)
    ]
    assert main(["report", str(head), "--baseline", str(base), "--history", *runs]) == EXIT_OK
    capsys.readouterr()
    charts = sorted(p.relative_to(head).as_posix() for p in (head / "trends").rglob("*.png"))
    # the changed metric and the gated one; `steady` neither changed nor is gated
    assert charts == ["trends/train/accuracy.png", "trends/train/train_time_s.png"]
    assert all((head / c).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for c in charts)
    report = (head / "report.md").read_text()
    trends = report[report.index("#### Trends") :]
    assert trends.index("trends/train/train_time_s.png") < trends.index("trends/train/accuracy.png")
    html = (head / "report.html").read_text()
    section = html[html.index('<section id="trends">') : html.index('<section id="notebooks">')]
    assert section.count('src="data:image/png;base64,') == 2


def test_the_comment_shows_a_bounded_number_of_trend_charts(tmp_path: Path) -> None:
    from nbci.render import html_report, markdown_report
    from nbci.render.trends import COMMENT_TRENDS

    names = [f"m{i}_loss" for i in range(COMMENT_TRENDS + 3)]
    hist = [run(nb("a", **{n: 1.0 + i / 100 for n in names})) for i in range(MIN_RUNS)]
    head = run(nb("a", **dict.fromkeys(names, 5.0)))
    base = run(nb("a", **dict.fromkeys(names, 1.0)))
    comparison = compare(head, base, label="main", history=hist)
    markdown = markdown_report(head, comparison=comparison)
    assert markdown.count("<img src=") == COMMENT_TRENDS
    assert "3 more trend charts in report.html" in markdown
    html = html_report(head, comparison=comparison, out_dir=tmp_path)
    assert html.count("<figcaption>a: m") == len(names)


def test_a_report_without_history_leaves_no_stale_charts(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = folder(project, "base", train_time_s=11.0)
    head = folder(project, "head", train_time_s=30.0)
    runs = history(project, NOISY)
    assert main(["report", str(head), "--baseline", str(base), "--history", *runs]) == EXIT_OK
    assert (head / "trends").is_dir()
    assert main(["report", str(head), "--baseline", str(base)]) == EXIT_OK
    capsys.readouterr()
    assert not (head / "trends").exists()
    assert "#### Trends" not in (head / "report.md").read_text()


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
        min_size=MIN_RUNS,
        max_size=30,
    )
)
def test_every_value_of_the_history_lies_inside_its_range(values: list[float]) -> None:
    found = robust_range(values)
    assert found is not None
    assert found.low <= min(values) <= found.median <= max(values) <= found.high
    assert all(found.contains(v) for v in values)
    assert found.values == tuple(values)
