"""Gate rules: parsing `[tool.nbci.gates]` into `GateRule`s (what each rule means is
in `nbci.gates`' docstring)."""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbci.errors import GateRuleError

RULE_KEYS = ("min", "max", "max_drop", "max_rise", "required", "outside_range")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Bound:
    """A `max_drop` / `max_rise` limit: absolute, or a percentage of |baseline|."""

    value: float
    relative: bool = False

    def limit(self, baseline: float) -> float:
        return self.value / 100 * abs(baseline) if self.relative else self.value

    def __str__(self) -> str:
        return f"{plain(self.value)}%" if self.relative else plain(self.value)


@dataclass(frozen=True)
class GateRule:
    """One parsed rule of `[tool.nbci.gates]`."""

    key: str
    """As written: `METRIC`, `JOB_ID:METRIC`, or a glob on either part."""
    min: float | None = None
    max: float | None = None
    max_drop: Bound | None = None
    max_rise: Bound | None = None
    required: bool = False
    outside_range: bool = False
    """`max_drop` / `max_rise` fail only when the value is also outside the base
    branch's range (with history; without, they fail as usual)."""

    @property
    def job_pattern(self) -> str | None:
        """The part before the first `:`; None for a bare metric rule."""
        job, sep, _ = self.key.partition(":")
        return job if sep else None

    @property
    def metric_pattern(self) -> str:
        return self.key.partition(":")[2] if ":" in self.key else self.key

    def matches_job(self, job_id: str) -> bool:
        pattern = self.job_pattern
        return pattern is None or fnmatch.fnmatchcase(job_id, pattern)

    def matches_metric(self, metric: str) -> bool:
        return fnmatch.fnmatchcase(metric, self.metric_pattern)


# -- parsing -------------------------------------------------------------------


def parse_gates(
    table: Mapping[str, Any], source: str, *, table_name: str = "[tool.nbci.gates]"
) -> tuple[GateRule, ...]:
    """Validate the gates table; `source` (the file) and `table_name` (`[gates]` in
    an nbci.toml) say where in error messages.

    Raises `GateRuleError` (`<source>: <table_name> "<key>": <what is wrong>,
    <what is expected>`) for anything that is not a valid rule.
    """
    where = f"{source}: {table_name}"
    if not isinstance(table, Mapping):
        raise GateRuleError(f"{where} must be a table of rules, got {_kind(table)}")
    return tuple(_parse_rule(key, value, f"{where} {show(key)}") for key, value in table.items())


def _parse_rule(key: object, value: object, where: str) -> GateRule:
    if not isinstance(key, str) or not key:
        raise GateRuleError(f"{where}: a rule needs a key like accuracy or train:loss")
    job, sep, metric = key.partition(":")
    if sep and (not job or not metric):
        raise GateRuleError(f"{where}: expected METRIC or JOB_ID:METRIC, both parts non-empty")
    if not isinstance(value, Mapping):
        raise GateRuleError(
            f'{where}: expected a table like {{ min = 0.9, max_drop = "1%" }}, got {_kind(value)}'
        )
    for name in value:
        if name not in RULE_KEYS:
            raise GateRuleError(f"{where}: unknown key {show(name)}{_did_you_mean(name)}")
    rule = GateRule(
        key=key,
        min=_absolute(value, "min", where),
        max=_absolute(value, "max", where),
        max_drop=_bound(value, "max_drop", where),
        max_rise=_bound(value, "max_rise", where),
        required=_flag(value, "required", where),
        outside_range=_flag(value, "outside_range", where),
    )
    if rule.min is not None and rule.max is not None and rule.min > rule.max:
        raise GateRuleError(f"{where}: min {plain(rule.min)} is above max {plain(rule.max)}")
    if rule.outside_range and rule.max_drop is None and rule.max_rise is None:
        raise GateRuleError(
            f"{where}: outside_range = true qualifies max_drop or max_rise; the rule has neither"
        )
    bounds = (rule.min, rule.max, rule.max_drop, rule.max_rise)
    if not rule.required and all(b is None for b in bounds):
        raise GateRuleError(
            f"{where}: the rule checks nothing; expected at least one of "
            "min, max, max_drop, max_rise, required = true"
        )
    return rule


def _absolute(rule: Mapping[Any, Any], name: str, where: str) -> float | None:
    value = rule.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        raise GateRuleError(
            f"{where}: {name} = {show(value)}: {name} is an absolute bound and takes a "
            "number; a % bound is only for max_drop or max_rise"
        )
    return _finite(value, name, where, expected="a number")


def _bound(rule: Mapping[Any, Any], name: str, where: str) -> Bound | None:
    value = rule.get(name)
    if value is None:
        return None
    expected = 'a number (absolute) or a percentage string like "1%"'
    if isinstance(value, str):
        percent = _percentage(value)
        if percent is None:
            raise GateRuleError(f"{where}: {name} = {show(value)}: expected {expected}")
        bound = Bound(percent, relative=True)
    else:
        bound = Bound(_finite(value, name, where, expected=expected))
    if bound.value < 0:
        raise GateRuleError(f"{where}: {name} = {show(value)}: expected {expected}, not negative")
    return bound


def _percentage(text: str) -> float | None:
    """`"1.5%"` → 1.5; None unless a finite number followed by `%`."""
    text = text.strip()
    if not text.endswith("%"):
        return None
    try:
        number = float(text[:-1])
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _flag(rule: Mapping[Any, Any], name: str, where: str) -> bool:
    value = rule.get(name, False)
    if not isinstance(value, bool):
        raise GateRuleError(f"{where}: {name} = {show(value)}: expected true or false")
    return value


def _finite(value: object, name: str, where: str, *, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateRuleError(f"{where}: {name} = {show(value)}: expected {expected}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise GateRuleError(f"{where}: {name} = {show(value)}: expected a finite number")
    return number


def _did_you_mean(name: object) -> str:
    close = difflib.get_close_matches(str(name), RULE_KEYS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{hint}; expected one of {', '.join(RULE_KEYS)}"


def show(value: object) -> str:
    """A config key or value for a one-line message: strings quoted, no control characters."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    text = printable(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def printable(text: str) -> str:
    """`text` on one line: newlines and other control characters as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def plain(number: float) -> str:
    """A number from the config, as the user would have written it: `0.93`, `1`, `1e-06`."""
    return f"{number:.12g}"


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)
