"""Reports: golden markdown, layout decisions, the size bound, files on disk, overrides.

Golden files live in tests/gold/ (see tests/goldtest.py for updating them).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from goldtest import check_gold
from render_samples import (
    huge_comparison,
    huge_run,
    sample_comparison,
    sample_run,
    sample_verdict,
    tiny_png,
    write_figures,
)

from nbci._files import read_inside
from nbci.errors import ConfigError, TemplateError
from nbci.formats import MAX_FIGURE_BYTES, image_type
from nbci.model import (
    Comparison,
    ErrorInfo,
    Figure,
    GateResult,
    MetricDelta,
    NotebookResult,
    Range,
    Run,
    Scrap,
    Verdict,
)
from nbci.render import html_report, markdown_report, templating, write_reports
from nbci.render.build import build_view
from nbci.render.html import image_data_uri, sanitize_html
from nbci.render.metric_tables import comparison_table
from nbci.render.templating import check_templates
from nbci.vocabulary import (
    format_delta,
    format_duration,
    format_number,
    format_percent,
    verdict_facts,
)

# -- golden files ----------------------------------------------------------------


def test_gold_report() -> None:
    check_gold("report.md", markdown_report(sample_run()))


def test_gold_report_compare() -> None:
    base = {"figures/train-lr-0.1/confusion.png": "../base/figures/train-lr-0.1/confusion.png"}
    text = markdown_report(
        sample_run(),
        comparison=sample_comparison(),
        verdict=sample_verdict(),
        base_figures=base,
    )
    check_gold("report_compare.md", text)


# -- what the markdown says --------------------------------------------------------


def test_verdict_comes_first() -> None:
    text = markdown_report(sample_run(), verdict=sample_verdict())
    first = text.splitlines()[0]
    assert first == "### ❌ nbci: 1 of 3 notebooks failed"
    assert "gates: 3 of 5 failed" in text.splitlines()[2]
    assert "1 cached" in text.splitlines()[2]


def test_the_verdict_line_never_says_nothing_regressed_beside_a_failed_gate() -> None:
    # accuracy fell past max_drop, but inside the base branch's range: not a regression
    spread = Range(low=0.80, high=0.95, median=0.9, values=(0.8, 0.85, 0.9, 0.92, 0.95))
    delta = MetricDelta("train", "accuracy", 0.92, 0.85, "higher", range=spread)
    comparison = Comparison("main", (delta,))
    head = Run((NotebookResult("train", "t.ipynb", {}, "ok", metrics={"accuracy": 0.85}),), "x")
    failed = Verdict((GateResult("accuracy", "train", "accuracy", False, "dropped", "max_drop"),))
    passed = Verdict((GateResult("accuracy", "train", "accuracy", True, "ok", "min"),))

    assert verdict_facts(head, comparison, failed, passed_count=True) == [
        "1 passed",
        "gates: 1 of 1 failed",
        "1 within the base branch's range",
    ]
    assert "no metric regressed or improved" in verdict_facts(
        head,
        Comparison("main", (dataclasses.replace(delta, value=0.92),)),
        passed,
        passed_count=True,
    )


def test_passing_run_headline() -> None:
    run = sample_run()
    ok = Run(notebooks=run.notebooks[:2], created=run.created)
    assert markdown_report(ok).startswith("### ✅ nbci: All 2 notebooks passed\n")


def test_failure_has_cell_error_traceback_and_pointer() -> None:
    text = markdown_report(sample_run())
    assert (
        "**❌ evaluate** failed in cell 4 · [executed notebook](<notebooks/evaluate.html>)" in text
    )
    assert "> ValueError: f1 too low: 0.412" in text
    assert "<details><summary>Traceback</summary>\n\n```\n---" in text


def test_shared_metrics_make_one_wide_table() -> None:
    text = markdown_report(sample_run())
    # The sample's two train jobs are a sweep of lr: its table has a row per value of lr.
    assert "| lr | accuracy | loss | n_features |" in text
    assert "| 0.1 | 0.9346 ★ | 0.2104 ★ | 20 |" in text
    other = replace(sample_run().notebooks[1], path="notebooks/train_copy.ipynb")
    text = markdown_report(replace(sample_run(), notebooks=(sample_run().notebooks[0], other)))
    assert "| Notebook | Parameters | accuracy | loss | n_features |" in text
    assert "| ✅ train-lr-0.1 | lr=0.1, model=logreg | 0.9346 | 0.2104 | 20 |" in text


def test_sweeps_share_a_table_others_keep_their_own() -> None:
    sweep = [
        NotebookResult(f"train-{c}", "train.ipynb", {"C": c}, "ok", metrics={"acc": c / 10})
        for c in (1, 2)
    ]
    other = [
        NotebookResult(f"eval-{s}", "eval.ipynb", {"s": s}, "ok", metrics={"f1": 0.5, "auc": 0.7})
        for s in (1, 2)
    ]
    profile = NotebookResult("profile", "p.ipynb", {}, "ok", metrics={"rows": 10})
    run = Run((*sweep, *other, profile), created="2026-01-01T00:00:00Z")
    view = build_view(run)
    # Each notebook run with several parameters is a sweep: a table of its own.
    assert [s.title for s in view.sweeps] == ["train.ipynb", "eval.ipynb"]
    assert view.metrics == ()
    assert [nb.metrics_elsewhere for nb in view.notebooks] == [True] * 4 + [False]
    text = markdown_report(run)
    assert "**train.ipynb**\n\n| C | acc |" in text
    assert "| 2 | 0.5000 | 0.7000 |" in text
    assert "##### ✅ profile" in text and "| rows | 10 |" in text


def test_unrelated_metrics_get_per_notebook_tables() -> None:
    a = NotebookResult("data", "a.ipynb", {}, "ok", metrics={"rows": 100, "nulls": 0})
    b = NotebookResult("train", "b.ipynb", {}, "ok", metrics={"accuracy": 0.9})
    view = build_view(Run((a, b), created="2026-01-01T00:00:00Z"))
    assert view.metrics == ()
    assert [nb.metrics.columns for nb in view.notebooks if nb.metrics] == [
        ("Metric", "Value"),
        ("Metric", "Value"),
    ]
    text = markdown_report(Run((a, b), created="2026-01-01T00:00:00Z"))
    assert "| rows | 100 |" in text and "| accuracy | 0.9000 |" in text


def test_comparison_rows_regressions_first_unchanged_folded() -> None:
    text = markdown_report(sample_run(), comparison=sample_comparison())
    table = text[text.index("#### Metrics") :]
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| train") or line.startswith("| eval")
    ]
    assert rows[0].startswith(
        "| train-lr-0.1 | accuracy | 0.9512 | 0.9346 | **▼ -0.01664 (-1.7%) regressed** |"
    )
    assert "▼ -0.03970 (-16%) improved" in rows[1]
    assert "▲ +2 (+11%)" in rows[2]  # whole numbers change by whole numbers
    # The train jobs' rows are folded under their sweep's table; a comparison table folds
    # its unchanged metrics.
    assert "<details><summary>Every metric of its 2 notebooks (7)</summary>" in table
    folded = comparison_table(sample_comparison().deltas, {}, with_job=True).folded_label
    assert folded == "3 unchanged metrics"


def test_figures_side_by_side_with_baseline() -> None:
    base = {"figures/train-lr-0.1/confusion.png": "https://example.test/base/confusion.png"}
    text = markdown_report(
        sample_run(),
        comparison=sample_comparison(),
        base_figures=base,
        image_url=lambda path: "https://example.test/head/" + path,
    )
    pair = re.search(r"<tr><td>confusion</td>(.*)</tr>", text)
    assert pair is not None
    assert pair.group(1).index("/base/confusion.png") < pair.group(1).index(
        "/head/figures/train-lr-0.1/confusion.png"
    )
    assert '<img src="https://example.test/head/figures/train-lr-0.1/roc.png"' in text


def test_images_off_names_figures_and_uses_the_note() -> None:
    text = markdown_report(
        sample_run(), images=False, figures_note="in the [artifact](https://example.test/a/1)"
    )
    assert "<img" not in text
    assert "Figures: confusion, roc — in the [artifact](https://example.test/a/1)" in text


def test_link_url_none_prints_paths_as_text() -> None:
    text = markdown_report(sample_run(), link_url=lambda path: None)
    assert "](" not in text.replace("](<", "")  # no relative links left
    assert "executed notebook (notebooks/evaluate.html)" in text


def test_unsafe_image_urls_are_not_used() -> None:
    text = markdown_report(sample_run(), image_url=lambda path: "javascript:alert(1)")
    assert "javascript:" not in text
    assert "(image not available)" in text


def test_malformed_scraps_never_fail() -> None:
    nb = NotebookResult(
        "odd",
        "odd.ipynb",
        {"p": {"nested": [1, 2]}},
        "invalid",
        error=ErrorInfo(message="not a notebook"),
        scraps={
            "t": Scrap("table", {"columns": "nope"}),
            "t2": Scrap(
                "table", {"columns": ["a", "b"], "rows": [[1], "x", [1, 2, 3]], "total_rows": None}
            ),
            "h": Scrap("text", 42),
        },
        metrics={"nan": float("nan"), "inf": float("-inf"), "flag": True},
    )
    run = Run((nb,), created="2026-01-01T00:00:00Z")
    text = markdown_report(run)
    assert "**⚠️ odd** invalid" in text and "> not a notebook" in text
    assert "| nan | NaN |" in text and "| inf | -inf |" in text and "| flag | true |" in text
    assert html_report(run).count("<table") >= 2


# -- the size bound ----------------------------------------------------------------------


def test_huge_run_fits_and_says_what_it_left_out() -> None:
    # 200 notebooks overflow every part of the comment (500 do so no differently, in 3x the
    # time): 4,200 metric rows, 20 tracebacks of a megabyte, 36 MB of glued text.
    run = huge_run(notebooks=200)
    for text in (markdown_report(run), markdown_report(run, comparison=huge_comparison(run))):
        assert len(text) <= 65_000
        assert text.startswith("### ❌ nbci: 20 of 200 notebooks failed")
        assert "> [!NOTE]\n> Not everything is shown here:" in text
        assert "metric rows are not listed" in text
        assert "tracebacks are left out" in text
        assert "notebooks are left out" in text


def test_medium_run_keeps_some_sections() -> None:
    run = huge_run(notebooks=40, traceback_bytes=100_000)
    text = markdown_report(run)
    assert len(text) <= 65_000
    assert "tracebacks are cut to their last 1,500 characters" in text
    assert re.search(r"the figures, tables and texts of \d+ of 40 notebooks are left out", text)
    assert "<details><summary>✅ sweep-0001</summary>" in text


@pytest.mark.parametrize("limit", [2_000, 500, 50])
def test_tiny_limits_still_hold(limit: int) -> None:
    assert len(markdown_report(sample_run(), max_chars=limit)) <= limit


def test_html_traceback_is_capped_with_a_note() -> None:
    nb = NotebookResult(
        "big", "big.ipynb", {}, "failed",
        error=ErrorInfo(cell=1, ename="E", evalue="v", traceback="x" * 1_000_000 + "\nE: v"),
    )  # fmt: skip
    html = html_report(Run((nb,), created="2026-01-01T00:00:00Z"))
    assert len(html) < 300_000
    assert "characters of the traceback are left out here" in html
    assert "E: v" in html


# -- files on disk --------------------------------------------------------------------------


def test_write_reports(tmp_path: Path) -> None:
    run = sample_run()
    write_figures(run, tmp_path)
    paths = write_reports(run, tmp_path, comparison=sample_comparison(), verdict=sample_verdict())
    assert paths == [tmp_path / "report.md", tmp_path / "report.html"]
    assert not list(tmp_path.glob(".*.tmp"))
    html = paths[1].read_text(encoding="utf-8")
    # three figures, and the lr sweep's charts of accuracy and loss (n_features stays 20)
    assert html.count('src="data:image/png;base64,') == 3 + 2
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert 'href="notebooks/train-lr-0.1.html"' in html
    assert "Content-Security-Policy" in html and "<script" not in html


def test_write_reports_with_baseline_dir(tmp_path: Path) -> None:
    run = sample_run()
    out, base = tmp_path / "out", tmp_path / "base"
    write_figures(run, out)
    (base / "figures/train-lr-0.1").mkdir(parents=True)
    (base / "figures/train-lr-0.1/confusion.png").write_bytes(tiny_png(rgb=(200, 0, 0)))
    write_reports(run, out, comparison=sample_comparison(), baseline_dir=base)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert '<img src="../base/figures/train-lr-0.1/confusion.png"' in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<div class="pair">') == 1
    assert html.count("data:image/png;base64,") == 4 + 2  # and the sweep's two charts


def test_figures_outside_or_not_images_are_not_inlined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "figures/j").mkdir(parents=True)
    (out / "figures/j/fake.png").write_text("<html>not a png</html>")
    (tmp_path / "secret.png").write_bytes(tiny_png())
    (out / "figures/j/ok.svg").write_text(
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    )
    nb = NotebookResult(
        "j", "j.ipynb", {}, "ok",
        figures=(Figure("fake", "figures/j/fake.png"), Figure("escape", "figures/../../secret.png"),
                 Figure("svg", "figures/j/ok.svg")),
    )  # fmt: skip
    html = html_report(Run((nb,), created="2026-01-01T00:00:00Z"), out_dir=out)
    assert html.count("image file not available") == 2
    assert html.count("data:image/svg+xml;base64,") == 1  # an <img> never runs SVG scripts
    assert "data:image/png" not in html


def test_a_file_read_for_inlining_is_read_whole_unless_it_grew_past_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`read_inside` asks for the size the file had (not the 10 MiB cap: a read allocates
    what it asks for); a file that grew since is read on, up to the cap."""
    data = tiny_png() + b"x" * 100
    (tmp_path / "f.png").write_bytes(data)
    assert read_inside(tmp_path, "f.png", 1000) == data
    looked_at = (tmp_path / "f.png").lstat()
    smaller = SimpleNamespace(st_mode=looked_at.st_mode, st_size=10)  # before it grew
    monkeypatch.setattr(Path, "lstat", lambda self: smaller)
    assert read_inside(tmp_path, "f.png", 1000) == data
    assert (
        read_inside(tmp_path, "f.png", len(data) - 1) == "grew past the size cap while being read"
    )


