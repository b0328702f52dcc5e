"""Attention patterns: the mean pattern of every head per string length, and each head's mirror score.

Positions: BOS at 0, characters at 1..L (then EOS if the tokenizer adds it, then PAD). The mirror of
character position i is L + 1 - i; a head that compares mirrored characters puts its attention there.
The mirror score of a head on one string is the attention mass position i puts on L + 1 - i, averaged
over the character positions that can see their mirror: all L of them under bidirectional attention,
the second half (and the centre) under causal attention, where a position sees only itself and what
comes before it (1 = every such character attends only to its mirror).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import cache_tensor, is_causal, to_numpy
from palindrome_lens.attribution.reader import from_readout

ALL = "all"


def real_positions(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """(n,) count of non-PAD positions per row (BOS + characters + EOS if present)."""
    return (tokens != pad_id).sum(dim=-1)


def mean_patterns(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame,
                  tokens: torch.Tensor, pad_id: int = 0) -> pd.DataFrame:
    """attention.parquet: mean attention per (layer, head, length, dest, src) over real positions."""
    lengths = examples["length"].to_numpy()
    width = real_positions(tokens, pad_id).cpu().numpy()
    frames = []
    for length in sorted(set(lengths.tolist())):
        rows = np.flatnonzero(lengths == length)
        n_real = int(width[rows].max())
        index = torch.tensor(rows)
        for layer in range(model.cfg.n_layers):
            pattern = cache_tensor(cache, f"blocks.{layer}.attn.hook_pattern")
            mean = to_numpy(pattern[index.to(pattern.device)][:, :, :n_real, :n_real].float().mean(dim=0))
            heads, dest, src = np.meshgrid(np.arange(model.cfg.n_heads), np.arange(n_real), np.arange(n_real),
                                           indexing="ij")
            frames.append(pd.DataFrame({
                "layer": layer, "head": heads.ravel(), "component": [f"L{layer}H{h}" for h in heads.ravel()],
                "length": length, "dest": dest.ravel(), "src": src.ravel(),
                "value": mean.ravel().astype("float64"), "n": len(rows),
            }))
    return pd.concat(frames, ignore_index=True)


def mirror_per_example(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame) -> np.ndarray:
    """(n, n_layers, n_heads) mirror score of every head on every example."""
    lengths = examples["length"].to_numpy()
    out = np.zeros((len(examples), model.cfg.n_layers, model.cfg.n_heads))
    for length in sorted(set(lengths.tolist())):
        rows = np.flatnonzero(lengths == length)
        query = torch.arange(1, length + 1)
        if is_causal(model):
            query = query[length + 1 - query <= query]  # the mirror must come first to be seen
        key = length + 1 - query
        for layer in range(model.cfg.n_layers):
            pattern = cache_tensor(cache, f"blocks.{layer}.attn.hook_pattern")
            picked = pattern[torch.tensor(rows).to(pattern.device)][:, :, query.to(pattern.device),
                                                                        key.to(pattern.device)]
            out[rows, layer] = to_numpy(picked.float().mean(dim=-1))
    return out


def mirror_scores(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame) -> pd.DataFrame:
    """mirror.parquet: mean mirror score per (head, length, kind), plus kind "all"."""
    per_example = mirror_per_example(model, cache, examples)
    lengths, kinds = examples["length"].to_numpy(), examples["kind"].to_numpy()
    rows = []
    for length in sorted(set(lengths.tolist())):
        for kind in [ALL, *sorted(set(kinds[lengths == length].tolist()))]:
            mask = (lengths == length) & ((kinds == kind) | (kind == ALL))
            for layer in range(model.cfg.n_layers):
                for head in range(model.cfg.n_heads):
                    values = per_example[mask, layer, head]
                    rows.append({"component": f"L{layer}H{head}", "layer": layer, "head": head, "length": length,
                                 "kind": kind, "n": int(mask.sum()), "mirror_score": float(values.mean()),
                                 "std": float(values.std())})
    return pd.DataFrame(rows)


def mirror_by_head(mirror: pd.DataFrame) -> dict[str, float]:
    """One mirror score per head over every example (kind "all"), weighting lengths by their counts."""
    rows = mirror[mirror["kind"] == ALL]
    out = {}
    for component, group in rows.groupby("component", sort=True):
        out[component] = float(np.average(group["mirror_score"], weights=group["n"]))
    return out


def readout_attention(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame,
                      tokens: torch.Tensor) -> pd.DataFrame:
    """readout_attention.parquet: where the readout position looks, by pair status.

    Per head and length, on strings that are not palindromes: the mean attention the readout position
    (BOS or EOS) puts on one character position, over the positions whose mirrored pair does not match
    and over those whose pair matches, in each half of the string. A head that reads mismatches (as
    ARENA's 1.0 does at END) puts more on `mismatched` than on `matched`.
    """
    rows = []
    for length, layer, mismatch, attention in from_readout(model, cache, examples, tokens):
        half = np.where(np.arange(length) < length - length // 2, "first_half", "second_half")
        for head in range(model.cfg.n_heads):
            for status, mask in (("mismatched", mismatch), ("matched", ~mismatch)):
                for part in ("first_half", "second_half"):
                    where = mask & (half == part)[None, :]
                    values = attention[:, head][where]
                    rows.append({"component": f"L{layer}H{head}", "layer": layer, "head": head, "length": length,
                                 "status": status, "half": part, "n": int(where.sum()),
                                 "attention": float(values.mean()) if values.size else np.nan})
    return pd.DataFrame(rows, columns=["component", "layer", "head", "length", "status", "half", "n", "attention"])
