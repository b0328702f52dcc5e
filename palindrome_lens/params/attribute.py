"""`attribute` (read by attribute): the analyses' sizes and the circuit selection."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.params.rules import Section, integer, rule


@dataclass(frozen=True)
class AttributeParams(Section):
    name = "attribute"
    n_adversarial: int = rule(integer(lo=1))
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
    max_circuit_heads: int = rule(integer(lo=1))
