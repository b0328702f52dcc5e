"""Weights-only views: the positional QK matrix of every head, W_pos and its cosine similarity.

Positional QK of head L{l}H{h}: the attention score that query position i gives key position j when the
residual stream holds the positional embedding alone. With LayerNorm this is exact for that input:

    P = ln1_l(W_pos)   (centre, divide by sqrt(var + eps), times ln1.weight, plus ln1.bias, row by row)
    score[i, j] = (P[i] W_Q + b_Q) . (P[j] W_K + b_K) / attn_scale

(`pos_embed W_Q W_K^T pos_embed^T` with LayerNorm and biases kept, which TransformerLens' raw bridge does
not fold.) Without LayerNorm, P = W_pos. `pattern` is the softmax of each query row over the first
`n_positions` keys (BOS, the characters and EOS of the longest string): a mirror-comparing head shows an
anti-diagonal. For layers above 0 the real residual holds more than positions, so read those as a guide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import attn_scale, has_layernorm, layernorm, to_numpy, weight


def positional_qk(model: TransformerBridge, n_positions: int) -> pd.DataFrame:
    """pos_qk.parquet: score and softmax pattern per (layer, head, query_pos, key_pos), positions < n_positions."""
    w_pos = model.W_pos.detach()[:n_positions]
    w_q, w_k, b_q, b_k = (t.detach() for t in (model.W_Q, model.W_K, model.b_Q, model.b_K))
    frames = []
    for layer in range(model.cfg.n_layers):
        p = w_pos
        if has_layernorm(model):
            p = layernorm(w_pos, weight(model, f"blocks.{layer}.ln1.weight"), weight(model, f"blocks.{layer}.ln1.bias"),
                          model.cfg.eps)
        q = torch.einsum("pm,hmd->hpd", p, w_q[layer]) + b_q[layer][:, None, :]
        k = torch.einsum("pm,hmd->hpd", p, w_k[layer]) + b_k[layer][:, None, :]
        scores = q @ k.transpose(-1, -2) / attn_scale(model, layer)  # (head, query, key)
        pattern = scores.softmax(dim=-1)
        head, query, key = np.meshgrid(np.arange(model.cfg.n_heads), np.arange(n_positions), np.arange(n_positions),
                                       indexing="ij")
        frames.append(pd.DataFrame({
            "layer": layer, "head": head.ravel(), "component": [f"L{layer}H{h}" for h in head.ravel()],
            "query_pos": query.ravel(), "key_pos": key.ravel(),
            "score": to_numpy(scores).ravel().astype("float64"), "pattern": to_numpy(pattern).ravel().astype("float64"),
        }))
    return pd.concat(frames, ignore_index=True)


def pos_embed_table(model: TransformerBridge) -> pd.DataFrame:
    """pos_embed.parquet: the raw W_pos heatmap, one row per (pos, dim)."""
    w_pos = to_numpy(model.W_pos)
    pos, dim = np.meshgrid(np.arange(w_pos.shape[0]), np.arange(w_pos.shape[1]), indexing="ij")
    return pd.DataFrame({"pos": pos.ravel(), "dim": dim.ravel(), "value": w_pos.ravel().astype("float64")})


def pos_cosine(model: TransformerBridge) -> pd.DataFrame:
    """pos_cosine.parquet: cosine similarity of every pair of W_pos rows."""
    w_pos = model.W_pos.detach().float()
    unit = w_pos / w_pos.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosine = to_numpy(unit @ unit.T)
    i, j = np.meshgrid(np.arange(len(cosine)), np.arange(len(cosine)), indexing="ij")
    return pd.DataFrame({"pos_i": i.ravel(), "pos_j": j.ravel(), "cosine": cosine.ravel().astype("float64")})
