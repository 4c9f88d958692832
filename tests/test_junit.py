"""`nbci-out/junit.xml`: one test case per notebook and per gate check, always parseable."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import NotebookFactory
from test_cli import nbci

from nbci.cli import EXIT_FAILED
from nbci.errors import UsageError
from nbci.junit import _clean, junit_xml
from nbci.model import ErrorInfo, GateResult, NotebookResult, Run, Verdict
from nbci.shards import resolve_shard


def _cases(root: ET.Element, suite: str) -> dict[str, ET.Element]:
    (found,) = [s for s in root.iter("testsuite") if s.get("name") == suite]
    return {case.get("name", ""): case for case in found.iter("testcase")}


def test_every_notebook_and_gate_check_is_a_test_case() -> None:
    hostile = "x\x00\x1b[31m ]]> </failure><script>alert(1)</script> \ud800"
    run = Run(
        notebooks=(
            NotebookResult("ok", "nb/ok.ipynb", {}, "ok", duration_s=1.5, cached=True),
            NotebookResult(
                "bad",
                "nb/bad.ipynb",
                {},
                "failed",
                duration_s=2.0,
                error=ErrorInfo(cell=3, ename="ValueError", evalue=hostile, traceback=hostile),
            ),
            NotebookResult("slow", "nb/slow.ipynb", {}, "timeout", error=ErrorInfo(message="5 s")),
            NotebookResult("gone", "nb/gone.ipynb", {}, "died", error=ErrorInfo(message="killed")),
            NotebookResult("junk", "nb/junk.ipynb", {}, "invalid", error=ErrorInfo(message="?")),
        ),
        created="2026-12-01T00:00:00Z",
    )
    verdict = Verdict(
        (
            GateResult("accuracy", "ok", "accuracy", True, "ok:accuracy 0.9 ≥ min 0.8", "min"),
            GateResult("loss", "ok", "loss", False, "ok:loss 0.7 > max 0.5", "max"),
        )
    )
    root = ET.fromstring(junit_xml(run, verdict).encode("utf-8"))
    assert (root.get("tests"), root.get("failures")) == ("7", "5")
    notebooks = _cases(root, "notebooks")
    assert list(notebooks) == ["ok", "bad", "slow", "gone", "junk"]
    assert notebooks["ok"].find("failure") is None
    assert notebooks["ok"].get("time") == "1.500"
    failure = notebooks["bad"].find("failure")
    assert failure is not None
    assert failure.get("type") == "failed"
    message = failure.get("message", "")
    assert message.startswith("failed: ValueError: x") and message.endswith("(cell 3)")
    assert "<script>" in (failure.text or "")  # kept as text, escaped in the file
    assert "\x00" not in (failure.text or "") and "\x1b" not in message
    for name, status in [("slow", "timeout"), ("gone", "died"), ("junk", "invalid")]:
        failed = notebooks[name].find("failure")
        assert failed is not None and failed.get("type") == status
    gates = _cases(root, "gates")
    assert list(gates) == ["ok:accuracy min (accuracy)", "ok:loss max (loss)"]
    assert gates["ok:accuracy min (accuracy)"].find("failure") is None
    gate_failure = gates["ok:loss max (loss)"].find("failure")
    assert gate_failure is not None and gate_failure.get("message") == "ok:loss 0.7 > max 0.5"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, (2, 3)),
        ({"CI_NODE_TOTAL": "1"}, (1, 1)),  # a job without `parallel:`
    ],
)
def test_shard_auto_reads_gitlab_parallel(env: dict[str, str], expected: tuple[int, int]) -> None:
    assert resolve_shard("auto", env) == expected
    assert resolve_shard("1/4", env) == (1, 4)


@pytest.mark.parametrize(
    "env", [{}, {"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "3"}, {"CI_NODE_INDEX": "x"}]
)
def test_shard_auto_outside_a_parallel_job_is_a_usage_error(env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="--shard auto"):
        resolve_shard("auto", env)


@pytest.mark.kernel
@pytest.mark.tools
def test_nbci_run_writes_junit_for_its_shard(project: Path, notebook: NotebookFactory) -> None:
    notebook("notebooks/a.ipynb", ["import nbci\nnbci.glue('accuracy', 0.5)"])
    notebook("notebooks/b.ipynb", ["raise ValueError('no convergence')"])
    (project / "nbci.toml").write_text(
        'notebooks = ["notebooks/a.ipynb", "notebooks/b.ipynb"]\n'
        "[gates]\naccuracy = { min = 0.9 }\n"
    )
    env = {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "1", "GITHUB_ACTIONS": ""}
    done = nbci("run", "--shard", "auto", cwd=project, env=env)
    assert done.returncode == EXIT_FAILED, done.stdout + done.stderr
    assert "junit.xml" in done.stdout
    root = ET.parse(project / "nbci-out" / "junit.xml").getroot()
    notebooks = _cases(root, "notebooks")
    assert set(notebooks) == {"a", "b"}
    failure = notebooks["b"].find("failure")
    assert failure is not None and "no convergence" in failure.get("message", "")
    assert "ValueError" in (failure.text or "")
    gate = _cases(root, "gates")["a:accuracy min (accuracy)"]
    assert gate.find("failure") is not None  # 0.5 < min 0.9


def test_exactly_the_characters_xml_cannot_carry_are_replaced() -> None:
    def xml_char(code: int) -> bool:  # XML 1.0, production [2] Char
        return code in (0x9, 0xA, 0xD) or any(
            low <= code <= high
            for low, high in ((0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))
        )

    every = "".join(map(chr, range(0x110000)))
    expected = "".join(c if xml_char(ord(c)) else "\ufffd" for c in every)
    assert _clean(every, limit=len(every)) == expected
