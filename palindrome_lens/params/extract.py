"""`extract` (read by extract): the analysis set and which hooks are stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from palindrome_lens.errors import ParamsError
from palindrome_lens.hooks import KNOWN_HOOKS, unknown_hook
from palindrome_lens.params.rules import Section, choice, fail, integer, rule

DTYPES = ("float32", "float16")


def hooks_rule(key: str, hooks: Any) -> tuple[str, ...]:
    if not isinstance(hooks, list) or not hooks:
        raise fail(key, hooks, f"it must be a non-empty list drawn from {', '.join(KNOWN_HOOKS)}")
    for hook in hooks:
        if hook not in KNOWN_HOOKS:
            raise ParamsError(f"{key}: {unknown_hook(hook)}")
    if len(set(hooks)) != len(hooks):
        raise fail(key, hooks, "hooks must not repeat")
    return tuple(hooks)


@dataclass(frozen=True)
class ExtractParams(Section):
    name = "extract"
    n_per_group: int = rule(integer(lo=1))  # analysis examples per (kind, length)
    n_pairs: int = rule(integer(lo=1))  # clean palindromes per length, each with its distance-1 variants
    hooks: tuple[str, ...] = rule(hooks_rule)
    dtype: str = rule(choice(DTYPES))
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
