"""Words and numbers shown to users, defined once: every report, `nbci diff`, the
gates' reasons, the CLI and publish import them from here.

- Statuses: `STATUS_LABEL` (words), `STATUS_MARK` (a terminal's one-character
  mark), `STATUS_ICON` (markdown's emoji).
- A run's verdict in counts (`verdict_facts`, `gates_summary`): the report's
  line under the headline and the commit status description alike.
- Changes of a metric against the baseline: `CHANGE_ORDER` (how they are listed
  and counted), `CHANGE_WORD`, `ARROW_UP` / `ARROW_DOWN` for the way a number moved.
- Numbers (the same in markdown, HTML, `nbci diff` and gate reasons):

  - `bool` → `true` / `false`.
  - `int` → exact (`12`, `-3`, `150000`); beyond 15 digits, 4 significant figures
    in scientific notation (`1.235e+20`).
  - `float` → 4 significant figures. Trailing zeros are kept, so a value that
    rounds to a whole number still says it is a measurement (`0.99996` → `1.000`,
    `3.0` → `3.000`). Integer digits are never rounded away below 1e15
    (`123456.7` → `123457`). Below 0.001 (and from 1e15 on) scientific notation:
    `1.235e-05`. Zero is `0`; NaN is `NaN`; infinities are `inf` / `-inf`.
  - Changes (`format_delta`) follow the same rules with an explicit sign
    (`+0.01800`); the change between two whole numbers is a whole number (`+61`).
  - Relative changes (`format_percent`) keep two significant figures below 10 %,
    whole percents above: `+0.52%`, `-3.4%`, `+27%`; under 0.01 % → `+<0.01%`.
  - Durations (`format_duration`): `0.42 s`, `12.3 s`, `4 min 05 s`, `1 h 02 min`.

  Everything returned is plain ASCII-safe text (only `-` for minus), so a
  number never needs escaping in markdown.
- In JSON (results.json, `nbci diff --json`) a non-finite number is a string:
  `JSON_NONFINITE` spells them `"NaN"`, `"Infinity"`, `"-Infinity"`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

from nbci.model import Change, Comparison, MetricDelta, Run, Status, Verdict

# -- statuses ------------------------------------------------------------------

STATUS_LABEL: Mapping[Status, str] = {
    "ok": "passed",
    "failed": "failed",
    "timeout": "timed out",
    "died": "kernel died",
    "invalid": "invalid",
    "interrupted": "interrupted",
}
"""A job's status in a sentence: `evaluate failed`, `train timed out`."""

STATUS_MARK: Mapping[Status, str] = {
    "ok": "✓",
    "failed": "✗",
    "timeout": "⏱",
    "died": "☠",
    "invalid": "!",
    "interrupted": "-",
}
"""One character before a job's line in a terminal."""

STATUS_ICON: Mapping[Status, str] = {
    "ok": "✅",
    "failed": "❌",
    "timeout": "⏱️",
    "died": "💥",
    "invalid": "⚠️",
    "interrupted": "⏹️",
}
"""Before a job's name in markdown."""
UNKNOWN_ICON = "❔"
"""Markdown's mark for a status it does not know (a newer nbci's run)."""

PASS_ICON = "✅"
FAIL_ICON = "❌"
NOTICE_ICON = {"fail": FAIL_ICON, "warn": "⚠️", "info": "ℹ️", "pass": PASS_ICON}
HTML_MARK = {"pass": "✓", "fail": "✕", "warn": "!", "info": "i"}
"""report.html's marks, plain characters its stylesheet colours: the verdict, a notice by its
kind, a job (`pass` when ok, `fail` otherwise)."""

WHY_NOT_OK: Mapping[Status, str] = {
    "ok": "job passed",
    "failed": "job failed",
    "timeout": "job timed out",
    "died": "kernel died",
    "invalid": "job is invalid",
    "interrupted": "run was interrupted",
}
"""Why a gate fails for a job that is not `ok`."""


def status_label(status: Status | None) -> str:
    """`STATUS_LABEL`'s word; `absent` for a job one side does not have."""
    return "absent" if status is None else STATUS_LABEL.get(status, status)


