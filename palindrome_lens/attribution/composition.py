"""Q-, K- and V-composition scores between heads, against random matrices of the same shapes.

`TransformerBridge.all_composition_scores(mode)` gives ||W_OV(sender) W(receiver)||_F /
(||W_OV(sender)||_F ||W(receiver)||_F) for every sender in an earlier layer (Elhage et al. 2021). The
score of two unrelated matrices is not 0 (it shrinks like 1/sqrt(d_model)), so each score is shown
beside the same score of Gaussian W_Q, W_K, W_V, W_O of the model's shapes, drawn with the seed: the
baseline's mean and 95th percentile. These are weights-only (no LayerNorm, no data): a guide to which
edges path patching should find, not evidence that they carry anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

MODES = ("Q", "K", "V")
N_RANDOM = 200
_STREAM = 8


def random_baseline(d_model: int, d_head: int, mode: str, seed: int, n: int = N_RANDOM) -> np.ndarray:
    """(n,) the same score for independent Gaussian W_V W_O (sender) and W_Q W_K^T or W_V W_O (receiver)
    of the model's shapes (the products are small, so they are formed directly)."""
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, _STREAM, MODES.index(mode)])
                                            .integers(2**31)))

    def product() -> torch.Tensor:  # (n, d_model, d_model) of rank d_head
        return torch.randn(n, d_model, d_head, generator=gen) @ torch.randn(n, d_head, d_model, generator=gen)

    left, right = product(), product()
    if mode == "K":
        right = right.transpose(-1, -2)
    scores = (left @ right).norm(dim=(-2, -1)) / left.norm(dim=(-2, -1)) / right.norm(dim=(-2, -1))
    return scores.numpy()


def composition_table(model: TransformerBridge, seed: int) -> pd.DataFrame:
    """composition.parquet: one row per (mode, sender head, receiver head in a later layer)."""
    cfg = model.cfg
    rows = []
    for mode in MODES:
        with torch.no_grad():
            scores = model.all_composition_scores(mode).scores.detach().float().cpu().numpy()
        baseline = random_baseline(cfg.d_model, cfg.d_head, mode, seed)
        mean, q95 = float(baseline.mean()), float(np.quantile(baseline, 0.95))
        for sl in range(cfg.n_layers):
            for sh in range(cfg.n_heads):
                for rl in range(sl + 1, cfg.n_layers):
                    for rh in range(cfg.n_heads):
                        score = float(scores[sl, sh, rl, rh])
                        rows.append({"mode": mode, "sender": f"L{sl}H{sh}", "receiver": f"L{rl}H{rh}",
                                     "score": score, "baseline_mean": mean, "baseline_q95": q95,
                                     "ratio": score / mean if mean > 0 else np.nan, "above_q95": score > q95})
    columns = ["mode", "sender", "receiver", "score", "baseline_mean", "baseline_q95", "ratio", "above_q95"]
    return pd.DataFrame(rows, columns=columns)
