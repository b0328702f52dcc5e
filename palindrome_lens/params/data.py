"""`data` (read by generate): the alphabet, string lengths, split sizes and the mix of negatives.

Negative kinds: `near1`/`near2` (one or two mirrored pairs broken), `random` (uniform strings) and
`redraw` (ARENA's palindrome problem: each second-half position of a palindrome is redrawn uniformly
with probability `redraw_probability`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from palindrome_lens.errors import ParamsError
from palindrome_lens.params.rules import Section, fail, integer, number, require_keys, rule

NEGATIVE_KINDS = ("near1", "near2", "random", "redraw")
MAX_ALPHABET = 200


def alphabet_rule(key: str, alphabet: Any) -> str:
    if not isinstance(alphabet, str) or not alphabet:
        raise fail(key, alphabet, "it must be a non-empty string of distinct characters")
    dupes = sorted({c for c in alphabet if alphabet.count(c) > 1})
    if dupes:
        raise fail(key, alphabet, f"characters must be distinct, but {''.join(dupes)!r} repeat")
    if len(alphabet) > MAX_ALPHABET:
        raise fail(key, f"<{len(alphabet)} characters>", f"at most {MAX_ALPHABET} characters")
    bad = [c for c in alphabet if not c.isprintable() or c.isspace()]
    if bad:
        raise fail(key, alphabet, f"characters must be printable and not spaces: {bad!r}")
    return alphabet


def lengths_rule(key: str, lengths: Any) -> tuple[int, ...]:
    if not isinstance(lengths, list) or not lengths:
        raise fail(key, lengths, "it must be a non-empty list of integers, e.g. [10]")
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, int):
            raise fail(key, lengths, "every length must be an integer")
        if length < 2:
            raise ParamsError(f"{key}: {length} is too short; lengths must be >= 2")
        if length > 256:
            raise ParamsError(f"{key}: {length} is too long; lengths must be <= 256")
    if len(set(lengths)) != len(lengths):
        raise fail(key, lengths, "lengths must not repeat")
    return tuple(lengths)


def mix_rule(key: str, mix: Any) -> dict[str, float]:
    if not isinstance(mix, Mapping):
        raise fail(key, mix, f"it must be a mapping with keys {', '.join(NEGATIVE_KINDS)}")
    kinds = ", ".join(NEGATIVE_KINDS)
    require_keys(key, mix, NEGATIVE_KINDS, f"unknown kind; known kinds are {kinds}", f"is missing; give all of {kinds}")
    checked = {k: number(lo=0.0, hi=1.0)(f"{key}.{k}", mix[k]) for k in NEGATIVE_KINDS}
    if abs(sum(checked.values()) - 1.0) > 1e-6:
        raise fail(key, checked, f"the fractions must sum to 1 (they sum to {sum(checked.values()):g})")
    return checked


@dataclass(frozen=True)
class DataParams(Section):
    name = "data"
    alphabet: str = rule(alphabet_rule)
    lengths: tuple[int, ...] = rule(lengths_rule)
    n_train: int = rule(integer(lo=1))
    n_val: int = rule(integer(lo=1))
    n_test: int = rule(integer(lo=1))
    palindrome_fraction: float = rule(number(lo=0.0, hi=1.0))
    negative_mix: Mapping[str, float] = rule(mix_rule)
    redraw_probability: float = rule(number(lo=0.0, hi=1.0, lo_open=True))  # per second-half position, for redraw

    def check_together(self) -> None:
        self._check_capacity()
        self._check_every_kind_is_evaluated()
        if len(self.alphabet) < 2 and self.palindrome_fraction < 1:
            raise fail("data.alphabet", self.alphabet, "a one-letter alphabet makes only palindromes; add letters")

    def _check_capacity(self) -> None:
        """Val and test hold distinct strings (and none of train's), so they cannot exceed what exists."""
        size = len(self.alphabet)
        distinct = sum(size**length for length in self.lengths)
        held_out = self.n_val + self.n_test
        if self.n_test > distinct or held_out > distinct:
            raise ParamsError(
                f"data.n_test: {self.n_test} (+ data.n_val {self.n_val}) is larger than the {distinct} distinct "
                f"strings of lengths {list(self.lengths)} over {size} letters; lower it or add letters/lengths"
            )
        k = len(self.lengths)
        for length in self.lengths:
            # Each length gets about 1/k of every split; half of its palindromes must stay for training.
            wanted = sum(math.ceil(math.ceil(n / k) * self.palindrome_fraction) for n in (self.n_val, self.n_test))
            available = size ** ((length + 1) // 2)
            if wanted > available // 2:
                raise ParamsError(
                    f"data.n_test: {self.n_test} (+ data.n_val {self.n_val}) needs about {wanted} distinct held-out "
                    f"palindromes of length {length}, but only {available} exist and half must stay for training; "
                    "lower the split sizes or data.palindrome_fraction, or add letters or longer lengths"
                )

    def _check_every_kind_is_evaluated(self) -> None:
        """Val and test must hold every kind the mix asks for, at every length, or the breakdown lies."""
        k = len(self.lengths)
        shares = {"palindrome": self.palindrome_fraction}
        shares |= {kind: (1 - self.palindrome_fraction) * f for kind, f in self.negative_mix.items()}
        for split, n in (("n_val", self.n_val), ("n_test", self.n_test)):
            for kind, share in shares.items():
                if kind == "near2" and all(length < 4 for length in self.lengths):
                    continue  # lengths 2-3 have one mirrored pair: near2 cannot exist there
                if share > 0 and (n // k) * share < 1:
                    need = math.ceil(min(k / share, 2**63))  # a tiny share overflows the division
                    raise ParamsError(
                        f"data.{split}: {n} is too small; with {k} length(s) the {kind} share ({share:g}) gets no "
                        f"examples at some length, so its metrics would be missing; use at least {need}"
                    )
