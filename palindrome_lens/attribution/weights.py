"""Weight views: the positional QK of every head, W_pos and its cosine similarity.

Positional QK of head L{l}H{h}: the part of its attention score that does not depend on which
characters are in the string. LayerNorm is linear once its scale is known, so with the cached
`ln1.hook_scale` s of each row and position (the real one, not LayerNorm applied to W_pos alone):

    P_i = centre(W_pos[i]) / s_i * ln1.weight
    score[i, j] = (P_i W_Q + ln1.bias W_Q + b_Q) . (P_j W_K + ln1.bias W_K + b_K) / attn_scale

averaged over the analysis strings of each length. In layer 0 the residual stream is token + position,
so this is exactly the positional and bias part of the score (the rest involves the token embeddings);
in later layers the stream holds more than the position, so read it as a guide. Without LayerNorm,
P_i = W_pos[i]. `pattern` is the softmax of each query row over the real positions of that length
(BOS, the characters and EOS), causally masked for a causal model: a mirror-comparing head shows an
anti-diagonal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.attention import real_positions
from palindrome_lens.attribution.common import (
    attn_scale,
    cache_tensor,
    has_layernorm,
    is_causal,
    to_numpy,
    weight,
)


def positional_qk(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame,
                  tokens: torch.Tensor) -> pd.DataFrame:
    """pos_qk.parquet: score and softmax pattern per (length, layer, head, query_pos, key_pos)."""
    w_q, w_k, b_q, b_k = (t.detach().float() for t in (model.W_Q, model.W_K, model.b_Q, model.b_K))
    w_pos = model.W_pos.detach().float()
    lengths = examples["length"].to_numpy()
    width = real_positions(tokens).cpu().numpy()
    frames = []
    for length in sorted(set(lengths.tolist())):
        rows = np.flatnonzero(lengths == length)
        n_pos = int(width[rows].max())
        p = w_pos[:n_pos]
        for layer in range(model.cfg.n_layers):
            q_bias, k_bias = b_q[layer], b_k[layer]  # (head, d_head)
            if has_layernorm(model):
                scale = cache_tensor(cache, f"blocks.{layer}.ln1.hook_scale", len(examples))
                scale = scale[torch.from_numpy(rows).to(scale.device)][:, :n_pos].float().cpu()  # (r, pos, 1)
                ln_w = weight(model, f"blocks.{layer}.ln1.weight").float()
                ln_b = weight(model, f"blocks.{layer}.ln1.bias").float()
                x = (p - p.mean(dim=-1, keepdim=True)) / scale * ln_w  # (r, pos, d_model)
                q_bias = q_bias + torch.einsum("m,hmd->hd", ln_b, w_q[layer])
                k_bias = k_bias + torch.einsum("m,hmd->hd", ln_b, w_k[layer])
            else:
                x = p[None]
            q = torch.einsum("rpm,hmd->rhpd", x, w_q[layer]) + q_bias[None, :, None, :]
            k = torch.einsum("rpm,hmd->rhpd", x, w_k[layer]) + k_bias[None, :, None, :]
            scores = (q @ k.transpose(-1, -2)).mean(dim=0) / attn_scale(model, layer)  # (head, query, key)
            if is_causal(model):
                future = torch.ones(n_pos, n_pos, dtype=torch.bool).triu(1)
                pattern = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
            else:
                pattern = scores.softmax(dim=-1)
            head, query, key = np.meshgrid(np.arange(model.cfg.n_heads), np.arange(n_pos), np.arange(n_pos),
                                           indexing="ij")
            frames.append(pd.DataFrame({
                "length": length, "layer": layer, "head": head.ravel(),
                "component": [f"L{layer}H{h}" for h in head.ravel()], "query_pos": query.ravel(),
                "key_pos": key.ravel(), "score": to_numpy(scores).ravel().astype("float64"),
                "pattern": to_numpy(pattern).ravel().astype("float64"),
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
