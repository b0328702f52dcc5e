"""The feature library of causal scrubbing: what the residual stream at one position may carry.

A feature is a function of the string and the token position. Scrubbing a position "down to" a feature
replaces its residual with the one from another string that agrees on that feature there, so a hypothesis
"after layer l, group g carries only f" predicts the output survives. Torch-free (params validates names).

Token positions: [BOS] c_1 .. c_L [EOS]; a character position p holds c_p, its mirror is c_{L+1-p}.
Pair k (0 <= k < L//2) is the characters at indices k and L-1-k; it is broken when they differ.

- position-local (character positions only): `char` (own character), `pair_chars` (own, then mirror's),
  `pair_diff` (matched pairs all alike; a broken pair keeps its own and its mirror's character),
  `pair_match` (whether the position's pair matches);
- string-level (any position): `mismatch_set` (which pairs are broken), `n_mismatches` (how many),
  `label` (palindrome or not), `char_counts` (the multiset of characters), `odd_chars` (which characters
  occur an odd number of times: every even-length palindrome has none);
- `visible_<f>`: f restricted to what a causal model can see at the position: the characters at or
  before it, so only pairs whose both ends are at or before it (BOS sees nothing, EOS everything);
- `all` (the position is not scrubbed: the whole string) and `none` (any string of the same length);
- `a+b`: agree on both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALL, NONE = "all", "none"
LOCAL = ("char", "pair_chars", "pair_diff", "pair_match")
GLOBAL = ("mismatch_set", "n_mismatches", "label", "char_counts", "odd_chars")
VISIBLE = "visible_"
BASE = (*LOCAL, *GLOBAL)
NAMES = (*BASE, *(VISIBLE + f for f in BASE if f != "char"), ALL, NONE)
JOIN = "+"
SPECIAL_GROUPS = ("bos", "eos")

WORDS = {
    "char": "its own character",
    "pair_chars": "its own character and its mirror's",
    "pair_diff": "whether its mirrored pair matches and, if not, which two characters differ",
    "pair_match": "whether its mirrored pair matches",
    "mismatch_set": "which mirrored pairs of the string are broken",
    "n_mismatches": "how many mirrored pairs of the string are broken",
    "label": "whether the whole string is a palindrome",
    "char_counts": "how often each character occurs in the string",
    "odd_chars": "which characters occur an odd number of times",
    ALL: "more than any feature in the library",
    NONE: "nothing the output needs",
}


def parts(feature: str) -> list[str]:
    return feature.split(JOIN)


def base_of(name: str) -> str:
    return name[len(VISIBLE):] if name.startswith(VISIBLE) else name


def problem(feature: str, group: str) -> str | None:
    """Why `feature` cannot be kept at `group`, or None when it can (params validation uses this)."""
    if not isinstance(feature, str) or not feature:
        return "a feature is a name (or names joined by '+')"
    names = parts(feature)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        return f"{unknown[0]!r} is not a feature; features are {', '.join(NAMES)} (or several joined by '+')"
    if len(names) > 1 and ({ALL, NONE} & set(names)):
        return f"{ALL} and {NONE} cannot be joined with other features"
    if len(set(names)) != len(names):
        return "a joined feature names each part once"
    local = [n for n in names if base_of(n) in LOCAL]
    if local and group in SPECIAL_GROUPS:
        return f"{local[0]} exists at character positions only, not at {group}"
    return None


def words(feature: str) -> str:
    """The feature in words ("which mirrored pairs of the string are broken")."""
    out = []
    for name in parts(feature):
        phrase = WORDS[base_of(name)]
        out.append(f"{phrase} (among the pairs it can see)" if name.startswith(VISIBLE) else phrase)
    return " and ".join(out)


def _ids(columns: Sequence[np.ndarray], n: int) -> np.ndarray:
    """One int64 code per row for the tuple of `columns` (equal tuples, equal codes): the row's rank among
    the distinct tuples in lexicographic order, as `np.unique(axis=0)` numbers them. Built as one mixed-radix
    key per row, so the sort is over integers, not rows (the scrubbing search asks for thousands of these)."""
    key = np.zeros(n, dtype=np.int64)
    if n == 0:
        return key
    for column in (np.asarray(c, dtype=np.int64).reshape(n, -1) for c in columns):
        for digit in column.T:
            radix = int(digit.max()) - int(digit.min()) + 1
            if (int(key.max()) + 1) * radix >= 2**62:  # renumber the key densely (order kept) before it overflows
                key = np.unique(key, return_inverse=True)[1].reshape(n).astype(np.int64)
            if (int(key.max()) + 1) * radix >= 2**62:  # values too far apart for any key: rank the rows themselves
                return _ranked_rows(columns, n)
            key = key * radix + (digit - digit.min())
    return np.unique(key, return_inverse=True)[1].reshape(n).astype(np.int64)


def _ranked_rows(columns: Sequence[np.ndarray], n: int) -> np.ndarray:
    stacked = np.concatenate([np.asarray(c, dtype=np.int64).reshape(n, -1) for c in columns], axis=1)
    return np.unique(stacked, axis=0, return_inverse=True)[1].reshape(n).astype(np.int64)


def _counts(chars: np.ndarray, upto: int, n_symbols: int) -> np.ndarray:
    """(n, n_symbols) how often each symbol occurs among the first `upto` characters."""
    out = np.zeros((chars.shape[0], n_symbols), dtype=np.int64)
    for i in range(upto):
        out[np.arange(chars.shape[0]), chars[:, i]] += 1
    return out


def codes(feature: str, chars: np.ndarray, pos: int, n_symbols: int) -> np.ndarray:
    """(n,) int64 codes of `feature` at token position `pos` for strings of one length.

    `chars` is (n, L) symbol ids in [0, n_symbols); `pos` is 0 (BOS), 1..L (characters) or L+1 (EOS).
    Rows with equal codes agree on the feature there. `all` gives -1 (not scrubbed), `none` 0.
    """
    n, length = chars.shape
    if feature == ALL:
        return np.full(n, -1, dtype=np.int64)
    columns = []
    for name in parts(feature):
        columns += _columns(base_of(name), name.startswith(VISIBLE), chars, pos, n_symbols)
    return _ids(columns, n)


def _columns(base: str, visible: bool, chars: np.ndarray, pos: int, n_symbols: int) -> list[np.ndarray]:
    n, length = chars.shape
    seen = min(max(pos, 0), length)  # characters at or before the position (BOS sees none, EOS all)
    if not visible:
        seen = length
    i = pos - 1  # character index at a character position
    broken = chars[:, : length // 2] != chars[:, ::-1][:, : length // 2]  # (n, pairs)
    # pair k is visible when its right end L-1-k is among the characters seen
    visible_pairs = np.array([length - 1 - k < seen for k in range(length // 2)], dtype=bool)
    if base == NONE:
        return []
    if base in LOCAL:
        if not 1 <= pos <= length:
            raise ValueError(f"{base} exists at character positions only, not at token position {pos}")
        mirror = length - 1 - i
        own = chars[:, i]
        if base == "char":
            return [own]
        mirror_seen = mirror < seen
        if not mirror_seen:  # the mirror is in the future: of the pair, only the own character is seen
            return [own] if base == "pair_chars" else []
        other = chars[:, mirror]
        if base == "pair_chars":
            return [own, other]
        if base == "pair_match":
            return [own == other]
        return [np.where(own == other, -1, own), np.where(own == other, -1, other)]  # pair_diff
    chosen = broken[:, visible_pairs]
    if base == "mismatch_set":
        return [chosen]
    if base == "n_mismatches":
        return [chosen.sum(axis=1)]
    if base == "label":
        return [~chosen.any(axis=1)]
    counts = _counts(chars, seen, n_symbols)
    if base == "char_counts":
        return [counts]
    if base == "odd_chars":
        return [counts % 2]
    raise ValueError(f"unknown feature {base!r}")


def entropy_bits(code: np.ndarray) -> float:
    """Shannon entropy (bits) of the codes' empirical distribution."""
    if len(code) == 0:
        return 0.0
    _, counts = np.unique(code, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)
