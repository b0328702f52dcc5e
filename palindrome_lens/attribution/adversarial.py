"""Adversarial search: score every single-character edit of some test palindromes.

Each edit changes one character to another letter of the alphabet, so it breaks exactly one mirrored
pair (or, at the centre of an odd-length string, leaves a palindrome); labels come from the text. A
model that has learnt the task calls every broken one "not a palindrome"; edits it gets wrong, or only
just right, show its blind spots (for example a pair position it compares weakly).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import forward_logit_diff, to_numpy
from palindrome_lens.data.strings import is_palindrome
from palindrome_lens.data.tokenizer import Tokenizer

_STREAM = 5  # a seed stream of its own (extract uses 4)


def choose_palindromes(test: pd.DataFrame, n: int, seed: int) -> list[str]:
    """Up to n distinct palindromes of the test split, drawn with the seed, in test-split order."""
    texts = test["text"].astype(str)
    palindromes = texts[texts.map(is_palindrome)].drop_duplicates()
    rng = np.random.default_rng([seed, _STREAM])
    chosen = np.sort(rng.choice(len(palindromes), size=min(n, len(palindromes)), replace=False))
    return palindromes.iloc[chosen].tolist()


def single_edits(sources: list[str], alphabet: str) -> pd.DataFrame:
    """Every one-character edit of every source: source_id, source, text, position, pair_pos, old, new, label."""
    rows = []
    for source_id, source in enumerate(sources):
        n = len(source)
        for position, old in enumerate(source):
            for new in alphabet:
                if new == old:
                    continue
                text = source[:position] + new + source[position + 1:]
                rows.append((source_id, source, text, n, position, min(position, n - 1 - position), old, new,
                             is_palindrome(text)))
    return pd.DataFrame(rows, columns=["source_id", "source", "text", "length", "position", "pair_pos", "old", "new",
                                       "label"])


def adversarial_search(model: TransformerBridge, tokenizer: Tokenizer, sources: list[str],
                       batch_size: int) -> pd.DataFrame:
    """adversarial.parquet: every edit with its logit_diff and margin, worst (smallest margin) first.

    margin = logit_diff signed towards the right class; < 0 means misclassified (`correct` False).
    `source_logit_diff` is the unedited palindrome's logit difference.
    """
    edits = single_edits(sources, tokenizer.alphabet)
    diff = to_numpy(forward_logit_diff(model, tokenizer.encode(edits["text"].tolist()), batch_size, desc="adversarial"))
    source_diff = to_numpy(forward_logit_diff(model, tokenizer.encode(sources), batch_size)) if sources else diff
    edits["logit_diff"] = diff.astype("float64")
    edits["source_logit_diff"] = source_diff[edits["source_id"].to_numpy()].astype("float64")
    edits["predicted"] = edits["logit_diff"] > 0
    edits["margin"] = np.where(edits["label"], edits["logit_diff"], -edits["logit_diff"])
    edits["correct"] = edits["margin"] > 0
    edits = edits.sort_values(["margin", "source_id", "position", "new"], kind="stable").reset_index(drop=True)
    edits.insert(0, "rank", np.arange(len(edits)))
    return edits


def adversarial_by_position(edits: pd.DataFrame) -> pd.DataFrame:
    """adversarial_by_position.parquet: per (length, pair_pos) the edits, errors and the smallest margin."""
    broken = edits[~edits["label"]]
    out = broken.groupby(["length", "pair_pos"], sort=True).agg(
        n=("margin", "size"), n_wrong=("correct", lambda c: int((~c).sum())), min_margin=("margin", "min"),
        mean_margin=("margin", "mean"))
    out["accuracy"] = 1.0 - out["n_wrong"] / out["n"]
    return out.reset_index()
