"""Where scraps sit in the outputs: papermill < 1.0's record and display outputs too."""

from __future__ import annotations

from typing import Any

from scrapbook_outputs import scrap, shown

from nbci.scrap_outputs import Found, Notes, find_scraps

RECORD = "application/papermill.record+json"


def record(payload: Any, mime: str = RECORD) -> dict[str, Any]:
    """What papermill < 1.0's `pm.record(name, value)` wrote."""
    return {"output_type": "display_data", "data": {mime: payload}, "metadata": {}}


def legacy_display(name: Any, bundle: dict[str, Any]) -> dict[str, Any]:
    """What papermill < 1.0's `pm.display(name, obj)` wrote."""
    return {
        "output_type": "display_data",
        "data": bundle,
        "metadata": {"papermill": {"name": name}},
    }


def found_in(*outputs: dict[str, Any]) -> tuple[dict[str, Found], tuple[str, ...]]:
    notes = Notes()
    found = find_scraps([{"cell_type": "code", "outputs": list(outputs)}], notes)
    return found, notes.result()


def test_records_are_json_data_and_legacy_displays_are_displays() -> None:
    found, notes = found_in(
        record({"accuracy": 0.5}),
        record({"labels": ["a", "b"]}),
        legacy_display("f1", {"text/plain": "0.25"}),
    )
    assert notes == ()
    assert found == {
        "accuracy": Found("json", 0.5),
        "labels": Found("json", ["a", "b"]),
        "f1": Found(display={"text/plain": "0.25"}),
    }


def test_a_record_of_two_values_keeps_the_first_like_scrapbook_and_says_so() -> None:
    found, notes = found_in(record({"a": 1, "b": 2, "c": 3}))
    assert found == {"a": Found("json", 1)}
    assert notes == (
        "skipped 'b', 'c': a record output holds one value (scrapbook reads the first)",
    )


def test_unusable_records_are_notes_never_silent() -> None:
    found, notes = found_in(
        record([1, 2]), record({}), record({"x": 1}, mime="application/papermill.record+yaml")
    )
    assert found == {}
    assert notes == (
        "skipped a malformed papermill record output ('application/papermill.record+json')",
        "skipped a malformed papermill record output ('application/papermill.record+json')",
        "skipped a malformed papermill record output ('application/papermill.record+yaml')",
    )


def test_later_outputs_win_across_both_formats() -> None:
    found, _ = found_in(
        record({"acc": 0.5}),
        scrap("acc", 0.75),
        shown("fig", {"text/plain": "old"}),
        legacy_display("fig", {"text/plain": "new"}),
    )
    assert found == {"acc": Found("json", 0.75), "fig": Found(display={"text/plain": "new"})}


def myst_glue(name: str, bundle: dict[str, Any], *, display: bool) -> dict[str, Any]:
    """What MyST-NB's `glue(name, value, display=display)` writes: the value's display,
    its mime types prefixed when it is not displayed."""
    prefix = "" if display else "application/papermill.record/"
    return {
        "output_type": "display_data",
        "data": {prefix + mime: value for mime, value in bundle.items()},
        "metadata": {"scrapbook": {"name": name, "mime_prefix": prefix}},
    }


def test_myst_nb_glue_outputs_are_read_as_displays_of_the_value() -> None:
    found, notes = found_in(
        myst_glue("accuracy", {"text/plain": "0.93"}, display=False),
        myst_glue("table", {"text/plain": "df", "text/html": "<table/>"}, display=True),
        myst_glue("plot", {"image/png": "iVBOR", "text/plain": "<Figure>"}, display=False),
    )
    assert notes == ()
    assert found == {
        "accuracy": Found(display={"text/plain": "0.93"}),
        "table": Found(display={"text/plain": "df", "text/html": "<table/>"}),
        "plot": Found(display={"image/png": "iVBOR", "text/plain": "<Figure>"}),
    }