def test_user_templates_override(tmp_path: Path) -> None:
    (tmp_path / "report.md.j2").write_text("custom {{ view.verdict.headline|md }}\n")
    (tmp_path / "style.css").write_text("body { color: rebeccapurple; }")
    run = sample_run()
    assert markdown_report(run, templates=tmp_path) == "custom 1 of 3 notebooks failed\n"
    html = html_report(run, templates=tmp_path)
    assert "rebeccapurple" in html and "<h1>1 of 3 notebooks failed</h1>" in html


@pytest.fixture
def new_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Compiled templates go to `tmp_path/tmp`; calling the fixture forgets the environments,
    as a new process would (what is left is the compiled files)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    templating._environment.cache_clear()
    yield templating._environment.cache_clear
    templating._environment.cache_clear()


def test_compiled_templates_are_kept_while_their_source_is_unchanged(
    tmp_path: Path, new_process: Callable[[], None]
) -> None:
    (tmp_path / "report.md.j2").write_text("first {{ view.verdict.headline|md }}\n")
    assert markdown_report(sample_run(), templates=tmp_path).startswith("first ")
    assert list((tmp_path / "tmp").glob("_jinja2-cache-*/__nbci_*.cache"))
    (tmp_path / "report.md.j2").write_text("second {{ view.verdict.headline|md }}\n")
    new_process()
    assert markdown_report(sample_run(), templates=tmp_path).startswith("second ")


