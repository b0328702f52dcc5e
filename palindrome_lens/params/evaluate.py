"""`evaluate` (read by evaluate)."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.params.rules import Section, integer, rule


@dataclass(frozen=True)
class EvaluateParams(Section):
    name = "evaluate"
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
