"""The JSON Schemas nbci ships, and one way to check a document against one of them.

`results-N.schema.json` is `nbci.results/N`, the contract of `results.json`;
`config.schema.json` is the configuration table. Both are standard JSON Schema
(draft 2020-12), for anyone who reads runs or writes configurations.

A document's first problem (in the order of the file) becomes one line:
`WHERE: expected WHAT, got VALUE`. Two keywords of nbci's own, which other
validators ignore, give the words: `x-expected` (WHAT, for every keyword of
the schema that holds it), `x-missing` (WHAT, when a required key is absent)
and `x-error` (the whole text after `WHERE: `, `{value}` standing for the
offending value).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from nbci.schemas._conforms import conforms

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

RESULTS_SCHEMAS = {
    "nbci.results/1": "results-1.schema.json",
    "nbci.results/2": "results-2.schema.json",  # adds each notebook's series (curves)
    "nbci.results/3": "results-3.schema.json",  # adds each notebook's effective parameters
}
"""Every results.json version nbci reads, and its schema file here (the last one is written)."""

CONFIG_SCHEMA = "config.schema.json"

Where = tuple[str | int, ...]
"""Where in a document: object keys and list indices from the top."""

_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
}
_SHOWN = 60
_ERRORS_SORTED = 100


@dataclass(frozen=True)
class Problem:
    """Why a document does not fit its schema: where, and what is wrong there."""

    where: Where
    message: str


def shown(value: Any) -> str:
    """A value as messages quote it: its repr, cut to a line's worth."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@functools.cache
def load(file: str) -> Mapping[str, Any]:
    """A schema shipped in this folder, parsed."""
    text = resources.files(__package__).joinpath(file).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _checked(file: str) -> Mapping[str, Any]:
    """The schema `file` as documents are checked against it (`_inlined`)."""
    root = load(file)
    return {**_inlined(root, root, ()), "$defs": root.get("$defs", {})}


@functools.cache
def _validator(file: str) -> Validator:
    import_jsonschema()
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_checked(file))


_FORMAT_LIBRARIES = (
    "rfc3987_syntax",
    "isoduration",
    "webcolors",
    "uri_template",
    "jsonpointer",
    "fqdn",
    "idna",
    "rfc3987",
    "rfc3986_validator",
    "rfc3339_validator",
)
"""What jsonschema imports, each inside `suppress(ImportError)`, to check `format`s."""