def test_a_template_compiled_for_markdown_is_never_used_for_html(
    tmp_path: Path, new_process: Callable[[], None]
) -> None:
    (tmp_path / "shared.j2").write_text("{{ value }}")
    for html in (False, True, False, True):
        new_process()
        template = templating.environment(html=html, templates=tmp_path).get_template("shared.j2")
        assert template.render(value="<script>x</script>") == (
            "&lt;script&gt;x&lt;/script&gt;" if html else "<script>x</script>"
        )


def test_a_compiled_template_cache_that_cannot_be_kept_is_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_process: Callable[[], None]
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not-a-folder"))
    options = templating._Options(
        autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    assert templating._bytecode_cache(options) is None

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", disk_full)
    assert "1 of 3 notebooks failed" in markdown_report(sample_run())


def test_strict_undefined_in_templates(tmp_path: Path) -> None:
    (tmp_path / "report.md.j2").write_text("line one\n{{ view.no_such_field }}")
    where = f"{tmp_path / 'report.md.j2'}:2: UndefinedError: "
    with pytest.raises(TemplateError, match=re.escape(where) + ".*no_such_field"):
        markdown_report(sample_run(), templates=tmp_path)


def test_a_template_that_does_not_compile_is_one_line_naming_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "report.html.j2").write_text("<p>\n{% for x in view.notebooks %}\n")
    where = f"{tmp_path / 'report.html.j2'}:2: "
    with pytest.raises(TemplateError, match=re.escape(where) + "Unexpected end of template"):
        check_templates(tmp_path)
    with pytest.raises(ConfigError, match=r"^nbci.toml: templates: .*missing: no such folder$"):
        check_templates(tmp_path / "missing", where="nbci.toml:")
    check_templates(None)


