"""The position-local features of causal scrubbing against their definitions, worked out by hand on every string
of two lengths over three letters: two strings get the same code exactly when they agree on the feature there
(own character; own and mirror's; whether the pair matches; which two characters differ), and a scrub's bits are
the entropy of that partition on the analysis rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hand_worlds import scrubber

from palindrome_lens import features as F
from palindrome_lens.attribution.scrubbing import Hypothesis

N_SYMBOLS = 3


def by_hand(feature: str, text: tuple[int, ...], pos: int) -> tuple:
    """The feature's value at token position `pos` (1..L), from its definition in palindrome_lens/features.py."""
    visible = feature.startswith(F.VISIBLE)
    base = F.base_of(feature)
    i = pos - 1
    own, other = text[i], text[len(text) - 1 - i]
    if base == "char":
        return (own,)
    if visible and len(text) - 1 - i > i:  # the mirror comes later: only the own character is seen
        return (own,) if base == "pair_chars" else ()
    return {"pair_chars": (own, other), "pair_match": (own == other,),
            "pair_diff": ("match",) if own == other else ("broken", own, other)}[base]


def partition(values: list) -> set[frozenset[int]]:
    groups: dict = {}
    for row, v in enumerate(values):
        groups.setdefault(v if not isinstance(v, np.ndarray) else v.item(), set()).add(row)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("length", [5, 6])
@pytest.mark.parametrize("feature", ["char", "pair_chars", "pair_match", "pair_diff", "visible_pair_chars",
                                     "visible_pair_match", "visible_pair_diff", "pair_diff+char"])
def test_local_codes_agree_exactly_when_the_definition_does(feature: str, length: int) -> None:
    texts = list(itertools.product(range(N_SYMBOLS), repeat=length))
    chars = np.array(texts)
    for pos in range(1, length + 1):
        code = F.codes(feature, chars, pos, N_SYMBOLS)
        expected = [tuple(itertools.chain.from_iterable(by_hand(f, t, pos) for f in F.parts(feature))) for t in texts]
        assert partition(list(code)) == partition(expected), (feature, pos)


def test_pair_diff_tells_the_broken_pairs_apart_by_both_characters() -> None:
    # own 'a' at the first position, its mirror 'b' or 'c': the same own character, different broken pairs
    chars = np.array([[0, 2, 2, 1], [0, 2, 2, 2], [1, 2, 2, 1], [2, 2, 2, 2]])
    for pos, expected in ((1, [0, 1, 2, 2]), (4, [0, 1, 2, 2])):
        code = F.codes("pair_diff", chars, pos, N_SYMBOLS)
        assert partition(list(code)) == partition(expected), pos
    assert len(set(F.codes("pair_diff", chars, 2, N_SYMBOLS))) == 1  # pair 1 matches in every row


@pytest.mark.parametrize("feature", ["pair_diff", "pair_chars", "char"])
def test_bits_of_a_local_feature_are_its_entropy_on_the_analysis_rows(feature: str) -> None:
    s = scrubber("planted")
    bits = s.bits(Hypothesis("h", 0, {"chars": feature}))["chars"]
    alphabet = sorted(set("".join(s.examples["text"])))
    texts = [tuple(alphabet.index(c) for c in t) for t in s.examples["text"]]
    values = []
    for pos in range(1, len(texts[0]) + 1):
        _, counts = np.unique([repr(by_hand(feature, t, pos)) for t in texts], return_counts=True)
        p = counts / counts.sum()
        values.append(-(p * np.log2(p)).sum())
    assert bits == pytest.approx(np.mean(values))


@pytest.mark.parametrize("feature", ["char_counts", "odd_chars+n_mismatches", "pair_diff+mismatch_set", "label"])
def test_codes_number_the_distinct_values_in_lexicographic_order(feature: str) -> None:
    # the scrubbing draws depend on the code numbers, not only the partition: they are the rank of the row's
    # tuple of values among the distinct tuples, as np.unique(axis=0) ranks rows; char_counts over 26 symbols
    # overflows one mixed-radix key and must be renumbered on the way without losing the order
    chars = np.random.default_rng(0).integers(0, 26, size=(3000, 10))
    chars[:26] = np.arange(26)[:, None]  # one string of each repeated symbol: every count column runs 0..10
    columns = [np.asarray(c, dtype=np.int64).reshape(len(chars), -1)
               for name in F.parts(feature) for c in F._columns(F.base_of(name), False, chars, 3, 26)]
    expected = np.unique(np.concatenate(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    assert np.array_equal(F.codes(feature, chars, 3, 26), expected)


@pytest.mark.parametrize("columns", [
    [np.array([-2**63, 0, 2**63 - 1])],  # one column spanning all of int64
    [np.array([0, 1, 0, 1]), np.array([0, 2**62, 2**62, 0])],  # a digit too wide for any key
    [np.arange(8), np.array([0, 2**61, 5, 7, 2**61, 1, 2, 3])],  # too wide once the first column is in the key
])
def test_codes_of_values_too_far_apart_for_one_key_still_rank_the_rows(columns: list) -> None:
    expected = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    assert np.array_equal(F._ids(columns, len(columns[0])), expected)