def import_jsonschema(without: Iterable[str] = _FORMAT_LIBRARIES) -> None:
    """Import jsonschema without the libraries that check `format`s (`without`): nbci checks
    none (its validators have no format checker), and one of them, `rfc3987_syntax`,
    compiles 38 grammars as it is imported, about 2 s of every `nbci merge`, `report`,
    `diff` and `publish` and of every worker's start, where nbformat imports jsonschema
    (python-jsonschema/jsonschema#1428; `isoduration` brings `arrow`, 70 ms more).
    jsonschema goes without those checkers; once it is imported (by nbci or another library
    of the process) nothing changes, and those libraries stay importable."""
    if "jsonschema" in sys.modules:
        return
    blocked = [name for name in without if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it: ImportError
    try:
        import jsonschema  # noqa: F401
    finally:
        for name in blocked:
            del sys.modules[name]


def _inlined(node: Any, root: Mapping[str, Any], expanding: tuple[str, ...]) -> Any:
    """The schema with local `$ref`s replaced by what they point to (recursive ones kept).

    Same meaning, several times faster to check: jsonschema looks every `$ref`
    up again for every value it checks. Keywords beside a `$ref` stay beside it
    (`allOf`), so messages still come from the schema that holds the keyword.
    """
    if isinstance(node, list):
        return [_inlined(item, root, expanding) for item in node]
    if not isinstance(node, Mapping):
        return node
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/") or ref in expanding:
        return {key: _inlined(value, root, expanding) for key, value in node.items()}
    target = _inlined(_pointer(ref, root), root, (*expanding, ref))
    beside = {key: _inlined(value, root, expanding) for key, value in node.items() if key != "$ref"}
    return {"allOf": [target], **beside} if beside else target


def first_problem(document: Any, file: str) -> Problem | None:
    """The first place (in document order) where `document` breaks the schema `file`.

    Only the first errors found are sorted: a hostile file can hold millions. A valid
    document is known without jsonschema (`conforms`), which is imported only to find and
    word a problem.
    """
    if conforms(document, _checked(file)):
        return None
    errors = list(itertools.islice(_validator(file).iter_errors(document), _ERRORS_SORTED))
    if not errors:
        return None
    error = min(errors, key=lambda e: _document_order(document, e.absolute_path))
    return _describe(error, load(file))


def _document_order(document: Any, path: Iterable[str | int]) -> tuple[int, ...]:
    """Sort key: positions of a path's keys in their objects, so the file's order wins."""
    order, node = [], document
    for key in path:
        if isinstance(node, Mapping):
            order.append(list(node).index(key) if key in node else len(node))
            node = node.get(key)
        elif isinstance(node, Sequence) and isinstance(key, int):
            order.append(key)
            node = node[key]
        else:
            break
    return tuple(order)


def _describe(error: ValidationError, root: Mapping[str, Any]) -> Problem:
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    where: Where = tuple(error.absolute_path)
    value: Any = error.instance
    keyword = error.validator
    if keyword == "required":
        missing = next(k for k in schema["required"] if k not in value)
        prop = schema["properties"].get(missing, {})
        expected = prop.get("x-missing") or _expected(_resolve(prop, root))
        return Problem((*where, missing), f"expected {expected}, got nothing")
    if keyword == "additionalProperties" and schema.get("additionalProperties") is False:
        return _unknown_key(where, value, schema)
    if "x-error" in schema:
        return Problem(where, str(schema["x-error"]).format(value=shown(value)))
    if keyword == "enum" and "x-expected" not in schema:
        return Problem(where, f"{shown(value)} is not one of {tuple(schema['enum'])}")
    if "x-expected" not in schema:
        counted = {"maxProperties": "entries", "maxItems": "items", "maxLength": "characters"}
        if keyword in counted:
            unit = counted[str(keyword)]
            return Problem(
                where,
                f"expected at most {error.validator_value} {unit}, "
                f"got {shown(f'{len(value)} {unit}')}",
            )
    return Problem(where, f"expected {_expected(schema)}, got {shown(value)}")


def _unknown_key(where: Where, table: Mapping[str, Any], schema: Mapping[str, Any]) -> Problem:
    known = sorted(schema.get("properties", {}))
    key = next(k for k in table if k not in known)
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Problem((*where, key), f"unknown key{hint}")


def _expected(schema: Mapping[str, Any]) -> str:
    """What a value under `schema` should be, in a user's words."""
    if "x-expected" in schema:
        return str(schema["x-expected"])
    kinds = schema.get("type", ())
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind in _TYPE_WORDS:
            return _TYPE_WORDS[kind]
    return "a valid value"


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema that says what a value should be: itself, or what its `$ref` (or the
    inlined `allOf` of one) points to."""
    if "x-expected" in schema or "type" in schema:
        return schema
    ref, all_of = schema.get("$ref"), schema.get("allOf")
    if isinstance(ref, str) and ref.startswith("#/"):
        return _resolve(_pointer(ref, root), root)
    if isinstance(all_of, list) and len(all_of) == 1:
        return _resolve(all_of[0], root)
    return schema


def _pointer(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    found: Mapping[str, Any] = target
    return found


def dotted(where: Where) -> str:
    """`notebooks[0].metrics.loss`: a path as messages name it; a key that would not
    print on one line is quoted (`metrics['a\\nb']`), so a message stays one line."""
    text = ""
    for key in where:
        if isinstance(key, int):
            text += f"[{key}]"
        elif not key.isprintable():
            text += f"[{key!r}]"
        else:
            text += f".{key}" if text else key
    return text
