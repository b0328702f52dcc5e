"""Failures found from the mechanism: strings a level's program says the model gets wrong, proposed from the
program's own numbers (the model is never run on a candidate) and only then shown to the model.

What the mechanism says about where it breaks: a broken pair is noticed by the readout heads, which average
every position's evidence, and by the readout position's own layer-0 reading of the characters. So an edit is
weakest where the rest of the string dilutes it: the string is made of the characters whose context the
program leans most towards "palindrome", and the edited (position, own, mirror) is one the tables score weak.
The pool per length: every single edit of a one-character string, and every single edit of the palindromes
made of the `n_chars` characters whose one-character strings' edits the program scores most palindrome-like;
each candidate is ranked by how far the program puts it on the wrong side (its logit difference towards the
other class), and `n_proposals` distinct strings are proposed: every one the program puts on the wrong side, then
each pool's best in even shares (`propose`). The exact check proposes nothing.
The baseline is the model's error rate on single edits drawn uniformly (`random_edits`): a random palindrome,
one uniformly drawn position set to a uniformly drawn other character. Where the model gets none of them wrong,
the rate is below 3 / n at 95% confidence (the rule of three), and the hit rate's ratio is a lower bound.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.explanation.levels import LogitFn

MAX_POOL = 200_000  # candidates scored per length and level (the palindromes' edits are cut beyond)
_STREAM = 29  # the random edits' seed stream (the explain stage's others: 17, 18, 19, 23)


def random_edits(alphabet: str, lengths: Sequence[int], n: int, seed: int) -> list[str]:
    """`n` single edits drawn uniformly: a random palindrome of a uniformly drawn length, one position set to
    another character, both drawn uniformly."""
    rng = np.random.default_rng([seed, _STREAM])
    chars = np.array(list(alphabet))
    out = []
    for length, count in zip(lengths, rng.multinomial(n, [1 / len(lengths)] * len(lengths))):
        codes = rng.integers(len(alphabet), size=(count, length))
        codes[:, length - length // 2:] = codes[:, :length // 2][:, ::-1]  # the mirror of the left half
        where = rng.integers(length, size=count)
        rows = np.arange(count)
        codes[rows, where] = (codes[rows, where] + rng.integers(1, len(alphabet), size=count)) % len(alphabet)
        out += ["".join(row) for row in chars[codes]]
    return out


def single_edits_of(bases: Sequence[str], alphabet: str) -> tuple[list[str], list[int]]:
    """Every single-character substitution of each base, with the index of its base."""
    texts, origin = [], []
    for row, base in enumerate(bases):
        for position, old in enumerate(base):
            for new in alphabet:
                if new != old:
                    texts.append(base[:position] + new + base[position + 1:])
                    origin.append(row)
    return texts, origin


def single_edits_at(bases: Sequence[str], alphabet: str, picks: np.ndarray) -> list[str]:
    """The edits at positions `picks` of single_edits_of(bases, alphabet)[0] (bases of one length), without
    building the others: ARENA's pools hold tens of millions, of which MAX_POOL are kept."""
    if not bases:
        return []
    length, others = len(bases[0]), len(alphabet) - 1
    base, rest = np.divmod(np.asarray(picks, dtype=np.int64), length * others)
    position, new = np.divmod(rest, others)
    out = []
    for b, i, k in zip(base.tolist(), position.tolist(), new.tolist()):
        text = bases[b]
        replacement = alphabet[k + (alphabet.index(text[i]) <= k)]  # the k-th character other than the old one
        out.append(text[:i] + replacement + text[i + 1:])
    return out


def palindromes_over(chars: str, length: int) -> list[str]:
    """Every palindrome of `length` made of `chars` only."""
    half = length // 2
    out = []
    for left in itertools.product(chars, repeat=half + length % 2):
        text = "".join(left)
        out.append(text + text[:half][::-1])
    return out


def wrong_side(logits: np.ndarray, palindrome: np.ndarray) -> np.ndarray:
    """How far a logit difference lies towards the other class (positive: the program predicts an error)."""
    return np.where(palindrome, -logits, logits)


