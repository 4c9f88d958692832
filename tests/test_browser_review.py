"""report.html with curves and figure comparisons, in headless chromium (see test_browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from review_samples import without_figures, write_compared
from test_browser import PHONE, assert_clean, open_report

from nbci.render import write_reports

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The review run's report against its baseline, and alone (curves, no figures)."""
    root = tmp_path_factory.mktemp("browser-review")
    out, run, _ = write_compared(root)
    alone = root / "alone"
    write_reports(without_figures(run), alone)
    return {"compared": out / "report.html", "alone": alone / "report.html"}


def alts(result: Any) -> list[str]:
    return sorted(image["alt"] for image in result.images)


def test_curves_and_figures_against_the_baseline(browser: Any, reports: dict[str, Path]) -> None:
    report = reports["compared"]
    result = open_report(
        browser, report, width=1280, screenshot=Path("/tmp/nbci-review-desktop.png")
    )

    assert_clean(result, report)
    assert alts(result) == sorted(
        [
            *("history", "long", "lr"),  # charts: a changed group, 50,000 points with gaps, 12
            *("moved", "moved", "moved: difference"),  # baseline | this run | difference
            *("resized", "resized"),  # a size change: no difference image
            "new",  # added
            "gone",  # removed: the baseline's
        ]
    )


def test_the_runs_own_curves_without_a_baseline(browser: Any, reports: dict[str, Path]) -> None:
    report = reports["alone"]
    result = open_report(browser, report, width=1280, screenshot=None)

    assert_clean(result, report)
    assert alts(result) == ["history", "long", "lr"]
    chart = next(i for i in result.images if i["alt"] == "lr")
    assert chart["width"] == 640  # the PNG nbci drew, inlined whole


def test_at_phone_width(browser: Any, reports: dict[str, Path]) -> None:
    result = open_report(browser, reports["compared"], width=PHONE, screenshot=None)

    assert_clean(result, reports["compared"])
    assert result.scroll_width <= PHONE, "the page scrolls sideways on a phone"
