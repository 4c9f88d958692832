"""benchmarks/bench.py's own arithmetic: samples, the lower bound, targets and its exit code.
Nothing here times anything: the tools are stand-ins that return made-up samples."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nbci_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import bench  # mypy reads benchmarks/bench.py as the module `bench`
else:
    bench = _load()


def stand_in(name: str, *outcomes: bench.Sample | Exception) -> bench.Tool:
    queue = list(outcomes)

    def run() -> bench.Sample:
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return bench.Tool(name, run)


def not_run() -> bench.Sample:
    """The run of a tool whose samples a test sets by hand."""
    raise AssertionError("this tool is not meant to run")


def test_a_retried_pair_counts_each_tool_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Cold succeeds, warm fails, the pair is timed again: cold has one sample, not two."""
    cold = stand_in("nbci-cold", bench.Sample(10.0), bench.Sample(11.0))
    warm = stand_in("nbci-warm", bench.RunFailed("a kernel lost a port race"), bench.Sample(0.5))
    pair = bench.Tool("nbci cold, then warm", bench._pair([cold, warm]))

    bench.measure([pair], repeat=1)

    assert [s.seconds for s in cold.samples] == [11.0]
    assert [s.seconds for s in warm.samples] == [0.5]
    assert pair.failures == 1 and [s.seconds for s in pair.samples] == [11.5]
    assert "attempt 1 of 3" in capsys.readouterr().out


def test_the_lower_bound_is_the_least_cell_time_so_nbci_is_never_below_it() -> None:
    """papermill's cells pay for their imports; a forked nbci kernel's do not."""
    papermill = bench.Tool("papermill", not_run)
    papermill.samples = [bench.Sample(60.0, cell_time=40.0), bench.Sample(62.0, cell_time=42.0)]
    cold = bench.Tool("nbci-cold", not_run)
    cold.samples = [bench.Sample(7.0, cell_time=24.0), bench.Sample(7.5, cell_time=26.0)]
    nbmake = bench.Tool("nbmake", not_run)
    nbmake.samples = [bench.Sample(20.0)]  # no cell times recorded

    bound = bench.lower_bound([papermill, cold, nbmake], cores=4)

    assert bound == 25.0 / 4
    assert bound <= cold.median
    assert bench.lower_bound([nbmake], cores=4) is None


def result(
    cold: float, papermill: float, warm: float, overhead: float, start_up: float = 4.0
) -> bench.SetResult:
    """12 notebooks on 2 cores whose cells take 0.25 s each: a cold run of `cold` seconds
    whose first notebooks waited `start_up` seconds (`overhead` is its in-job one)."""

    def tool(name: str, seconds: float, **kwargs: object) -> bench.Tool:
        made = bench.Tool(name, not_run)
        made.samples = [bench.Sample(seconds, **kwargs)]  # type: ignore[arg-type]
        return made

    overheads = {f"nb{i}": overhead for i in range(12)}
    tools = {
        "papermill": tool("papermill", papermill),
        "nbci-cold": tool("nbci-cold", cold, overheads=overheads, cell_time=3.0, start_up=start_up),
        "nbci-warm": tool("nbci-warm", warm),
    }
    return bench.SetResult("heavy", 12, tools, None, cores=2)


def test_targets_are_judged_and_a_miss_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 21's: cold ≤ 0.12 × papermill, warm ≤ 0.4 s for 12 notebooks, overhead per
    notebook after start-up ≤ 0.1 s; the start-up itself is reported, not judged."""
    met = result(cold=5.0, papermill=50.0, warm=0.3, overhead=0.05)  # (1.0 × 2 − 3) / 12 < 0
    slow = result(cold=7.0, papermill=50.0, warm=0.5, overhead=0.05)  # (3.0 × 2 − 3) / 12

    assert [(c.name, c.met) for c in bench.checks(met)] == [
        ("cold/papermill", True),
        ("warm (s)", True),
        ("start-up (s)", True),
        ("overhead per notebook after start-up (s)", True),
    ]
    assert bench.verdict([met]) == 0
    assert bench.verdict([met, slow]) == 1
    err = capsys.readouterr().err
    assert "bench: missed heavy: cold/papermill = 0.140 (target ≤ 0.12: MISSED)" in err
    assert "warm (s) = 0.500 (target ≤ 0.40: MISSED)" in err
    assert "overhead per notebook after start-up (s) = 0.250 (target ≤ 0.10: MISSED)" in err
    assert err.count("bench: missed") == 3


def test_start_up_is_counted_once_not_in_every_notebooks_overhead() -> None:
    """The same 7 s run: with 4 s of start-up, 12 notebooks of 0.25 s cells on 2 cores
    leave 0.25 s each; counted per notebook, the start-up would be a third of a second more."""
    run = bench.Sample(7.0, cell_time=3.0, start_up=4.0)

    assert bench.after_start_up(run, cores=2, count=12) == pytest.approx(0.25)
    assert bench.after_start_up(bench.Sample(7.0, cell_time=3.0, start_up=0.0), 2, 12) > 0.9


def test_the_start_up_is_read_from_the_first_cells_timestamps(tmp_path: Path) -> None:
    stamps = ["2026-12-03T16:42:49.5+00:00", "2026-12-03T16:42:49.25+00:00", None]
    cells = [{"metadata": {"papermill": {"start_time": s} if s else {}}} for s in stamps]
    executed = tmp_path / "nb.ipynb"
    executed.write_text(json.dumps({"cells": cells}))

    started = bench.first_cell_start(executed)

    assert started == datetime(2026, 12, 3, 16, 42, 49, 250000, tzinfo=UTC).timestamp()


def test_the_table_has_the_start_up_and_the_overhead_after_it() -> None:
    table = bench.markdown_table([result(cold=7.0, papermill=50.0, warm=0.3, overhead=0.1)], 2)

    assert "| heavy | nbci start-up (once) | 4.00 | |" in table
    assert "| heavy | nbci overhead per notebook after start-up | 0.25 | |" in table
    assert "| heavy | `nbci run`, cold | 7.00 |  |" in table
