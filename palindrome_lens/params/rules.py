"""Rules for params values, kept next to each field, and the one loop that checks a section.

A field is declared as `lr: float = rule(number(lo=0.0, hi=10.0, lo_open=True))`; `Section.check(raw)`
runs every field's rule in field order, then `check_together()` for rules that tie fields together.
Every failure names the key (`train.lr`), the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from palindrome_lens.errors import ParamsError

Rule = Callable[[str, Any], Any]  # (dotted key, raw value) -> checked value, or raise ParamsError
RULE = "rule"
S = TypeVar("S", bound="Section")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range a numeric rule allows, kept on the rule so tests can try a value on each side of it."""

    lo: float | None
    hi: float | None
    lo_open: bool
    integral: bool


def fail(key: str, value: Any, allowed: str) -> ParamsError:
    return ParamsError(f"{key}: {value!r} is not allowed; {allowed}")


def rule(check: Rule, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value `check` validates. params.yaml must give every key all the same; a
    default only serves code that builds a section directly (for a key added later, its old behaviour)."""
    return dataclasses.field(default=default, metadata={RULE: check})


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(key, value, "it must be an integer")
        if lo is not None and value < lo:
            raise fail(key, value, f"it must be >= {lo}")
        if hi is not None and value > hi:
            raise fail(key, value, f"it must be <= {hi}")
        return value

    check.bounds = Bounds(lo, hi, False, True)  # type: ignore[attr-defined]  # read by the bounds tests
    return check


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Rule:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise fail(key, value, "it must be a finite number")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise fail(key, value, f"it must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and value > hi:
            raise fail(key, value, f"it must be <= {hi}")
        return float(value)

    check.bounds = Bounds(lo, hi, lo_open, False)  # type: ignore[attr-defined]
    return check


def boolean() -> Rule:
    def check(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(key, value, "it must be true or false")
        return value

    return check


def choice(choices: tuple[str, ...]) -> Rule:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise fail(key, value, f"it must be one of {', '.join(choices)}")
        return value

    return check


def optional(inner: Rule) -> Rule:
    """null, or a value `inner` accepts."""
    def check(key: str, value: Any) -> Any:
        return None if value is None else inner(key, value)

    check.bounds = getattr(inner, "bounds", None)  # type: ignore[attr-defined]
    return check


def require_keys(where: str, mapping: Mapping[Any, Any], allowed: tuple[str, ...], unknown: str, missing: str) -> None:
    """`where.k: <unknown>` for the first key outside `allowed`, `where.k <missing>` for the first one absent."""
    extra = sorted(set(mapping) - set(allowed), key=str)  # YAML keys may be numbers too
    if extra:
        raise ParamsError(f"{where}.{extra[0]}: {unknown}")
    absent = [k for k in allowed if k not in mapping]
    if absent:
        raise ParamsError(f"{where}.{absent[0]} {missing}")


class Section:
    """Base of the params sections (frozen dataclasses whose fields carry rules)."""

    name: ClassVar[str]

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def check(cls: type[S], raw: Mapping[str, Any]) -> S:
        """Every field's rule in field order, then the rules across fields."""
        values = {f.name: f.metadata[RULE](f"{cls.name}.{f.name}", raw[f.name])
                  for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        section = cls(**values)
        section.check_together()
        return section

    def check_together(self) -> None:
        """Rules that relate several fields of the section (none by default)."""
