"""`nbci-out/junit.xml`: the run as JUnit XML, for CI test widgets.

GitLab shows it in the merge request's test widget (`artifacts: reports:
junit:`); on GitHub any JUnit reporter action reads it. One test case per
notebook (a failed, timed-out, died or invalid one is a failure carrying its
error and cell) and one per gate check (a failed gate is a failure carrying
its reason), in two test suites, `notebooks` and `gates`.

Everything in it comes from notebooks and is untrusted: ElementTree escapes
markup, and characters XML 1.0 cannot carry (control characters, lone
surrogates) are replaced, so the file always parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from nbci._files import write_text_atomic
from nbci.model import GateResult, NotebookResult, Run, Verdict

JUNIT_FILE = "junit.xml"
MAX_TEXT = 64 * 1024
"""Characters of one traceback kept; the executed notebook holds the rest."""
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""What XML 1.0's `Char` production leaves out, listed: a class of what it allows took
5-9 ms to compile, in every run."""


def write_junit(run: Run, verdict: Verdict, out_dir: Path) -> Path:
    """Write `junit.xml` into `out_dir` (atomically); returns its path."""
    return write_text_atomic(out_dir / JUNIT_FILE, junit_xml(run, verdict))


def junit_xml(run: Run, verdict: Verdict) -> str:
    notebooks = _suite("notebooks", [_notebook_case(nb) for nb in run.notebooks])
    gates = _suite("gates", [_gate_case(result) for result in verdict.results])
    root = ET.Element("testsuites", name="nbci")
    root.extend([notebooks, gates])
    _sum_into(root, [notebooks, gates])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _suite(name: str, cases: list[ET.Element]) -> ET.Element:
    suite = ET.Element("testsuite", name=name)
    suite.extend(cases)
    _sum_into(suite, cases)
    return suite


def _sum_into(element: ET.Element, children: list[ET.Element]) -> None:
    """The counts JUnit readers expect on a suite: tests, failures, errors, skipped, time."""
    if element.tag == "testsuites":
        tests = sum(int(c.get("tests", "0")) for c in children)
        failures = sum(int(c.get("failures", "0")) for c in children)
        seconds = sum(float(c.get("time", "0")) for c in children)
    else:
        tests = len(children)
        failures = sum(1 for c in children if c.find("failure") is not None)
        seconds = sum(float(c.get("time", "0")) for c in children)
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", "0")
    element.set("skipped", "0")
    element.set("time", f"{seconds:.3f}")


def _notebook_case(nb: NotebookResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname="nbci.notebooks",
        name=_clean(nb.id),
        file=_clean(nb.path),
        time=f"{max(nb.duration_s, 0.0):.3f}",
    )
    if nb.status != "ok":
        error = nb.error
        summary = error.summary if error else nb.status
        where = f" (cell {error.cell})" if error and error.cell is not None else ""
        failure = ET.SubElement(
            case, "failure", type=nb.status, message=_clean(f"{nb.status}: {summary}{where}")
        )
        detail = (error.traceback or error.message) if error else None
        failure.text = _clean(detail or summary, MAX_TEXT)
    if nb.cached:
        ET.SubElement(case, "system-out").text = "restored from nbci's cache, not run again"
    return case


def _gate_case(result: GateResult) -> ET.Element:
    check = f" {result.check}" if result.check else ""
    case = ET.Element(
        "testcase",
        classname="nbci.gates",
        name=_clean(f"{result.job_id}:{result.metric}{check} ({result.rule})"),
        time="0.000",
    )
    if not result.passed:
        ET.SubElement(case, "failure", type="gate", message=_clean(result.reason))
    return case


def _clean(text: str, limit: int = 2000) -> str:
    """`text` that XML can carry, cut to `limit` characters."""
    text = _NOT_XML.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
