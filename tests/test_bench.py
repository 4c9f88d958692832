"""benchmarks/bench.py's own arithmetic: samples, the lower bound, targets and its exit code.
Nothing here times anything: the tools are stand-ins that return made-up samples."""

from __future__ import annotations

import importlib.util
import sys
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


def result(cold: float, papermill: float, warm: float, overhead: float) -> bench.SetResult:
    def tool(name: str, seconds: float, **overheads: float) -> bench.Tool:
        made = bench.Tool(name, not_run)
        made.samples = [bench.Sample(seconds, overheads=overheads)]
        return made

    tools = {
        "papermill": tool("papermill", papermill),
        "nbci-cold": tool("nbci-cold", cold, a=overhead, b=overhead),
        "nbci-warm": tool("nbci-warm", warm),
    }
    return bench.SetResult("light", 2, tools, None)


def test_targets_are_judged_and_a_miss_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    met = result(cold=3.0, papermill=10.0, warm=0.1, overhead=0.2)
    slow = result(cold=5.0, papermill=10.0, warm=0.1, overhead=0.5)

    assert [(c.name, c.met) for c in bench.checks(met)] == [
        ("cold/papermill", True),
        ("warm/cold", True),
        ("overhead per notebook (s)", True),
    ]
    assert bench.verdict([met]) == 0
    assert bench.verdict([met, slow]) == 1
    err = capsys.readouterr().err
    assert "bench: missed light: cold/papermill = 0.500 (target ≤ 0.40: MISSED)" in err
    assert "overhead per notebook (s) = 0.500 (target ≤ 0.35: MISSED)" in err
    assert err.count("bench: missed") == 2