# -- changes -------------------------------------------------------------------

CHANGE_ORDER: tuple[Change, ...] = (
    "regressed",
    "improved",
    "changed",
    "within",
    "added",
    "removed",
    "unchanged",
)
"""How changes are listed and counted: what a reviewer must not miss first."""

CHANGE_WORD: Mapping[Change, str] = {
    "regressed": "regressed",
    "improved": "improved",
    "changed": "changed",
    "within": "within the base branch's range",
    "added": "added",
    "removed": "removed",
    "unchanged": "unchanged",
}
"""The word in a change cell (`▼ -0.01 (-1.2%) regressed`) and in counts."""

ARROW_UP = "▲"
ARROW_DOWN = "▼"
MISSING = "–"
"""A value one side does not have."""
BEST_MARK = "★"
"""After the best value of a metric in a sweep's table."""

_CHANGE_NOUN: Mapping[Change, tuple[str, str]] = {
    "regressed": ("regression", "regressions"),
    "improved": ("improvement", "improvements"),
}


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 notebook`, `2 notebooks`."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def change_counts(deltas: tuple[MetricDelta, ...] | list[MetricDelta]) -> dict[Change, int]:
    """How many deltas of each change, in `CHANGE_ORDER`, zeros included."""
    counts = dict.fromkeys(CHANGE_ORDER, 0)
    for delta in deltas:
        counts[delta.change] += 1
    return counts


def change_facts(counts: Mapping[Change, int], *, passed: bool = True) -> list[str]:
    """`2 regressions`, `1 improvement`, `3 within the base branch's range`: the verdict
    line counts only changes outside the range as regressions or improvements.

    `no metric regressed or improved` is said only of a run that `passed`: beside a
    failed gate (a drop past `max_drop` inside the range) or a failed notebook (its
    metrics gone) it would read as a contradiction.
    """
    facts = [count(counts[c], *_CHANGE_NOUN[c]) for c in _CHANGE_NOUN if counts.get(c)]
    if not facts and passed and any(counts.values()):
        facts.append("no metric regressed or improved")
    if counts.get("within"):
        facts.append(f"{counts['within']} {CHANGE_WORD['within']}")
    return facts


def describe_change(delta: MetricDelta) -> str:
    """The change cell's text: `▼ -0.01664 (-1.7%) regressed`, `▲ +2 (+11%)`, `added`.

    A neutral metric that moved shows the move only; a move that cannot be
    told as a number (a NaN side, a text value) says `changed`, or for a
    directional metric `now NaN` / `was NaN`.
    """
    change = delta.change
    if change in ("added", "removed", "unchanged"):
        return CHANGE_WORD[change]
    move = format_move(delta)
    outside = describe_outside(delta)
    if change == "changed":
        text = move or CHANGE_WORD["changed"]
    elif not move:
        side = _nan_side(delta)
        return f"{CHANGE_WORD[change]} ({side})" if side else CHANGE_WORD[change]
    else:
        text = f"{move} {CHANGE_WORD[change]}"
    return f"{text}, {outside}" if outside else text


def describe_outside(delta: MetricDelta) -> str:
    """`0.03000 below the base branch's range`; empty inside it or without one."""
    value, found = delta.value, delta.range
    if found is None or delta.inside_range is not False or not isinstance(value, int | float):
        return ""
    try:
        distance = found.outside_by(float(value))
    except OverflowError:
        return ""
    if not distance or math.isnan(distance):
        return ""
    where = "above" if distance > 0 else "below"
    whole = isinstance(value, int) and distance.is_integer()  # ranges of counts are whole
    amount = int(abs(distance)) if whole else abs(distance)
    return f"{format_number(amount)} {where} the base branch's range"


def format_range(low: float, high: float) -> str:
    """`0.8500 to 0.9200`."""
    return f"{format_number(low)} to {format_number(high)}"


def format_move(delta: MetricDelta) -> str:
    """`▲ +0.02470 (+12%)`, `▲ +61 (+61%)`; empty when the move is not a number."""
    difference, absolute = delta.difference, delta.absolute
    if difference is None or absolute is None or math.isnan(difference):
        return ""
    arrow = ARROW_UP if difference > 0 else ARROW_DOWN
    relative = format_percent(delta.relative)
    text = f"{arrow} {format_delta(difference)}"
    return f"{text} ({relative})" if relative else text


def _nan_side(delta: MetricDelta) -> str:
    if _is_nan(delta.value):
        return "now NaN"
    if _is_nan(delta.baseline):
        return "was NaN"
    return ""


# -- a run's verdict in counts -------------------------------------------------------


def verdict_facts(
    run: Run, comparison: Comparison | None, verdict: Verdict | None, *, passed_count: bool
) -> list[str]:
    """`1 passed`, `1 failed`, `2 cached`, `gates: 1 of 4 failed`, `2 regressions`, …

    `passed_count=False` leaves out how many passed (a headline says it).
    """
    counts = run.counts
    facts = [f"{counts['ok']} {STATUS_LABEL['ok']}"] if passed_count else []
    facts += [f"{n} {STATUS_LABEL[s]}" for s, n in counts.items() if n and s != "ok"]
    if run.cached_count:
        facts.append(f"{run.cached_count} cached")
    if verdict and verdict.results:
        facts.append(f"gates: {gates_summary(verdict)}")
    if comparison:
        passed = run.ok and (verdict is None or verdict.passed)
        facts.extend(change_facts(change_counts(comparison.deltas), passed=passed))
    return facts


def gates_summary(verdict: Verdict) -> str:
    """`2 of 6 failed`, `all 6 passed`, `none apply`."""
    total, failed = len(verdict.results), len(verdict.failures)
    if not total:
        return "none apply"
    return f"{failed} of {total} failed" if failed else f"all {total} passed"


# -- numbers in JSON ---------------------------------------------------------------

JSON_NONFINITE: Mapping[str, float] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}
"""How results.json and `nbci diff --json` spell a number JSON cannot hold."""


def json_number(value: object) -> object:
    """`value`, or for a non-finite float its `JSON_NONFINITE` spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


