"""Golden files of what other programs and reviewers read: report.html (normalised),
junit.xml, `nbci diff --json` and results.json. Review a change with
`NBCI_UPDATE_GOLD=1` and `git diff tests/gold` (tests/goldtest.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from goldtest import check_gold
from render_samples import sample_comparison, sample_run, sample_verdict, write_figures

from nbci.cli import EXIT_FAILED, main
from nbci.junit import junit_xml
from nbci.render import html_report
from nbci.results import run_json, write_run

_STYLE = re.compile(r"(<style[^>]*>).*?(</style>)", re.S)
_DATA_URI = re.compile(r"data:(image/[a-z+]+);base64,[A-Za-z0-9+/=]+")
_VERSION = re.compile(r'"nbci_version": "[^"]*"')


def normalised_html(html: str) -> str:
    """The report without what is pinned elsewhere: style.css's text and the images' bytes."""
    html = _STYLE.sub(r"\1/* style.css */\2", html)
    return _DATA_URI.sub(r"data:\1;base64,…", html)


def without_version(text: str) -> str:
    """results.json names the nbci that wrote it: not pinned here, or every release breaks it."""
    return _VERSION.sub('"nbci_version": "VERSION"', text)


def test_gold_report_html(tmp_path: Path) -> None:
    run = sample_run()
    write_figures(run, tmp_path)
    html = html_report(
        run, comparison=sample_comparison(), verdict=sample_verdict(), out_dir=tmp_path
    )
    check_gold("report.html", normalised_html(html))


def test_gold_junit_xml() -> None:
    check_gold("junit.xml", junit_xml(sample_run(), sample_verdict()))


def test_gold_results_json() -> None:
    check_gold("results.json", without_version(run_json(sample_run())))


def test_gold_diff_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `nbci diff BASE HEAD --json --gates` prints, through the command line."""
    head = sample_run()
    train, other, evaluate = head.notebooks
    base = replace(
        head,
        notebooks=(
            replace(train, metrics={**train.metrics, "accuracy": 0.9512, "loss": 0.2501}),
            other,
            replace(evaluate, status="ok", error=None, metrics={"f1": 0.71}),
        ),
    )
    write_run(head, tmp_path / "head")
    write_run(base, tmp_path / "base")
    (tmp_path / "nbci.toml").write_text(
        '[gates]\naccuracy = { min = 0.9 }\n"train-lr-0.1:accuracy" = { max_drop = "1%" }\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)

    code = main(["diff", "base", "head", "--json", "--gates"])

    assert code == EXIT_FAILED, capsys.readouterr().err
    check_gold("diff.json", capsys.readouterr().out)
