"""results.json `nbci.results/2` keeps the series; `/1` runs still read, compare and merge."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from nbci import cli
from nbci.errors import ResultsError
from nbci.judge import Criteria, judge
from nbci.model import SCHEMA, NotebookResult, Run
from nbci.render import write_reports
from nbci.results import read_run, run_to_dict, write_run
from nbci.schemas import RESULTS_SCHEMAS
from nbci.series import recognise
from nbci.shards import merge_runs


def curve_run(loss: list[float | None], *, shard: str | None = None) -> Run:
    found = recognise("loss", loss)
    assert found is not None
    nb = NotebookResult(
        id="train",
        path="notebooks/train.ipynb",
        parameters={},
        status="ok",
        metrics={"accuracy": 0.9, **found.metrics},
        series=(found.group,),
    )
    return Run(notebooks=(nb,), created="2026-12-01T00:00:00Z", shard=shard)


def as_version_1(run: Run, folder: Path) -> Path:
    """`run` written as nbci wrote it before series existed: schema /1, no series field."""
    data: dict[str, Any] = run_to_dict(run)
    data["schema"] = "nbci.results/1"
    for nb in data["notebooks"]:
        del nb["series"]
        nb["metrics"] = {k: v for k, v in nb["metrics"].items() if not k.startswith("loss.")}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def test_the_version_written_is_the_last_one_read() -> None:
    assert SCHEMA == "nbci.results/3" == list(RESULTS_SCHEMAS)[-1]
    assert {"nbci.results/1", "nbci.results/2"} <= set(RESULTS_SCHEMAS)


def test_series_round_trip_with_their_gaps(tmp_path: Path) -> None:
    run = curve_run([1.0, math.nan, 0.5, None, 0.25])

    back = read_run(write_run(run, tmp_path))

    (group,) = back.notebooks[0].series
    assert group.series[0].points == 5 and group.series[0].x == (0, 1, 2, 3, 4)
    assert [math.isnan(v) for v in group.series[0].y] == [False, True, False, True, False]
    assert back.notebooks[0].metrics["loss.min"] == 0.25


def test_a_version_1_run_reads_and_compares_with_a_version_2_run(tmp_path: Path) -> None:
    old = read_run(as_version_1(curve_run([1.0, 0.5]), tmp_path / "old"))
    new = curve_run([1.0, 0.4])

    assert old.schema == "nbci.results/1" and old.notebooks[0].series == ()
    comparison = judge(new, old, label="old", criteria=Criteria()).comparison
    assert comparison is not None
    changes = {d.metric: d.change for d in comparison.deltas}
    assert changes == {
        "accuracy": "unchanged",
        "loss.last": "added",
        "loss.min": "added",
        "loss.max": "added",
    }
    write_reports(new, tmp_path / "out", comparison=comparison, baseline=old)
    assert (tmp_path / "out" / "charts" / "train" / "loss.png").is_file()  # its own curve


def test_nbci_diff_of_a_version_1_and_a_version_2_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = as_version_1(curve_run([1.0, 0.5]), tmp_path / "old")
    write_run(curve_run([1.0, 0.4]), tmp_path / "new")

    code = cli.main(["diff", str(old), str(tmp_path / "new")])

    out = capsys.readouterr().out
    assert code == 0 and "| train | loss.min | – | 0.4000 | added |" in out
    assert "3 added, 1 unchanged" in out


def test_version_1_shards_merge_into_a_version_2_run(tmp_path: Path) -> None:
    dirs = [tmp_path / "shard-1", tmp_path / "shard-2"]
    for folder, shard in zip(dirs, ("1/2", "2/2"), strict=True):
        as_version_1(curve_run([1.0], shard=shard), folder)
        data = json.loads((folder / "results.json").read_text())
        data["notebooks"][0]["id"] = f"train-{shard[0]}"
        (folder / "results.json").write_text(json.dumps(data))
    runs = [read_run(d) for d in dirs]

    merged = merge_runs(runs, dirs, tmp_path / "merged")
    written = read_run(write_run(merged, tmp_path / "merged"))

    assert written.schema == "nbci.results/3"
    assert [nb.id for nb in written.notebooks] == ["train-1", "train-2"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(y=["x"]), r"notebooks\[0\]\.series\[0\]\.series\[0\]\.y\[0\]"),
        (lambda s: s.update(y=[1.0] * 2001), r"notebooks\[0\]\.series\[0\]\.series\[0\]\.y"),
        (lambda s: s.update(x=[0.0]), r"notebooks\[0\]\.series\[0\]\.series\[0\]\.x"),
        (lambda s: s.update(points=1), r"notebooks\[0\]\.series\[0\]\.series\[0\]\.points"),
    ],
)
def test_a_malformed_series_is_refused_in_one_line(tmp_path: Path, edit: Any, message: str) -> None:
    data = run_to_dict(curve_run([1.0, 0.5]))
    edit(data["notebooks"][0]["series"][0]["series"][0])
    (tmp_path / "results.json").write_text(json.dumps(data))

    with pytest.raises(ResultsError, match=message) as caught:
        read_run(tmp_path)
    assert "\n" not in str(caught.value)