# -- numbers shown -----------------------------------------------------------------


SIGNIFICANT = 4
_SMALL = 1e-3
_LARGE = 1e15


def format_number(value: object) -> str:
    """A metric value as the reports show it (see the module docstring)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) < _LARGE:
            return str(value)
        return f"{Decimal(value):.{SIGNIFICANT - 1}e}"  # Decimal: ints beyond float range too
    if isinstance(value, float):
        return _format_float(value)
    return str(value)


def format_delta(value: float | int | None) -> str:
    """A change with its sign: `+0.01800`, `-2`, `0`; empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = format_number(value)
    if value > 0 and not text.startswith("+"):
        return f"+{text}"
    return text


def format_percent(fraction: float | None) -> str:
    """A relative change given as a fraction (0.021 → `+2.1%`); empty for None/NaN."""
    if fraction is None or math.isnan(fraction):
        return ""
    if math.isinf(fraction):
        return "+inf%" if fraction > 0 else "-inf%"
    pct = fraction * 100
    sign = "+" if pct > 0 else "-" if pct < 0 else ""
    size = abs(pct)
    if size == 0:
        return "0%"
    if size < 0.01:
        return f"{sign}<0.01%"
    if round(size, 1) >= 10:
        return f"{sign}{size:.0f}%"
    if size >= 1:
        return f"{sign}{size:.1f}%"
    return f"{sign}{_fixed(size, 2)}%"


def format_duration(seconds: float | None) -> str:
    """A human duration: `0.42 s`, `12.3 s`, `4 min 05 s`, `1 h 02 min`."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    size = abs(value)
    if size < _SMALL or size >= _LARGE:
        return f"{value:.{SIGNIFICANT - 1}e}"
    return _fixed(value, SIGNIFICANT)


def _fixed(value: float, significant: int) -> str:
    """Fixed-point with `significant` figures, keeping every integer digit."""
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(significant - 1 - exponent, 0)
    text = f"{value:.{decimals}f}"
    # Rounding can carry into a new digit (9.9996 → 10.000): one figure too many.
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    if decimals and len(digits) > significant:
        text = f"{value:.{decimals - 1}f}"
    return text


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
