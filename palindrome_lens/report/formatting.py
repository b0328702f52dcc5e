"""How numbers read in captions and tables: percentages, signed values, counts."""

from __future__ import annotations

import math
from typing import Any


def missing(value: Any) -> bool:
    """None or NaN (JSON null, or a cell with no data)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


MAX_DIGITS = 4


def pct(value: Any, digits: int = 1) -> str:
    """0.9876 -> '98.8%'; None/NaN -> 'n/a'. A value that is not exactly 0 or 1 never reads '0.0%' or
    '100.0%': digits are added (up to MAX_DIGITS) until it differs from them (0.99976 -> '99.98%')."""
    if missing(value):
        return "n/a"
    value = float(value)
    while digits < MAX_DIGITS and value not in (0.0, 1.0) and _at_edge(value, digits):
        digits += 1
    if value not in (0.0, 1.0) and _at_edge(value, digits):  # closer to 0% or 100% than MAX_DIGITS shows
        step = f"{10.0 ** (2 - digits):.{digits - 2}f}"  # 0.01 at 4 digits
        if abs(value) < 0.5:
            return f"<{step}%" if value > 0 else f">-{step}%"
        return f">{100 - float(step):.{digits - 2}f}%" if value < 1 else f">{100:.{digits - 2}f}%"
    return f"{100 * value:.{digits}f}%"


def _at_edge(value: float, digits: int) -> bool:
    """`value` would read as exactly 0% or 100% at `digits` decimals."""
    return abs(round(100 * value, digits)) in (0.0, 100.0)


def pcts(values: Any, digits: int = 1) -> list[str]:
    """Percentages of `values` with one number of digits, enough that values that differ read differently
    (up to MAX_DIGITS) and none of them reads as 0% or 100% when it is not."""
    finite = [float(v) for v in values if not missing(v)]
    while digits < MAX_DIGITS:
        shown = {f"{100 * v:.{digits}f}" for v in finite}
        if len(shown) == len(set(finite)) and all(pct(v, digits) == f"{100 * v:.{digits}f}%" for v in finite):
            break
        digits += 1
    return [pct(v, digits) for v in values]


def num(value: Any, digits: int = 3) -> str:
    """A float with `digits` significant digits; None/NaN -> 'n/a'."""
    return "n/a" if missing(value) else f"{float(value):.{digits}g}"


def count(n: int, noun: str) -> str:
    """count(1, 'head') -> '1 head'; count(3, 'head') -> '3 heads'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def names(items: list[str]) -> str:
    """['a'] -> 'a'; ['a', 'b', 'c'] -> 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"

