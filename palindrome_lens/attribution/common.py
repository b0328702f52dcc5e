"""Small shared pieces of the attribution analyses: component names, the logit difference, weights
under TransformerLens names, batched forward passes with hooks, and tables written as Parquet.

Conventions: the class is read at the model's readout position (BOS, or EOS for a causal model; see
`palindrome_lens.model.readout`); `logit_diff` is logit[1] - logit[0] ("palindrome" minus "not") there;
heads are `L{l}H{h}`, MLPs `{l}_mlp_out`. Every tensor follows the model's device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
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
from palindrome_lens.model.readout import readout_of
from palindrome_lens.stage import tqdm_disabled

PALINDROME, NOT_PALINDROME = 1, 0
Hook = tuple[str, Callable[..., Any]]


def logit_diff(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(batch,) logit[1] - logit[0] of (batch, pos, 2) logits at each row's readout position."""
    at = logits[torch.arange(logits.shape[0], device=logits.device), positions.to(logits.device)]
    return at[:, PALINDROME] - at[:, NOT_PALINDROME]


def readout_positions(model: TransformerBridge, tokens: torch.Tensor) -> torch.Tensor:
    """(n,) each row's readout position (on the tokens' device)."""
    return readout_of(model).positions(tokens)


def logit_diff_metric(model: TransformerBridge, tokens: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The patching metric for a batch of `tokens`: their logit differences at the readout."""
    positions = readout_positions(model, tokens)
    return lambda logits: logit_diff(logits, positions)


def head_names(model: TransformerBridge) -> list[str]:
    return [f"L{layer}H{head}" for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def mlp_names(model: TransformerBridge) -> list[str]:
    return [] if model.cfg.attn_only else [f"{layer}_mlp_out" for layer in range(model.cfg.n_layers)]


def parse_head(name: str) -> tuple[int, int]:
    """`L1H0` -> (1, 0)."""
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def is_causal(model: TransformerBridge) -> bool:
    return getattr(model.cfg, "attention_dir", "bidirectional") == "causal"


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
    """(n,) logit differences at the readout, in batches; `hooks(rows)` gives the forward hooks for a batch."""
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
        out.append(logit_diff(logits, readout_positions(model, batch)).float())
    return torch.cat(out) if out else torch.empty(0, device=device)


def run_blocks(model: TransformerBridge, hidden: torch.Tensor, tokens: torch.Tensor, first: int, stop: int,
               fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """The residual stream after blocks first..stop-1 when `hidden` enters block `first`: the TL-native module
    under the bridge, without the bridge's forward (analyses run thousands of these), with `fwd_hooks` on the
    bridge's hook points of those blocks. PAD keys are masked as the bridge masks them."""
    keep = tokens.to(hidden.device) != readout_of(model).pad_id
    mask = None if bool(keep.all()) else keep
    pad_mask = getattr(model, "pad_mask", None)
    if pad_mask is not None:  # its permanent hook_pattern hook masks what the embedding last saw: make it these rows
        pad_mask.record(None, (tokens,))
    with torch.inference_mode(), model.hooks(fwd_hooks=list(fwd_hooks)) if fwd_hooks else nullcontext():
        for block in model.original_model.layers[first:stop]:
            (hidden,) = block(hidden, attention_mask=mask)
    return hidden


def readout_logit_diff(model: TransformerBridge, resid: torch.Tensor, tokens: torch.Tensor,
                       fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """(batch,) logit differences at the readout from the residual stream after the last block."""
    native = model.original_model
    if float(getattr(native, "output_logits_soft_cap", 0.0)) > 0:
        raise ValueError("the resumed forward does not apply a logit soft cap")
    with torch.inference_mode(), model.hooks(fwd_hooks=list(fwd_hooks)) if fwd_hooks else nullcontext():
        logits = native.head(native.ln_out(resid))
    return logit_diff(logits, readout_positions(model, tokens.to(resid.device))).float()


def resume_logit_diff(model: TransformerBridge, resid: torch.Tensor, tokens: torch.Tensor,
                      after_layer: int, fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """(batch,) logit differences at the readout when the residual stream after `after_layer` is `resid`
    (-1: the blocks' input, embeddings included): only the later blocks run (`run_blocks`), with `fwd_hooks`
    on their hook points and the final LayerNorm's. Tests check it equals the bridge with the residual
    patched in (`forward_logit_diff` with a hook)."""
    with model.hooks(fwd_hooks=list(fwd_hooks)) if fwd_hooks else nullcontext():
        hidden = run_blocks(model, resid, tokens, after_layer + 1, model.cfg.n_layers)
        return readout_logit_diff(model, hidden, tokens)


def at_positions(tensor: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """tensor[i, positions[i]] for every row i of an (n, pos, ...) tensor."""
    rows = torch.arange(tensor.shape[0], device=tensor.device)
    return tensor[rows, positions.to(tensor.device)]


def margin(diff: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Signed confidence in the right class: logit_diff for palindromes, -logit_diff otherwise (< 0 = wrong)."""
    return torch.where(label, diff, -diff)


def balanced_mean(values: np.ndarray, label: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean within each class, then across the two classes (a class-balanced mean along `axis`).

    A constant predictor's margin averages to exactly 0 this way, whatever the class mix.
    """
    label = np.asarray(label, dtype=bool)
    if label.all() or not label.any():
        return np.asarray(values).mean(axis=axis)
    pos = np.compress(label, values, axis=axis).mean(axis=axis)
    neg = np.compress(~label, values, axis=axis).mean(axis=axis)
    return (pos + neg) / 2


def balanced_accuracy(margins: np.ndarray, label: np.ndarray, axis: int = -1) -> np.ndarray:
    return balanced_mean((np.asarray(margins) > 0).astype(np.float64), label, axis=axis)


MIN_GAP = 1e-4  # pairs whose clean and corrupted logit differences (almost) coincide have no scale


def recovery_stats(patched: np.ndarray, clean: np.ndarray, corrupted: np.ndarray) -> dict[str, Any]:
    """Normalised recovery (patched - corrupted) / (clean - corrupted) over pairs, per cell.

    `patched` is (..., pairs). `recovery` is the ratio of means over the pairs with a usable gap, so
    pairs whose gap is tiny cannot dominate it; the quantiles of the per-pair ratios show the spread.
    """
    gap = clean - corrupted
    valid = np.abs(gap) > MIN_GAP
    patched = np.asarray(patched, dtype=np.float64)
    lead = patched.shape[:-1]
    if not valid.any():
        nan = np.full(lead, np.nan)
        return {"recovery": nan, "n": 0, "pair_q25": nan, "pair_median": nan, "pair_q75": nan}
    per_pair = (patched[..., valid] - corrupted[valid]) / gap[valid]
    q25, median, q75 = np.quantile(per_pair, [0.25, 0.5, 0.75], axis=-1)
    recovery = (patched[..., valid].mean(axis=-1) - corrupted[valid].mean()) / gap[valid].mean()
    return {"recovery": recovery, "n": int(valid.sum()), "pair_q25": q25, "pair_median": median, "pair_q75": q75}


def save_table(df: pd.DataFrame, path: str | os.PathLike[str], schema: pa.Schema) -> None:
    """Parquet without the pandas index, cast to the table's one schema (schemas.py); byte-stable."""
    if set(df.columns) != set(schema.names):
        extra, missing = sorted(set(df.columns) - set(schema.names)), sorted(set(schema.names) - set(df.columns))
        raise ValueError(f"{Path(path).name}: columns differ from its schema (extra {extra}, missing {missing})")
    table = pa.Table.from_pandas(df[schema.names].reset_index(drop=True), schema=schema, preserve_index=False)
    write_table(table.replace_schema_metadata(None), path)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()
