"""The golden-file helper: compares, shows the diff, and updates without ever passing a change."""

from __future__ import annotations

from pathlib import Path

import goldtest
import pytest


@pytest.fixture
def gold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(goldtest, "GOLD", tmp_path)
    monkeypatch.delenv(goldtest.UPDATE, raising=False)
    (tmp_path / "report.md").write_text("| a | 1 |\n| b | 2 |\n", encoding="utf-8")
    return tmp_path


def test_equal_text_passes(gold: Path) -> None:
    goldtest.check_gold("report.md", "| a | 1 |\n| b | 2 |\n")


def test_a_difference_fails_with_the_diff_and_leaves_the_file(gold: Path) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        goldtest.check_gold("report.md", "| a | 1 |\n| b | 3 |\n")
    assert "-| b | 2 |" in str(failed.value) and "+| b | 3 |" in str(failed.value)
    assert (gold / "report.md").read_text() == "| a | 1 |\n| b | 2 |\n"


def test_a_missing_file_fails(gold: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="missing"):
        goldtest.check_gold("new.md", "x")
    assert not (gold / "new.md").exists()


def test_update_mode_rewrites_a_changed_file_and_still_fails(
    gold: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(goldtest.UPDATE, "1")
    with pytest.raises(pytest.fail.Exception, match="updated"):
        goldtest.check_gold("report.md", "changed\n")
    assert (gold / "report.md").read_text() == "changed\n"
    goldtest.check_gold("report.md", "changed\n")  # now it matches: passes
    with pytest.raises(pytest.fail.Exception, match="created"):
        goldtest.check_gold("sub/new.md", "new\n")
    assert (gold / "sub" / "new.md").read_text() == "new\n"
