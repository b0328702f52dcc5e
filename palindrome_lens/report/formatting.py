"""How numbers read in captions and tables: percentages, signed values, counts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def missing(value: Any) -> bool:
    """None or NaN (JSON null, or a cell with no data)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value: Any, digits: int = 1) -> str:
    """0.9876 -> '98.8%'; None/NaN -> 'n/a'."""
    return "n/a" if missing(value) else f"{100 * float(value):.{digits}f}%"


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


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'val': {'loss': 1}} -> {'val.loss': 1}, keys in sorted order."""
    out: dict[str, Any] = {}
    for key in sorted(data):
        value = data[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
