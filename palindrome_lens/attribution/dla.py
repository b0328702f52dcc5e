"""Direct logit attribution at the readout position with the final LayerNorm folded in exactly.

The final residual at the readout position (BOS, or EOS for a causal model) is the sum of `embed`, `pos_embed`, every head's output
(`hook_z @ W_O` per head, TransformerLens' `L{l}H{h}`), every MLP's `hook_mlp_out` and the attention
output biases `b_O`. LayerNorm is linear once its scale is fixed, so with the cached
`ln_final.hook_scale` s and d = W_U[:, 1] - W_U[:, 0]:

    logit_diff = sum_c (centre(c) / s) @ (ln_final.weight * d) + ln_final.bias @ d + b_U[1] - b_U[0]

`apply_ln_to_stack` alone only centres and divides by s; multiplying by ln_final.weight matters once it
has trained. The constant terms and the b_O share go into the `bias` component, so the components sum to
the logit difference exactly (up to float rounding).
"""

from __future__ import annotations

import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import (
    at_positions,
    cache_tensor,
    class_direction,
    has_layernorm,
    to_numpy,
    unembed_bias_diff,
    weight,
)

BIAS = "bias"


def component_stack(model: TransformerBridge, cache: ActivationCache, positions: torch.Tensor
                    ) -> tuple[list[str], torch.Tensor]:
    """The residual stream after the last block at each row's position, split into named
    (n, n_components, d_model) parts."""
    cfg = model.cfg
    n = len(positions)
    names = ["embed", "pos_embed"]
    parts = [at_positions(cache_tensor(cache, "hook_embed", n), positions),
             at_positions(cache_tensor(cache, "hook_pos_embed", n), positions)]
    w_o = model.W_O.detach()  # (layer, head, d_head, d_model)
    for layer in range(cfg.n_layers):
        z = at_positions(cache_tensor(cache, f"blocks.{layer}.attn.hook_z", n), positions)  # (n, head, d_head)
        heads = torch.einsum("nhd,hdm->nhm", z.to(w_o.dtype), w_o[layer])
        for head in range(cfg.n_heads):
            names.append(f"L{layer}H{head}")
            parts.append(heads[:, head])
        if not cfg.attn_only:
            names.append(f"{layer}_mlp_out")
            parts.append(at_positions(cache_tensor(cache, f"blocks.{layer}.hook_mlp_out", n), positions))
    names.append(BIAS)
    parts.append(model.b_O.detach().sum(dim=0).expand(n, cfg.d_model))
    stack = torch.stack([p.to(w_o.device, w_o.dtype) for p in parts], dim=1)
    return names, stack


def fold_final_ln(model: TransformerBridge, cache: ActivationCache, stack: torch.Tensor,
                  names: list[str], positions: torch.Tensor) -> torch.Tensor:
    """(n, n_components) contributions to logit_diff; the constants are added to the `bias` component."""
    d = class_direction(model)
    constant = unembed_bias_diff(model)
    if has_layernorm(model):
        scale = at_positions(cache_tensor(cache, "ln_final.hook_scale", stack.shape[0]), positions).to(stack)  # (n, 1)
        centred = stack - stack.mean(dim=-1, keepdim=True)
        values = (centred / scale[:, None, :]) @ (weight(model, "ln_final.weight") * d)
        constant = constant + weight(model, "ln_final.bias") @ d
    else:
        values = stack @ d
    values[:, names.index(BIAS)] += constant
    return values


def direct_logit_attribution(model: TransformerBridge, cache: ActivationCache, examples: pd.DataFrame,
                             logit_diff: torch.Tensor, positions: torch.Tensor) -> pd.DataFrame:
    """dla.parquet: one row per (example, component); `logit_diff` is the model's own output per example
    and `positions` each example's readout position.

    `cache`, `logit_diff` and `positions` hold the rows of `examples` in order.
    """
    n = len(examples)
    names, stack = component_stack(model, cache, positions)
    values = to_numpy(fold_final_ln(model, cache, stack, names, positions))
    diffs = to_numpy(logit_diff)
    frame = pd.DataFrame({
        "example_id": examples["example_id"].to_numpy().repeat(len(names)),
        "text": examples["text"].to_numpy().repeat(len(names)),
        "kind": examples["kind"].to_numpy().repeat(len(names)),
        "label": examples["label"].to_numpy().repeat(len(names)),
        "length": examples["length"].to_numpy().repeat(len(names)),
        "component": names * n,
        "value": values.reshape(-1).astype("float64"),
        "logit_diff": diffs.repeat(len(names)).astype("float64"),
    })
    return frame


def components(model: TransformerBridge) -> list[str]:
    """The component names in DLA order (embed, pos_embed, per layer heads then MLP, bias)."""
    names = ["embed", "pos_embed"]
    for layer in range(model.cfg.n_layers):
        names += [f"L{layer}H{head}" for head in range(model.cfg.n_heads)]
        if not model.cfg.attn_only:
            names.append(f"{layer}_mlp_out")
    return [*names, BIAS]
