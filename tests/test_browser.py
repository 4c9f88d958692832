"""report.html in a real headless browser: Debian's chromium driven by Playwright.

Never downloads a browser: `executable_path` points at /usr/bin/chromium. To
check any report by hand (e.g. the example run's):
`python tests/test_browser.py nbci-out/report.html` prints what it finds and
writes screenshots to /tmp/nbci-report-desktop.png and /tmp/nbci-report-phone.png.
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from render_samples import sample_comparison, sample_run, sample_verdict, tiny_png

from nbci.model import Run, Scrap
from nbci.render import write_reports

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE = 390
HOSTILE_HTML = (
    "<p>Glued <b>HTML</b> display</p>"
    "<script>window.__pwned=1</script>"
    '<img src=x onerror="window.__pwned=2">'
    '<a href="javascript:window.__pwned=3">click me</a>'
    '<svg onload="window.__pwned=4"></svg>'
    '<iframe src="https://example.com/"></iframe>'
    '<img src="https://example.com/tracker.png">'
    '<div style="background:url(https://example.com/bg.png)">styled</div>'
    f'<img alt="inline" src="data:image/png;base64,{base64.b64encode(tiny_png()).decode()}">'
)


@dataclasses.dataclass
class PageReport:
    console_errors: list[str]
    requests: list[str]
    images: list[dict[str, Any]]
    pwned: str
    scroll_width: int
    print_traceback_visible: bool


def open_report(browser: Any, report: Path, *, width: int, screenshot: Path | None) -> PageReport:
    """Load `report` at `width` px, record everything a reviewer's browser would do."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.resolve().as_uri(), wait_until="load")
    images = page.evaluate(
        "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,"
        " width: i.naturalWidth, src: i.src.slice(0, 40)}))"
    )
    result = PageReport(
        console_errors=errors,
        requests=requests,
        images=images,
        pwned=page.evaluate("typeof window.__pwned"),
        scroll_width=page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        ),
        print_traceback_visible=False,
    )
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.emulate_media(media="print")
    traceback = page.locator("details.traceback pre").first
    result.print_traceback_visible = traceback.count() == 1 and traceback.is_visible()
    page.close()
    return result


def matplotlib_figures(run: Run, out_dir: Path, *, tint: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for nb in run.notebooks:
        for figure in nb.figures:
            fig, ax = plt.subplots(figsize=(4, 3), dpi=72)
            ax.plot([0, 1, 2, 3], [0, tint, 1 + tint, 1.5])
            ax.set_title(figure.name)
            path = out_dir / figure.path
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png")
            plt.close(fig)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compared run with real matplotlib PNGs (beside their baseline ones) and hostile HTML."""
    root = tmp_path_factory.mktemp("browser")
    out, base = root / "out", root / "base"
    run = sample_run()
    train = run.notebooks[0]
    train = dataclasses.replace(
        train, scraps={**train.scraps, "widget": Scrap("html", HOSTILE_HTML)}
    )
    run = dataclasses.replace(run, notebooks=(train, *run.notebooks[1:]))
    matplotlib_figures(run, out, tint=0.2)
    matplotlib_figures(run, base, tint=0.6)
    write_reports(
        run, out, comparison=sample_comparison(), verdict=sample_verdict(), baseline_dir=base
    )
    return out / "report.html"


def assert_clean(result: PageReport, report: Path) -> None:
    assert result.console_errors == []
    assert all(
        url == report.resolve().as_uri() or url.startswith("data:") for url in result.requests
    )
    assert result.images, "the report shows no images"
    broken = [i for i in result.images if not (i["complete"] and i["width"] > 0)]
    assert broken == []


def test_report_in_desktop_browser(browser: Any, report: Path) -> None:
    result = open_report(
        browser, report, width=1280, screenshot=Path("/tmp/nbci-report-desktop.png")
    )
    assert_clean(result, report)
    assert result.pwned == "undefined"
    # Three matplotlib figures, each beside its baseline, and the scrap's data: image;
    # and the lr sweep's charts of accuracy and loss.
    assert len(result.images) == 7 + 2
    assert result.print_traceback_visible, "closed <details> must print open"


def test_report_at_phone_width(browser: Any, report: Path) -> None:
    result = open_report(
        browser, report, width=PHONE, screenshot=Path("/tmp/nbci-report-phone.png")
    )
    assert_clean(result, report)
    assert result.scroll_width <= PHONE, "the page scrolls sideways on a phone"


def test_charts_are_shown_at_the_size_they_were_drawn(browser: Any, tmp_path: Path) -> None:
    from nbci.model import SeriesGroup
    from nbci.series import make_series

    learning = SeriesGroup(
        "learning",
        tuple(make_series(f"learning.{n}", [0.9, 0.6, 0.5, 0.45]) for n in ("loss", "val_loss")),
    )
    train = dataclasses.replace(sample_run().notebooks[0], series=(learning,))
    write_reports(Run((train,), created="2026-12-01T00:00:00Z"), tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tmp_path / "report.html").resolve().as_uri(), wait_until="load")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    sizes = page.evaluate(
        "Array.from(document.querySelectorAll('.charts img'))"
        ".map(i => [i.clientWidth, i.naturalWidth])"
    )
    page.close()
    ((shown, natural),) = sizes
    assert shown == natural  # not scaled down to a grid cell


@pytest.fixture(scope="module")
def trend_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run judged against a history of ten runs: trend charts in the report."""
    from handmade_runs import nb
    from handmade_runs import run as make_run

    from nbci.compare import compare

    out = tmp_path_factory.mktemp("trends") / "out"
    history = [make_run(nb("train", train_time_s=10 + i % 4, accuracy=0.9)) for i in range(10)]
    head = make_run(nb("train", train_time_s=30.0, accuracy=0.91))
    base = make_run(nb("train", train_time_s=11.0, accuracy=0.9))
    write_reports(head, out, comparison=compare(head, base, label="main", history=history))
    return out / "report.html"


def test_trend_charts_show_in_the_browser(browser: Any, trend_report: Path) -> None:
    for width in (1280, PHONE):
        result = open_report(browser, trend_report, width=width, screenshot=None)
        assert_clean(result, trend_report)
        assert sorted(i["alt"] for i in result.images) == [
            "train: accuracy",
            "train: train_time_s",
        ]
        assert result.scroll_width <= width


def main(argv: list[str]) -> int:
    """Check one report.html by hand: `python tests/test_browser.py nbci-out/report.html`."""
    from playwright.sync_api import sync_playwright

    report = Path(argv[0])
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, width in (("desktop", 1280), ("phone", PHONE)):
            shot = Path(f"/tmp/nbci-report-{name}.png")
            result = open_report(chromium, report, width=width, screenshot=shot)
            print(f"{name}: {result}")
            assert_clean(result, report)
            assert result.scroll_width <= width
        chromium.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main(sys.argv[1:]))
