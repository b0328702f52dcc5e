"""Why activation patching and ablation can disagree about a component, measured.

Patching one component from the clean palindrome into its distance-1 corruption asks whether that component
alone is *enough* to restore the answer; ablating it asks whether it is *needed*. A component can be needed
and yet restore little alone when the mismatch reaches the readout by several routes at once:

- both positions of the broken pair carry it, so patching one position leaves the other to signal it;
- several heads of one layer carry it, so patching one reader head leaves the other to signal it.

For every head and MLP this patches it at one position of the broken pair (each of the two in turn, averaged),
at both, and at every position, and for every layer all its heads together at every position. Each row is a
recovery (ratio of means over the pairs of every length, as in patching.py) with the median of the per-pair
recoveries. It costs 4 forward passes of the corrupted strings per component (under a second for the defaults).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import cache_tensor, forward_logit_diff, recovery_stats, to_numpy
from palindrome_lens.attribution.patching import corruption_pairs

POSITIONS = ("one", "both", "all")  # one position of the broken pair (mean of the two), both, every position


def pair_masks(pairs: pd.DataFrame, width: int) -> dict[str, np.ndarray]:
    """(pairs, width) token masks: the broken pair's first and second character (BOS is token 0), both, all."""
    rows = np.arange(len(pairs))
    first = pairs["mismatch_pos"].to_numpy() + 1
    second = pairs["length"].to_numpy() - pairs["mismatch_pos"].to_numpy()
    out = {name: np.zeros((len(pairs), width), dtype=bool) for name in ("first", "second")}
    out["first"][rows, first] = True
    out["second"][rows, second] = True
    out["both"] = out["first"] | out["second"]
    out["all"] = np.ones((len(pairs), width), dtype=bool)
    return out


def units(model: TransformerBridge) -> list[tuple[str, str, int | None]]:
    """(name, hook, head index or None = the whole activation): every head, every MLP, every layer's heads."""
    cfg = model.cfg
    out = [(f"L{layer}H{head}", f"blocks.{layer}.attn.hook_z", head)
           for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    if not cfg.attn_only:
        out += [(f"{layer}_mlp_out", f"blocks.{layer}.hook_mlp_out", None) for layer in range(cfg.n_layers)]
    if cfg.n_heads > 1:
        out += [(f"layer {layer} heads", f"blocks.{layer}.attn.hook_z", None) for layer in range(cfg.n_layers)]
    return out


def _patcher(clean: torch.Tensor, mask: torch.Tensor, head: int | None) -> Callable:
    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        width = act.shape[1]
        keep = mask[:, :width].reshape(mask.shape[0], width, *([1] * (act.dim() - 2))).to(act.device)
        source = clean[:, :width].to(act.device, act.dtype)
        if head is None:
            return torch.where(keep, source, act)
        act = act.clone()
        act[:, :, head] = torch.where(keep[:, :, 0], source[:, :, head], act[:, :, head])
        return act
    return hook


def _hooks(hook_name: str, source: torch.Tensor, mask: torch.Tensor, head: int | None) -> Callable:
    """forward_logit_diff's hooks for a batch of rows: `source` (the clean activation) where `mask` is set."""
    return lambda rows: [(hook_name, _patcher(source[rows], mask[rows], head))]


def set_patching(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, examples: pd.DataFrame,
                 batch_size: int) -> list[dict]:
    """One row per (component, positions): recovery, median per pair, pairs. [] without corruption pairs."""
    pairs = corruption_pairs(examples)
    if pairs.empty:
        return []
    clean_ids, corrupted_ids = pairs["clean_id"].to_numpy(), pairs["corrupted_id"].to_numpy()
    corrupted_tokens = tokens[torch.tensor(corrupted_ids)]
    clean = to_numpy(forward_logit_diff(model, tokens[torch.tensor(clean_ids)], batch_size))
    corrupted = to_numpy(forward_logit_diff(model, corrupted_tokens, batch_size))
    masks = {k: torch.tensor(v) for k, v in pair_masks(pairs, tokens.shape[1]).items()}
    rows = []
    for name, hook_name, head in units(model):
        cached = cache_tensor(cache, hook_name)
        source = cached[torch.tensor(clean_ids, device=cached.device)]
        patched = {where: to_numpy(forward_logit_diff(model, corrupted_tokens, batch_size,
                                                      _hooks(hook_name, source, masks[where], head)))
                   for where in ("first", "second", "both", "all") if where == "all" or not name.startswith("layer")}
        if "first" in patched:
            patched["one"] = (patched.pop("first") + patched.pop("second")) / 2
        for where in POSITIONS:
            if where in patched:
                st = recovery_stats(patched[where][None, :], clean, corrupted)
                rows.append({"component": name, "positions": where, "n": st["n"],
                             "recovery": _float(st["recovery"]), "median": _float(st["pair_median"])})
    return rows


def _float(value: np.ndarray) -> float | None:
    value = float(np.asarray(value).reshape(-1)[0])
    return None if np.isnan(value) else round(value, 6)