def candidates(fn: LogitFn, alphabet: str, length: int, n_chars: int) -> pd.DataFrame:
    """The pool for one length, each candidate with its pattern, its pool (k: the characters its base is made of)
    and the program's score. Pool 1 holds the edits of one-character strings, pool k those of the palindromes made
    of the k characters the program leans most towards "palindrome" (each string in the smallest pool it is in)."""
    uniform = [c * length for c in alphabet]
    texts, origin = single_edits_of(uniform, alphabet)
    lean = pd.Series(fn(texts)).groupby(np.array(origin)).mean().to_numpy()  # per character: its edits' mean
    order = "".join(alphabet[i] for i in np.argsort(-lean, kind="stable"))
    frames = [pd.DataFrame({"text": texts, "pool": 1, "pattern": [f"one edit of a one-character string "
                                                                  f"({uniform[o][0]})" for o in origin]})]
    for k in range(2, min(n_chars, len(alphabet)) + 1):
        chars = order[:k]
        bases = [p for p in palindromes_over(chars, length) if len(set(p)) > 1]  # a smaller pool's kept there
        if not bases:
            continue
        total = len(bases) * length * (len(alphabet) - 1)  # every single edit of every base
        keep = np.linspace(0, total - 1, num=min(total, MAX_POOL)).astype(int)
        frames.append(pd.DataFrame({"text": single_edits_at(bases, alphabet, keep), "pool": k,
                                    "pattern": f"one edit of a palindrome of the characters {chars}"}))
    pool = pd.concat(frames, ignore_index=True).drop_duplicates("text", ignore_index=True)
    pool = pool[pool["text"] != pool["text"].str[::-1]].reset_index(drop=True)  # an edit that stays a palindrome
    pool["program_logit_diff"] = fn(pool["text"].tolist())
    return pool


def propose(levels: Sequence[tuple[str, LogitFn]], alphabet: str, lengths: Sequence[int], n_chars: int,
            n_proposals: int) -> pd.DataFrame:
    """Every level's proposals (text, level, pattern, program_logit_diff, label), each level's best first: per
    length an even share of `n_proposals`; first every string the program itself puts on the wrong side (the
    errors it predicts), then the rest split evenly between the pools (what one pool leaves goes to the next),
    each pool's strings farthest towards the wrong side first. The split hedges a program that leans in the right
    places but not far enough: its scores are not comparable across pools."""
    frames = []
    for name, fn in levels:
        per_length = max(1, n_proposals // max(1, len(lengths)))
        for length in lengths:
            pool = candidates(fn, alphabet, length, n_chars)
            pool["label"] = pool["text"].map(lambda t: t == t[::-1])
            pool["program_wrong_side"] = wrong_side(pool["program_logit_diff"].to_numpy(), pool["label"].to_numpy())
            ranked = pool.sort_values("program_wrong_side", ascending=False, kind="stable")
            taken = [ranked[ranked["program_wrong_side"] > 0].head(per_length)]  # the errors it predicts outright
            ranked = ranked.drop(taken[0].index)
            left = per_length - len(taken[0])
            pools = sorted(ranked["pool"].unique(), key=lambda k: (ranked["pool"] == k).sum())  # smallest first
            for i, k in enumerate(pools):
                share = left // (len(pools) - i)
                taken.append(ranked[ranked["pool"] == k].head(share))
                left -= len(taken[-1])
            top = pd.concat(taken).sort_values("program_wrong_side", ascending=False, kind="stable")
            frames.append(top.drop(columns="pool").assign(level=name, length=length))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scores(proposals: pd.DataFrame, random_wrong: int, random_n: int) -> list[dict[str, Any]]:
    """Per level: proposals, the model's misclassifications among them, hit rate against random single edits
    (`random_wrong` of `random_n` misclassified; none: the ratio to the rule of three's bound, a lower bound),
    distinct strings found, how many errors the program predicts outright and how many of those the model makes."""
    random_rate = random_wrong / random_n if random_n else None
    bound = 3.0 / random_n if random_n and not random_wrong else None
    rows = []
    for name, group in proposals.groupby("level", sort=False):
        wrong = group["model_wrong"].to_numpy()
        rate = float(wrong.mean()) if len(group) else None
        rows.append({"level": str(name), "proposals": len(group), "model_wrong": int(wrong.sum()),
                     "distinct_wrong": int(group.loc[wrong, "text"].nunique()), "hit_rate": rate,
                     "predicted_wrong": int((group["program_wrong_side"] > 0).sum()),
                     "predicted_and_wrong": int(((group["program_wrong_side"] > 0).to_numpy() & wrong).sum()),
                     "random_rate": random_rate, "random_n": random_n, "random_wrong": random_wrong,
                     "times_random": (rate / random_rate) if rate is not None and random_rate else None,
                     "times_random_at_least": (rate / bound) if rate is not None and bound else None,
                     "patterns": group.loc[wrong, "pattern"].value_counts().head(5).to_dict()})
    return rows
