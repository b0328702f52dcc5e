"""`tokenize` (read by tokenize): how a string becomes token ids."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.params.rules import Section, boolean, rule


@dataclass(frozen=True)
class TokenizeParams(Section):
    name = "tokenize"
    add_eos: bool = rule(boolean())
