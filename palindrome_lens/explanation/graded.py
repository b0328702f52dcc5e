"""Interchange interventions that a match bit cannot pass: the pair's match status is kept and only its
characters change, so the exact palindrome check predicts no change at all and only a program that knows how
much each (position, own, mirror) leans can follow the model.

For pair k of a base string (a test palindrome with pair k set to (a, b)):
- `broken`: a != b, and the source is the base with pair k set to another broken (a', b');
- `matched`: a == b, and the source is the base with pair k set to another matched (c, c).
The model runs on the base with the aligned node (the residual stream after the hypothesis' layer) at pair k's
two positions patched from the source's run; the program runs on the base with pair k comparing the source's
characters. Each level is scored by the Spearman correlation of its predicted logit change with the model's,
and by the share of equal signs where the model's change is above its noise: the change when the source has
the *same* characters at pair k but another context (nothing the program is told changes), 95th percentile.
The wrong-pair control patches the model at the next pair instead: a level that follows it there is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.explanation.agreement import spearman
from palindrome_lens.explanation.interchange import Alignment, patched_logits, source_activations
from palindrome_lens.explanation.levels import LogitFn

KINDS = ("broken", "matched")
NOISE_QUANTILE = 0.95
_STREAM = 23


def _palindromes(test: pd.DataFrame, length: int) -> list[str]:
    texts = test.loc[(test["length"] == length), "text"].astype(str)
    return [t for t in texts if t == t[::-1]]


def _set_pair(text: str, pair: int, left: str, right: str) -> str:
    chars = list(text)
    chars[pair], chars[len(text) - 1 - pair] = left, right
    return "".join(chars)


def draw(palindromes: Sequence[str], alphabet: str, pair: int, kind: str, n: int, rng: np.random.Generator
         ) -> tuple[list[str], list[str], list[str]]:
    """(bases, sources, noise sources) for one pair and kind."""
    a = len(alphabet)
    picks, others = rng.integers(0, len(palindromes), size=n), rng.integers(0, len(palindromes), size=n)
    first = rng.integers(0, a, size=n)
    if kind == "broken":
        second = (first + rng.integers(1, a, size=n)) % a
        new_first, new_second = first.copy(), second.copy()
        same = np.ones(n, dtype=bool)
        while same.any():  # another broken pair, never the base's own
            new_first[same] = rng.integers(0, a, size=int(same.sum()))
            new_second[same] = (new_first[same] + rng.integers(1, a, size=int(same.sum()))) % a
            same = (new_first == first) & (new_second == second)
    else:
        second = first
        new_first = (first + rng.integers(1, a, size=n)) % a
        new_second = new_first
    bases, sources, noise = [], [], []
    for row in range(n):
        base = _set_pair(palindromes[picks[row]], pair, alphabet[first[row]], alphabet[second[row]])
        bases.append(base)
        sources.append(_set_pair(base, pair, alphabet[new_first[row]], alphabet[new_second[row]]))
        noise.append(_set_pair(palindromes[others[row]], pair, alphabet[first[row]], alphabet[second[row]]))
    return bases, sources, noise


def graded_changes(model: TransformerBridge, tokenizer: Tokenizer, test: pd.DataFrame, after_layer: int,
                   lengths: Sequence[int], n: int, seed: int, batch_size: int) -> pd.DataFrame:
    """One row per (base, source): the model's logit change patched at pair k (aligned), from a same-characters
    source (noise) and at the next pair (control). The programs' changes are added by `score`."""
    align = Alignment("resid", f"blocks.{after_layer}.hook_resid_post", f"blocks.{after_layer}.hook_resid_post")
    frames = []
    for length in lengths:
        palindromes = _palindromes(test, length)
        n_pairs = length // 2
        if not palindromes or n_pairs == 0:
            continue
        rng = np.random.default_rng([seed, _STREAM, length])
        for pair in range(n_pairs):
            for kind in KINDS:
                bases, sources, noise = draw(palindromes, tokenizer.alphabet, pair, kind, n, rng)
                base_tokens = tokenizer.encode(bases)
                base_logit = forward_logit_diff(model, base_tokens, batch_size).cpu().numpy().astype(np.float64)
                src = source_activations(model, tokenizer.encode(sources), align.hook, batch_size)
                quiet = source_activations(model, tokenizer.encode(noise), align.hook, batch_size)
                at, wrong = (pair + 1, length - pair), ((pair + 1) % n_pairs + 1, length - (pair + 1) % n_pairs)
                frames.append(pd.DataFrame({
                    "length": length, "pair": pair, "kind": kind, "base": bases, "source": sources,
                    "model_change": patched_logits(model, base_tokens, src, align, at, batch_size) - base_logit,
                    "noise_change": patched_logits(model, base_tokens, quiet, align, at, batch_size) - base_logit,
                    "control_change": (patched_logits(model, base_tokens, src, align, wrong, batch_size) - base_logit
                                       if n_pairs > 1 else np.nan)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def score(changes: pd.DataFrame, programs: Mapping[str, LogitFn]) -> list[dict[str, Any]]:
    """Per level and kind: Spearman with the model's change, sign agreement above the noise, the control."""
    rows = []
    if changes.empty:
        return rows
    predicted = {name: np.zeros(len(changes)) for name in programs}
    for (_, pair), group in changes.groupby(["length", "pair"], sort=True):
        index = group.index.to_numpy()
        bases, sources = group["base"].tolist(), group["source"].tolist()
        for name, fn in programs.items():
            predicted[name][index] = fn(bases, int(pair), sources) - fn(bases)
    for kind in KINDS:
        rows_of = (changes["kind"] == kind).to_numpy()
        if not rows_of.any():
            continue
        model = changes["model_change"].to_numpy()[rows_of]
        noise = float(np.quantile(np.abs(changes["noise_change"].to_numpy()[rows_of]), NOISE_QUANTILE))
        control = changes["control_change"].to_numpy()[rows_of]
        loud = np.abs(model) > noise
        for name in programs:
            p = predicted[name][rows_of]
            rows.append({"level": name, "kind": kind, "n": int(rows_of.sum()), "noise": noise,
                         "model_change_std": float(model.std()), "n_above_noise": int(loud.sum()),
                         "spearman": spearman(p, model),
                         "sign_agreement": float((np.sign(p[loud]) == np.sign(model[loud])).mean()) if loud.any()
                         else None,
                         "control_spearman": spearman(p, control) if np.isfinite(control).all() else None})
    return rows
