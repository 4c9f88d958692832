"""results.json from an untrusted source: whatever `read_run` accepts can be used safely.

tests/test_results.py checks that bad fields are rejected by name. Here the
properties run the other way: anything the reader lets through must write
back and read again unchanged, render both reports within their bounds, and
compare and gate without crashing; and no bytes at all (garbage, or a file cut
short by a crash) make the reader raise anything but `ResultsError`.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from conftest import examples
from handmade_runs import sample_run
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nbci.compare import compare
from nbci.errors import ResultsError
from nbci.gates import evaluate, parse_gates
from nbci.model import Run
from nbci.render import markdown_report
from nbci.render.markdown import MAX_CHARS
from nbci.render.report import html_report
from nbci.results import read_run, run_from_dict, run_to_dict, write_run

VALID = run_to_dict(sample_run())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as a key path (the root excluded)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


PLACES = _paths(VALID)

# What an attacker can put in a JSON file, with the edge numbers that bite:
# floats that overflow to ±inf (`1e400` in the text), ints beyond float range,
# the string spellings of non-finite numbers, and hostile text.
hostile_text = st.sampled_from(
    [
        "",
        "../../etc/passwd",
        "/abs",
        "NaN",
        "Infinity",
        "-Infinity",
        "<script>alert(1)</script>",
        "a|b\n---",
        "@admin #1",
        "\x00\u202e\ud7ff",
        "figures/x/y.png",
        "notebooks/x.ipynb",
    ]
) | st.text(max_size=30)
EDGE_NUMBERS = [math.inf, -math.inf, math.nan, 10**400, -(10**400), 2**63, 1e308, -1, -0.0, 0]
numbers = (
    st.sampled_from(EDGE_NUMBERS)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def tampered(draw: st.DrawFn) -> dict[str, Any]:
    """The valid run with a few places replaced (or keys added) by hostile values.

    A place mostly gets a hostile value of its own kind (edge numbers for a
    number, odd text for a text), so that the checks of each field are reached.
    """
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        place = draw(st.sampled_from(PLACES))
        parent: Any = data
        try:
            for key in place[:-1]:
                parent = parent[key]
            current = parent[place[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this place
        if not isinstance(parent, dict | list):
            continue  # ... or replaced its container with a string
        if isinstance(current, int | float) and not isinstance(current, bool):
            value = draw(numbers | json_values)
        elif isinstance(current, str):
            value = draw(hostile_text | json_values)
        else:
            value = draw(json_values)
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            parent[draw(hostile_text)] = value  # an extra key beside it
        else:
            parent[place[-1]] = value
    return data


def outside_code_blocks(markdown: str) -> str:
    """The markdown without the contents of its fenced code blocks (shown verbatim there)."""
    kept, fence = [], ""
    for line in markdown.splitlines():
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence) and not stripped.strip("`"):
                fence = ""
            continue
        if stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            continue
        kept.append(line)
    return "\n".join(kept)


def _accepted(data: dict[str, Any]) -> Run | None:
    try:
        return run_from_dict(data, source="artifact/results.json")
    except ResultsError:
        return None


def _canonical(run: Run) -> str:
    return json.dumps(run_to_dict(run), sort_keys=True, allow_nan=False)


ACCEPTED_ONLY = [HealthCheck.too_slow, HealthCheck.filter_too_much]
"""Tests of the accepted runs only: about a third of the tampered ones, so Hypothesis filters
many out by design (its health check failed the lane now and then)."""


@settings(max_examples=examples(250), deadline=None, suppress_health_check=ACCEPTED_ONLY)
@given(tampered())
def test_whatever_is_accepted_writes_back_and_reads_the_same(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]
) -> None:
    run = _accepted(data)
    assume(run is not None)  # about a third of the tampered runs are accepted
    assert run is not None
    out = tmp_path_factory.mktemp("run")
    again = read_run(write_run(run, out))
    assert _canonical(again) == _canonical(run)
    for nb in again.notebooks:
        assert all(isinstance(v, int | float) for v in nb.metrics.values())
        assert nb.duration_s >= 0 and math.isfinite(nb.duration_s)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=ACCEPTED_ONLY)
@given(tampered())
def test_whatever_is_accepted_renders_compares_and_gates(data: dict[str, Any]) -> None:
    run = _accepted(data)
    assume(run is not None)
    assert run is not None
    comparison = compare(run, sample_run(), label="base")
    rules = parse_gates({"accuracy": {"min": 0.5, "max_drop": "1%"}, "*": {"required": True}}, "x")
    verdict = evaluate(rules, run, comparison)
    markdown = markdown_report(run, comparison=comparison, verdict=verdict)
    assert len(markdown) <= MAX_CHARS
    assert "<script" not in outside_code_blocks(markdown).lower()
    html = html_report(run, comparison=comparison, verdict=verdict)
    assert "<script>alert" not in html


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_read_or_rejected_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    folder = tmp_path_factory.mktemp("garbage")
    (folder / "results.json").write_bytes(content)
    try:
        read_run(folder)
    except ResultsError as error:
        assert "\n" not in str(error).strip()


VALID_TEXT = json.dumps(VALID, indent=2, allow_nan=False).encode()


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID_TEXT) - 1))
def test_a_results_file_cut_short_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, length: int
) -> None:
    """What a reader would see of a file written without `os.replace`, killed midway."""
    folder = tmp_path_factory.mktemp("cut")
    (folder / "results.json").write_bytes(VALID_TEXT[:length])
    with pytest.raises(ResultsError):
        read_run(folder)


@pytest.mark.parametrize(
    ("place", "value"),
    [
        (("notebooks", 0, "duration_s"), math.inf),  # `1e400` in the file
        (("notebooks", 0, "duration_s"), 10**400),  # an int no float can hold
        (("notebooks", 0, "duration_s"), -1.0),
        (("notebooks", 0, "scraps", "table", "value", "total_rows"), math.inf),
        (("notebooks", 0, "scraps", "table", "value", "total_rows"), -5),
        (("notebooks", 0, "scraps", "table", "value", "total_rows"), 2.5),
    ],
    ids=[
        "inf-duration",
        "huge-int-duration",
        "negative-duration",
        "inf-rows",
        "negative-rows",
        "fractional-rows",
    ],
)
def test_numbers_that_cannot_be_written_back_are_rejected(
    place: tuple[Any, ...], value: Any
) -> None:
    """Found by the properties above: these were accepted (or crashed) and then broke
    `write_run` (merge, publish's stored baseline) or the next `read_run`."""
    data = copy.deepcopy(VALID)
    target: Any = data
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = value
    with pytest.raises(ResultsError, match=str(place[-1])):
        run_from_dict(data, source="artifact/results.json")
