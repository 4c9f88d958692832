"""GitHub Actions: annotation escaping and the job summary's size and content."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_samples import huge_run, sample_run

from nbci import actions
from nbci.render import markdown_report


def test_in_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert not actions.in_github_actions()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert actions.in_github_actions()


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        ({}, "::error::boom"),
        ({"title": "t"}, "::error title=t::boom"),
        ({"file": "nb/a,b:c.ipynb"}, "::error file=nb/a%2Cb%3Ac.ipynb::boom"),
        (
            {"file": "x.ipynb", "line": 3, "title": "a: b, c"},
            "::error file=x.ipynb,line=3,title=a%3A b%2C c::boom",
        ),
    ],
)
def test_annotation_properties(kwargs: dict[str, object], line: str) -> None:
    assert actions.annotation("error", "boom", **kwargs) == line  # type: ignore[arg-type]


def test_annotation_escapes_data_so_no_second_command() -> None:
    line = actions.annotation("warning", "100% bad\r\n::error::injected\n%0A", title="t\n::x::")
    assert line == "::warning title=t%0A%3A%3Ax%3A%3A::100%25 bad%0D%0A::error::injected%0A%250A"
    assert "\n" not in line and "\r" not in line


def test_annotation_rejects_unknown_level_and_caps_length() -> None:
    with pytest.raises(ValueError, match="level"):
        actions.annotation("fatal", "x")  # type: ignore[arg-type]
    assert len(actions.annotation("notice", "x" * 100_000)) < 4_100


def test_step_summary_appends_without_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step output\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    text = markdown_report(sample_run(), images=False)
    assert "<img" not in text and "Figures: confusion, roc" in text
    assert actions.append_step_summary(text)
    assert actions.append_step_summary('x <img src="data:image/png;base64,AAAA"> ![a](data:x) y')
    written = summary.read_text(encoding="utf-8")
    assert written.startswith("# earlier step output\n### ❌ nbci: 1 of 3 notebooks failed")
    assert "<img" not in written and "data:" not in written
    assert written.endswith("x   y\n")


def test_step_summary_stays_under_the_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    report = markdown_report(huge_run(notebooks=60, traceback_bytes=10_000), images=False)
    big = report * 20
    assert len(big.encode()) > actions.SUMMARY_LIMIT
    assert actions.append_step_summary(big, path=summary)
    assert summary.stat().st_size <= actions.SUMMARY_LIMIT
    assert "cut here to stay under GitHub's 1 MiB" in summary.read_text(encoding="utf-8")
    # Nearly full: a second report gets cut down further; a full file gets nothing.
    summary.write_bytes(b"x" * (actions.SUMMARY_LIMIT - 10))
    assert not actions.append_step_summary(big, path=summary)
    assert summary.stat().st_size == actions.SUMMARY_LIMIT - 10


def test_step_summary_outside_actions_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert actions.append_step_summary("anything") is False


def test_step_summary_keeps_hosted_images_and_never_raises(tmp_path: Path) -> None:
    """publish's report (figures hosted at https URLs) goes through the same writer."""
    summary = tmp_path / "summary.md"
    hosted = '<img src="https://github.com/o/r/raw/abc/pr/1/figures/a.png" alt="a">'
    text = f'{hosted} <img src="figures/a.png"> ![b](https://x.test/b.png) ![c](c.png)'
    assert actions.append_step_summary(text, path=summary)
    written = summary.read_text(encoding="utf-8")
    assert hosted in written and "![b](https://x.test/b.png)" in written
    assert '<img src="figures/a.png">' not in written and "(c.png)" not in written
    # a summary that cannot be written is a warning, not an error
    assert actions.append_step_summary("x", path=tmp_path / "missing" / "summary.md") is False
