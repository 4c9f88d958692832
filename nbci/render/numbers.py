"""How numbers read in every report: significant figures, never raw float noise.

Rules (the same in markdown, HTML and `nbci diff`):

- `bool` → `true` / `false`.
- `int` → exact (`12`, `-3`, `150000`); beyond 15 digits, 4 significant figures in
  scientific notation (`1.235e+20`).
- `float` → 4 significant figures. Trailing zeros are kept, so a value that
  rounds to a whole number still says it is a measurement (`0.99996` → `1.000`,
  `3.0` → `3.000`). Integer digits are never rounded away below 1e15
  (`123456.7` → `123457`). Below 0.001 (and from 1e15 on) scientific notation:
  `1.235e-05`. Zero is `0`; NaN is `NaN`; infinities are `inf` / `-inf`.
- Changes (`format_delta`) follow the same rules with an explicit sign (`+0.01800`).
- Relative changes (`format_percent`) keep two significant figures below 10 %,
  whole percents above: `+0.52%`, `-3.4%`, `+27%`; under 0.01 % → `+<0.01%`.
- Durations (`format_duration`): `0.42 s`, `12.3 s`, `4 min 05 s`, `1 h 02 min`.

Everything returned is plain ASCII-safe text (only `-` for minus), so a
number never needs escaping in markdown.
"""

from __future__ import annotations

import math
from decimal import Decimal

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