# -- pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.93456, "0.9346"),
        (12.3456, "12.35"),
        (123456.7, "123457"),
        (0.99996, "1.000"),
        (3.0, "3.000"),
        (0.0012345, "0.001234"),
        (0.00012, "1.200e-04"),
        (1e20, "1.000e+20"),
        (0.0, "0"),
        (-0.02, "-0.02000"),
        (42, "42"),
        (10**20, "1.000e+20"),
        (True, "true"),
        (float("nan"), "NaN"),
        (float("inf"), "inf"),
    ],
)
def test_format_number(value: object, shown: str) -> None:
    assert format_number(value) == shown


def test_format_delta_percent_duration() -> None:
    assert format_delta(0.018) == "+0.01800"
    assert format_delta(-2) == "-2"
    assert format_delta(None) == ""
    assert [format_percent(f) for f in (0.021, -0.034, 0.27, 0.0052, 1e-8, 0.0999999, None)] == [
        "+2.1%", "-3.4%", "+27%", "+0.52%", "+<0.01%", "+10%", "",
    ]  # fmt: skip
    assert [format_duration(s) for s in (0.42, 12.34, 245, 3725)] == [
        "0.42 s", "12.3 s", "4 min 05 s", "1 h 02 min",
    ]  # fmt: skip


def test_image_type() -> None:
    assert image_type(tiny_png()) == "image/png"
    assert image_type(b"\xef\xbb\xbf  <svg xmlns='x'></svg>") == "image/svg+xml"
    assert image_type(b"<html><svg>") is None
    assert image_type(b"GIF89a...") == "image/gif"


