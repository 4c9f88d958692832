"""A yes-or-not-sure check of a document against one of nbci's schemas, without jsonschema.

Importing jsonschema (with `referencing`, `attrs` and `rpds`) took 45 to 110 ms of every
`nbci run`, about a tenth of one whose notebooks all came from the cache, to check a
configuration and cache entries that are almost always valid. `conforms` answers True only
when the document is valid under draft 2020-12 as jsonschema reads these schemas (no
format assertion); False means invalid *or not sure* (a keyword it does not know, a
value that is not JSON, nesting too deep), and jsonschema then decides and words the
problem (`first_problem`). So it may only ever be stricter than jsonschema, never laxer:
each keyword below follows `jsonschema/_keywords.py`, and `tests/test_schemas.py`
compares the two verdicts on generated documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

Schema = Any
"""A schema: a JSON object, or true or false."""

_ANNOTATIONS = frozenset(
    ("$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples")
)
"""Keywords that assert nothing (`format` too: nbci's validators check no format)."""
_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


class _NotSure(Exception):
    """A keyword or a value this check does not decide: jsonschema does."""


def conforms(document: Any, schema: Schema) -> bool:
    """True if `document` is valid under `schema` (local `$ref`s resolve in `schema`)."""
    try:
        return _Check(schema).valid(document, schema)
    except (_NotSure, RecursionError):
        return False


class _Check:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def valid(self, value: Any, schema: Schema) -> bool:
        if schema is True:
            return True
        if schema is False:
            return False
        if not isinstance(schema, Mapping) or not isinstance(value, _JSON_TYPES):
            raise _NotSure
        for keyword, argument in schema.items():
            if keyword in _ANNOTATIONS or keyword == "format" or keyword.startswith("x-"):
                continue
            check = _KEYWORDS.get(keyword)
            if check is None:
                raise _NotSure(keyword)
            if not check(self, value, argument, schema):
                return False
        return True

    def ref(self, value: Any, ref: Any, _: Mapping[str, Any]) -> bool:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise _NotSure(ref)
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, Mapping) or part not in target or "~" in part:
                raise _NotSure(ref)
            target = target[part]
        return self.valid(value, target)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "number":
        return _number(value)
    if kind == "integer":
        return _number(value) and (isinstance(value, int) or value.is_integer())
    raise _NotSure(kind)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality: `true` is not `1`, `1` is `1.0`, containers compared deeply."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    return bool(one == two)


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _type(check: _Check, value: Any, kinds: Any, _: Mapping[str, Any]) -> bool:
    return any(_is_type(value, kind) for kind in ([kinds] if isinstance(kinds, str) else kinds))


def _properties(check: _Check, value: Any, properties: Any, _: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    return all(check.valid(value[k], s) for k, s in properties.items() if k in value)


def _additional(check: _Check, value: Any, additional: Any, schema: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    if "patternProperties" in schema:
        raise _NotSure("patternProperties")
    known = schema.get("properties", {})
    return all(check.valid(value[k], additional) for k in value if k not in known)


def _required(check: _Check, value: Any, names: Any, _: Mapping[str, Any]) -> bool:
    return not isinstance(value, dict) or all(name in value for name in names)


def _items(check: _Check, value: Any, items: Any, schema: Mapping[str, Any]) -> bool:
    if "prefixItems" in schema or isinstance(items, list):
        raise _NotSure("prefixItems")
    return not isinstance(value, list) or all(check.valid(item, items) for item in value)


def _property_names(check: _Check, value: Any, names: Any, _: Mapping[str, Any]) -> bool:
    return not isinstance(value, dict) or all(check.valid(key, names) for key in value)


def _if(check: _Check, value: Any, condition: Any, schema: Mapping[str, Any]) -> bool:
    if check.valid(value, condition):
        return "then" not in schema or check.valid(value, schema["then"])
    return "else" not in schema or check.valid(value, schema["else"])


def _all_of(check: _Check, value: Any, schemas: Any, _: Mapping[str, Any]) -> bool:
    return all(check.valid(value, s) for s in schemas)


def _any_of(check: _Check, value: Any, schemas: Any, _: Mapping[str, Any]) -> bool:
    return any(check.valid(value, s) for s in schemas)


def _one_of(check: _Check, value: Any, schemas: Any, _: Mapping[str, Any]) -> bool:
    return sum(check.valid(value, s) for s in schemas) == 1


def _bounded(
    applies: Callable[[Any], bool], fits: Callable[[Any, Any], bool]
) -> Callable[[_Check, Any, Any, Mapping[str, Any]], bool]:
    """A keyword that checks only values `applies` to, and those with `fits(value, limit)`."""
    return lambda check, value, limit, schema: not applies(value) or fits(value, limit)


_KEYWORDS: dict[str, Callable[[_Check, Any, Any, Mapping[str, Any]], bool]] = {
    "$ref": lambda check, value, ref, schema: check.ref(value, ref, schema),
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "items": _items,
    "propertyNames": _property_names,
    "if": _if,
    "then": lambda *_: True,  # checked with its `if`
    "else": lambda *_: True,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "const": lambda check, value, const, schema: _equal(value, const),
    "enum": lambda check, value, enum, schema: any(_equal(value, each) for each in enum),
    "minimum": _bounded(_number, lambda v, limit: not v < limit),
    "maximum": _bounded(_number, lambda v, limit: not v > limit),
    "exclusiveMinimum": _bounded(_number, lambda v, limit: not v <= limit),
    "exclusiveMaximum": _bounded(_number, lambda v, limit: not v >= limit),
    "minLength": _bounded(lambda v: isinstance(v, str), lambda v, limit: len(v) >= limit),
    "maxLength": _bounded(lambda v: isinstance(v, str), lambda v, limit: len(v) <= limit),
    "pattern": _bounded(lambda v: isinstance(v, str), lambda v, p: bool(_pattern(p).search(v))),
    "minItems": _bounded(lambda v: isinstance(v, list), lambda v, limit: len(v) >= limit),
    "maxItems": _bounded(lambda v: isinstance(v, list), lambda v, limit: len(v) <= limit),
    "maxProperties": _bounded(lambda v: isinstance(v, dict), lambda v, limit: len(v) <= limit),
    "minProperties": _bounded(lambda v: isinstance(v, dict), lambda v, limit: len(v) >= limit),
}
"""Every keyword decided here, as jsonschema's draft 2020-12 validator decides it."""

KNOWN = frozenset(_KEYWORDS) | _ANNOTATIONS | {"format"}
"""What a shipped schema may use and still be checked here (a test holds them to it)."""
