"""`nbci.schemas._conforms`: the check that knows a valid document without jsonschema agrees
with jsonschema, never accepts what jsonschema rejects, and spares a valid document's
reader the import of jsonschema."""

from __future__ import annotations

import copy
import datetime
import functools
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import examples
from handmade_runs import sample_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from sweep_samples import sweep_runs
from test_config import FULL

from nbci import schemas
from nbci.config import load_config
from nbci.errors import ResultsError
from nbci.results import read_run, run_from_dict, run_to_dict, write_run
from nbci.schemas._conforms import KNOWN, conforms

SHIPPED = [*schemas.RESULTS_SCHEMAS.values(), schemas.CONFIG_SCHEMA]


def keywords(node: Any) -> set[str]:
    """Every keyword of a schema, at every depth (not the names of its properties)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= keywords(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for schema in value.values():
                    found |= keywords(schema)
            elif key not in ("enum", "const", "required", "default", "examples"):
                found |= keywords(value)
    return {k for k in found if not k.startswith("x-")}


def valid_documents() -> list[tuple[str, Any]]:
    table = tomllib.loads(FULL)["tool"]["nbci"]
    table["gates"] = {"accuracy": {"min": 0.9}, "loss": {"max_increase": 0.1}}
    before, after, _ = sweep_runs()
    return [
        ("results-3.schema.json", run_to_dict(sample_run())),
        ("results-3.schema.json", run_to_dict(after)),
        ("results-3.schema.json", run_to_dict(before)),
        (schemas.CONFIG_SCHEMA, table),
    ]


def jsonschema_valid(document: Any, file: str) -> bool:
    return not any(True for _ in schemas._validator(file).iter_errors(document))


@pytest.mark.parametrize("file", SHIPPED)
def test_every_keyword_of_the_shipped_schemas_is_decided_without_jsonschema(file: str) -> None:
    """A keyword it does not know leaves a document to jsonschema: correct, but slow."""
    assert keywords(schemas.load(file)) <= KNOWN


def test_valid_documents_conform() -> None:
    for file, document in valid_documents():
        assert jsonschema_valid(document, file)
        assert conforms(document, schemas._checked(file))
        assert schemas.first_problem(document, file) is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=10**6)
    | st.floats()
    | st.sampled_from([1.0, 0.0, -1.0, 2.5, "", "ok", "failed", "a/b.ipynb", "../x", "NaN"])
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _places(node: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [where]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, (*where, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _places(value, (*where, index))
    return found


@settings(max_examples=examples(600), suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_verdict_is_jsonschemas_on_documents_changed_anywhere(data: st.DataObject) -> None:
    """One value replaced, one key removed or one key added, anywhere in a valid document."""
    file, document = data.draw(st.sampled_from(valid_documents()))
    document = copy.deepcopy(document)
    where = data.draw(st.sampled_from(_places(document)[1:]))
    parent = document
    for key in where[:-1]:
        parent = parent[key]
    change = data.draw(st.sampled_from(["replace", "remove", "add"]))
    if change == "replace":
        parent[where[-1]] = data.draw(json_values)
    elif change == "remove":
        del parent[where[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=8))] = data.draw(json_values)
    else:
        parent.append(data.draw(json_values))

    assert conforms(document, schemas._checked(file)) == jsonschema_valid(document, file)


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "integer"}, 1.0),
        ({"type": "integer"}, 1.5),
        ({"type": "integer"}, True),
        ({"type": "number"}, False),
        ({"type": ["string", "null"]}, None),
        ({"const": 1}, True),
        ({"const": 1}, 1.0),
        ({"const": [1, {"a": False}]}, [1, {"a": 0}]),
        ({"enum": [0, "x"]}, False),
        ({"enum": [{"a": 1}]}, {"a": 1}),
        ({"pattern": "b"}, "abc"),  # a search, not a match
        ({"pattern": "^b"}, "abc"),
        ({"pattern": "^b"}, 3),  # not a string: not checked
        ({"minimum": 1}, "0"),
        ({"minimum": 1}, float("nan")),
        ({"exclusiveMinimum": 0}, 0),
        ({"maxLength": 2}, "ab"),
        ({"maxLength": 2}, "\U0001f600\U0001f600\U0001f600"),
        ({"maxItems": 1, "minItems": 1}, []),
        ({"maxProperties": 1}, {"a": 1, "b": 2}),
        ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"b": 1}),
        ({"additionalProperties": {"type": "string"}}, {"b": 1}),
        ({"required": ["a"]}, []),
        ({"required": ["a"]}, {"b": 1}),
        ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"A": 1}),
        ({"items": {"type": "string"}}, ["a", 1]),
        ({"items": False}, []),
        ({"if": {"type": "string"}, "then": {"minLength": 2}}, "a"),
        ({"if": {"type": "string"}, "then": {"minLength": 2}}, 1),
        ({"if": {"type": "string"}, "else": {"minimum": 2}}, 1),
        ({"then": False}, 1),  # `then` without `if` asserts nothing
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, []),
        ({"allOf": [{"minimum": 1}, {"maximum": 2}]}, 3),
        ({"$ref": "#/$defs/short", "$defs": {"short": {"maxLength": 1}}}, "ab"),
        ({"$ref": "#/$defs/short", "maxLength": 3, "$defs": {"short": {"minLength": 2}}}, "a"),
        ({"format": "date-time"}, "not a date"),  # formats are not asserted
        (True, {"a": 1}),
        (False, None),
    ],
)
def test_each_keyword_decides_as_jsonschema_does(schema: Any, value: Any) -> None:
    root = schema if isinstance(schema, dict) else {"allOf": [schema]}
    assert conforms(value, root) == Draft202012Validator(root).is_valid(value)


NESTED = {"$ref": "#/$defs/list", "$defs": {"list": {"items": {"$ref": "#/$defs/list"}}}}


def deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"uniqueItems": True}, [1, 1]),  # a keyword it does not know
        ({"prefixItems": [{"type": "string"}]}, [1]),
        ({"patternProperties": {"^x": {}}, "additionalProperties": False}, {"xa": 1}),
        ({"$ref": "https://example.com/schema"}, 1),
        ({"type": "string"}, datetime.date(2026, 12, 3)),  # TOML gives dates: not JSON
        (NESTED, deeply_nested(5000)),
    ],
)
def test_what_it_does_not_know_is_left_to_jsonschema(schema: Any, value: Any) -> None:
    assert conforms(value, schema) is False


def test_a_valid_configuration_and_run_are_read_without_importing_jsonschema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a warm `nbci run` reads; a problem found still imports jsonschema to word it."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("jsonschema", "referencing")]:
        monkeypatch.delitem(sys.modules, name)  # as in a fresh process; put back afterwards
    monkeypatch.setattr(schemas, "_validator", functools.cache(schemas._validator.__wrapped__))
    (tmp_path / "nbci.toml").write_text(FULL.replace("[tool.nbci]\n", "").replace("tool.nbci.", ""))
    write_run(sample_run(), tmp_path)

    load_config(tmp_path)
    read_run(tmp_path)
    assert "jsonschema" not in sys.modules

    with pytest.raises(ResultsError, match=r"^x: notebooks: expected a list, got nothing$"):
        run_from_dict({"schema": "nbci.results/3"}, source="x")
    assert "jsonschema" in sys.modules
