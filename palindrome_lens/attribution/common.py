"""Small shared pieces of the attribution analyses: component names, the logit difference, weights
under TransformerLens names, batched forward passes with hooks, and tables written as Parquet.

Conventions: the class is read at position 0 (BOS); `logit_diff` is logit[1] - logit[0] ("palindrome"
minus "not"); heads are `L{l}H{h}`, MLPs `{l}_mlp_out`. Every tensor follows the model's device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.data.parquet import write_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.stage import tqdm_disabled

POS = 0  # class logits are read at BOS
PALINDROME, NOT_PALINDROME = 1, 0
Hook = tuple[str, Callable[..., Any]]


def logit_diff(logits: torch.Tensor) -> torch.Tensor:
    """(batch,) logit[1] - logit[0] at position 0 of (batch, pos, 2) logits."""
    return logits[:, POS, PALINDROME] - logits[:, POS, NOT_PALINDROME]


def head_names(model: TransformerBridge) -> list[str]:
    return [f"L{layer}H{head}" for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def mlp_names(model: TransformerBridge) -> list[str]:
    return [] if model.cfg.attn_only else [f"{layer}_mlp_out" for layer in range(model.cfg.n_layers)]


def parse_head(name: str) -> tuple[int, int]:
    """`L1H0` -> (1, 0)."""
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def has_layernorm(model: TransformerBridge) -> bool:
    return model.cfg.normalization_type == "LN"


def weight(model: TransformerBridge, name: str) -> torch.Tensor:
    """A parameter by its TransformerLens state-dict name (`ln_final.weight`, `blocks.0.ln1.bias`)."""
    state = model.state_dict()
    if name not in state:
        raise DataFileError(f"the model has no parameter {name!r}")
    return state[name].detach()


def class_direction(model: TransformerBridge) -> torch.Tensor:
    """(d_model,) W_U[:, 1] - W_U[:, 0]: the unembedding direction of "palindrome minus not"."""
    w_u = model.W_U.detach()
    return w_u[:, PALINDROME] - w_u[:, NOT_PALINDROME]


def unembed_bias_diff(model: TransformerBridge) -> torch.Tensor:
    b_u = model.b_U.detach()
    return b_u[PALINDROME] - b_u[NOT_PALINDROME]


def layernorm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """What TransformerLens' LN does: centre, divide by sqrt(var + eps), scale and shift."""
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / (centred.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt() * w + b


def attn_scale(model: TransformerBridge, layer: int) -> float:
    """The divisor of the attention scores (the native module's own value; sqrt(d_head) by default)."""
    native = getattr(model.blocks[layer].attn, "original_component", None)
    scale = getattr(native, "scale", None)
    return float(scale) if scale is not None else math.sqrt(model.cfg.d_head)


def device_of(model: TransformerBridge) -> torch.device:
    return next(model.parameters()).device


def cache_tensor(cache: ActivationCache, name: str, n: int | None = None) -> torch.Tensor:
    """A cached activation with its batch axis made explicit (TL may cache hook_pos_embed for one row)."""
    try:
        tensor = cache[name]
    except KeyError as exc:
        raise DataFileError(f"the activation cache has no {name!r}; extract it (extract.hooks)") from exc
    if n is not None and tensor.shape[0] == 1 and n != 1:
        tensor = tensor.expand(n, *tensor.shape[1:])
    return tensor


def forward_logit_diff(model: TransformerBridge, tokens: torch.Tensor, batch_size: int,
                       hooks: Callable[[slice], Sequence[Hook]] | None = None, desc: str | None = None) -> torch.Tensor:
    """(n,) logit differences at BOS, in batches; `hooks(rows)` gives the forward hooks for a batch."""
    device = device_of(model)
    out = []
    starts = range(0, len(tokens), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=tqdm_disabled() or desc is None, leave=False):
        rows = slice(start, start + batch_size)
        batch = tokens[rows].to(device)
        with torch.inference_mode():
            if hooks is None:
                logits = model(batch)
            else:
                logits = model.run_with_hooks(batch, fwd_hooks=list(hooks(rows)))
        out.append(logit_diff(logits).float())
    return torch.cat(out) if out else torch.empty(0, device=device)


def margin(diff: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Signed confidence in the right class: logit_diff for palindromes, -logit_diff otherwise (< 0 = wrong)."""
    return torch.where(label, diff, -diff)


def save_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Parquet without the pandas index (a plain Arrow table, byte-stable for identical frames)."""
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    write_table(table, path)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()
