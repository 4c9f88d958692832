"""report.html of a 3 × 3 sweep against its baseline, and of changed tables, in headless
chromium (see test_browser): the sweep table and its charts at desktop and phone width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sweep_samples import profile_runs, sweep_runs
from test_browser import PHONE, assert_clean, open_report

from nbci.render import write_reports

pytestmark = pytest.mark.browser

SWEEP_CHARTS = [f"{m} against C" for m in ("accuracy", "cv_accuracy", "f1_macro", "train_time_s")]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser-sweeps")
    head, base, comparison = sweep_runs()
    write_reports(head, root / "sweep", comparison=comparison, baseline=base)
    head, base, comparison = profile_runs()
    write_reports(head, root / "tables", comparison=comparison, baseline=base)
    return {"sweep": root / "sweep" / "report.html", "tables": root / "tables" / "report.html"}


@pytest.mark.parametrize(("name", "width"), [("desktop", 1280), ("phone", PHONE)])
def test_sweep_table_and_charts(
    browser: Any, reports: dict[str, Path], name: str, width: int
) -> None:
    report = reports["sweep"]
    shot = Path(f"/tmp/nbci-sweep-{name}.png")
    result = open_report(browser, report, width=width, screenshot=shot)

    assert_clean(result, report)
    sweep_charts = sorted(i["alt"] for i in result.images if " against " in i["alt"])
    assert sweep_charts == SWEEP_CHARTS
    assert result.scroll_width <= width, "the page scrolls sideways"


def test_changed_tables_at_phone_width(browser: Any, reports: dict[str, Path]) -> None:
    report = reports["tables"]
    result = open_report(
        browser, report, width=PHONE, screenshot=Path("/tmp/nbci-tables-phone.png")
    )

    assert result.console_errors == []
    assert result.scroll_width <= PHONE, "the page scrolls sideways on a phone"
