"""Where the readout position looks, character by character: the evidence that a head reads mismatches.

readout_attention.parquet pools each half of the string; this table keeps every character position, so a
figure can show, per head, the attention the readout (BOS, or EOS) puts on position p when p's mirrored pair
matches and when it does not, over the analysis strings that are not palindromes (as readout_attention).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import cache_tensor
from palindrome_lens.model.readout import readout_of

COLUMNS = ["component", "layer", "head", "length", "pos", "status", "n", "attention"]


def from_readout(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame,
                 tokens: torch.Tensor) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Per length and layer, over the analysis strings of that length that are not palindromes:
    (length, layer, mismatch (rows, length) bool: character i differs from its mirror,
    attention (rows, heads, length) from the readout position to each character)."""
    readout = readout_of(model).positions(tokens).cpu().numpy()
    texts = examples["text"].astype(str).to_numpy()
    lengths = examples["length"].to_numpy()
    for length in sorted(set(lengths.tolist())):
        picked = np.flatnonzero((lengths == length) & ~examples["label"].to_numpy(dtype=bool))
        if not len(picked):
            continue
        chars = np.array([[ord(c) for c in texts[i]] for i in picked])
        mismatch = chars != chars[:, ::-1]
        for layer in range(model.cfg.n_layers):
            pattern = cache_tensor(cache, f"blocks.{layer}.attn.hook_pattern")
            index = torch.from_numpy(picked).to(pattern.device)
            query = torch.from_numpy(readout[picked]).to(pattern.device)
            yield length, layer, mismatch, pattern[index, :, query][..., 1:length + 1].float().cpu().numpy()


def readout_by_position(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame,
                        tokens: torch.Tensor) -> pd.DataFrame:
    """readout_by_position.parquet: per head, length, token position of a character (1..L) and pair status
    (`matched` / `mismatched`), the mean attention from the readout position and the number of strings."""
    rows = []
    for length, layer, mismatch, attention in from_readout(model, cache, examples, tokens):
        for head in range(model.cfg.n_heads):
            for char in range(length):
                for status, where in (("matched", ~mismatch[:, char]), ("mismatched", mismatch[:, char])):
                    values = attention[where, head, char]
                    rows.append({"component": f"L{layer}H{head}", "layer": layer, "head": head, "length": length,
                                 "pos": char + 1, "status": status, "n": int(where.sum()),
                                 "attention": float(values.mean()) if values.size else np.nan})
    return pd.DataFrame(rows, columns=COLUMNS)