def test_a_figure_over_the_one_cap_or_a_link_is_not_inlined(tmp_path: Path) -> None:
    """report.html shows what publish hosts: the same cap, and regular files only."""
    (tmp_path / "small.png").write_bytes(tiny_png())
    (tmp_path / "big.png").write_bytes(tiny_png() + b"\0" * MAX_FIGURE_BYTES)
    (tmp_path / "link.png").symlink_to(tmp_path / "small.png")

    assert image_data_uri(tmp_path, "small.png") is not None
    assert image_data_uri(tmp_path, "big.png") is None
    assert image_data_uri(tmp_path, "link.png") is None
    assert image_data_uri(tmp_path, "../small.png") is None


def test_sanitize_html_drops_active_content() -> None:
    clean = str(
        sanitize_html(
            '<p onclick="x()">hi</p><script>alert(1)</script><img src=x onerror=alert(1)>'
            '<a href="javascript:alert(1)">a</a><iframe src="https://e.test"></iframe>'
            '<img src="https://e.test/t.png"><img src="data:image/png;base64,iVBORw0KGgo=">'
            '<p style="background:url(https://e.test)">s</p><!-- c -->'
        )
    )
    assert clean == (
        '<p>hi</p><a rel="noopener noreferrer nofollow">a</a>'
        '<img src="data:image/png;base64,iVBORw0KGgo="><p>s</p>'
    )


def test_view_is_plain_data() -> None:
    view = build_view(sample_run(), comparison=sample_comparison(), verdict=sample_verdict())
    assert dataclasses.is_dataclass(view)
    assert view.verdict.facts == (
        "2 passed", "1 failed", "1 cached", "gates: 3 of 5 failed", "1 regression", "1 improvement",
    )  # fmt: skip
    assert [n.kind for n in view.notices] == ["fail", "fail", "fail", "fail"]
    assert view.notebooks[2].change == "newly failing: passed on the baseline"


def test_added_removed_and_fixed_jobs_are_called_out() -> None:
    from nbci.model import Comparison, JobChange, MetricDelta

    run = sample_run()
    comparison = Comparison(
        "main",
        (MetricDelta("gone", "auc", 0.8, None, "higher"),),
        jobs=(
            JobChange("train-lr-1", baseline_status=None, status="ok"),
            JobChange("gone", baseline_status="ok", status=None),
            JobChange("train-lr-0.1", baseline_status="failed", status="ok"),
        ),
    )
    text = markdown_report(run, comparison=comparison)
    assert "- ✅ train-lr-0.1 passes again" in text
    assert "- ℹ️ New, not in the baseline: train-lr-1" in text
    assert "- ⚠️ Not in this run any more: gone" in text
    assert "| gone | auc | 0.8000 | – | removed |" in text


@pytest.mark.parametrize("total_rows", [10**400, 1e400, float("nan"), True, "many"])
def test_a_table_with_an_impossible_row_count_still_renders(total_rows: object) -> None:
    table = Scrap("table", {"columns": ["a"], "rows": [[1]], "total_rows": total_rows})
    notebook = NotebookResult(
        id="t", path="t.ipynb", parameters={}, status="ok", scraps={"table": table}
    )
    run = Run(notebooks=(notebook,), created="2026-11-26T22:00:00Z")
    assert "| 1 |" in markdown_report(run).replace("|:---|", "")
    assert "<table" in html_report(run)


def test_a_summary_without_images_says_so_in_one_sentence() -> None:
    from handmade_runs import sample_run

    text = markdown_report(sample_run(), images=False)
    assert "> Not everything is shown here: figures are named, not shown. Everything is in" in text
