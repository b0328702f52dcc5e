"""Zero and mean ablation of every head (`attn.hook_z`, one head's slice) and every MLP (`hook_mlp_out`).

Mean ablation replaces a component's activation by its mean over the analysis set, per position and per
string length (positions mean different things at different lengths). The mean is taken over the
stratified sample (rows with no role: equal numbers per kind and length) so the many corrupted pair rows
do not tilt it towards one kind; zero ablation replaces it by zeros. ARENA's palindrome work prefers
mean ablation: zeroing an early head moves later layers off their usual inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import (
    cache_tensor,
    forward_logit_diff,
    head_names,
    margin,
    mlp_names,
    parse_head,
    to_numpy,
)
from palindrome_lens.data.generate import KINDS
from palindrome_lens.stage import tqdm_disabled

MODES = ("zero", "mean")
NONE = "none"
ALL, DISTANCE_1 = "all", "distance_1"


@dataclass(frozen=True)
class Ablation:
    """Replace `hook` (one head's slice of it when `head` is set) by `values`, one row per example."""

    hook: str
    head: int | None
    values: torch.Tensor  # (n, pos, ...) aligned with the tokens' rows


def component_hook(component: str) -> tuple[str, int | None]:
    """`L1H0` -> (`blocks.1.attn.hook_z`, 0); `0_mlp_out` -> (`blocks.0.hook_mlp_out`, None)."""
    if component.startswith("L"):
        layer, head = parse_head(component)
        return f"blocks.{layer}.attn.hook_z", head
    return f"blocks.{int(component.split('_')[0])}.hook_mlp_out", None


def component_activation(cache: ActivationCache, component: str, n: int) -> torch.Tensor:
    """(n, pos, ...) the component's own activation in the cache."""
    hook, head = component_hook(component)
    tensor = cache_tensor(cache, hook, n)
    return tensor[:, :, head] if head is not None else tensor


def zero_ablation(cache: ActivationCache, component: str, n: int) -> Ablation:
    hook, head = component_hook(component)
    return Ablation(hook, head, torch.zeros_like(component_activation(cache, component, n)))


def mean_ablation(cache: ActivationCache, examples: pd.DataFrame, component: str) -> Ablation:
    """The per-(length, position) mean over the stratified rows, given to every example of that length."""
    hook, head = component_hook(component)
    activation = component_activation(cache, component, len(examples)).float()
    lengths = examples["length"].to_numpy()
    stratified = examples["role"].isna().to_numpy()
    values = torch.empty_like(activation)
    for length in sorted(set(lengths.tolist())):
        rows = lengths == length
        reference = rows & stratified if (rows & stratified).any() else rows
        index = torch.tensor(np.flatnonzero(rows), device=activation.device)
        mean = activation[torch.tensor(np.flatnonzero(reference), device=activation.device)].mean(dim=0)
        values[index] = mean.expand(len(index), *mean.shape)
    return Ablation(hook, head, values)


def _replace(activation: torch.Tensor, hook: object, head: int | None, values: torch.Tensor) -> torch.Tensor:
    values = values.to(activation.device, activation.dtype)
    if head is None:
        return values
    out = activation.clone()
    out[:, :, head] = values
    return out


def run_ablated(model: TransformerBridge, tokens: torch.Tensor, ablations: Sequence[Ablation],
                batch_size: int) -> torch.Tensor:
    """(n,) BOS logit differences with every ablation applied at once (none: a plain forward)."""
    def hooks(rows: slice) -> list:
        return [(a.hook, partial(_replace, head=a.head, values=a.values[rows])) for a in ablations]

    return forward_logit_diff(model, tokens, batch_size, hooks if ablations else None)


def ablation_for(cache: ActivationCache, examples: pd.DataFrame, component: str, mode: str) -> Ablation:
    return zero_ablation(cache, component, len(examples)) if mode == "zero" else mean_ablation(cache, examples,
                                                                                                  component)


def groups(examples: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks: all, each kind (in generate's order), and distance-1 strings."""
    kinds = examples["kind"].to_numpy()
    present = [k for k in KINDS if k in set(kinds)] + sorted(set(kinds) - set(KINDS))
    out = {ALL: np.ones(len(examples), dtype=bool)}
    out.update({kind: kinds == kind for kind in present})
    out[DISTANCE_1] = examples["distance"].to_numpy() == 1
    return out


def ablation_table(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, examples: pd.DataFrame,
                   batch_size: int) -> pd.DataFrame:
    """ablation.parquet: accuracy, mean logit difference and mean margin per (component, mode, kind).

    component "none"/mode "none" is the unablated model. `kind` also takes "all" and "distance_1".
    margin = logit_diff signed towards the right class (< 0: wrong). The `*_change` columns are relative
    to the unablated model on the same rows.
    """
    label = torch.tensor(examples["label"].to_numpy(dtype=bool))
    baseline = to_numpy(run_ablated(model, tokens, [], batch_size))
    runs = [(NONE, NONE, baseline)]
    plan = [(c, m) for c in [*head_names(model), *mlp_names(model)] for m in MODES]
    for component, mode in tqdm(plan, desc="ablation", unit="run", disable=tqdm_disabled()):
        ablation = ablation_for(cache, examples, component, mode)
        runs.append((component, mode, to_numpy(run_ablated(model, tokens, [ablation], batch_size))))
    base_margin = to_numpy(margin(torch.tensor(baseline), label))
    rows = []
    for component, mode, diff in runs:
        signed = to_numpy(margin(torch.tensor(diff), label))
        for kind, mask in groups(examples).items():
            if not mask.any():
                continue
            rows.append({
                "component": component, "mode": mode, "kind": kind, "n": int(mask.sum()),
                "accuracy": float((signed[mask] > 0).mean()), "mean_logit_diff": float(diff[mask].mean()),
                "mean_margin": float(signed[mask].mean()),
                "accuracy_change": float((signed[mask] > 0).mean() - (base_margin[mask] > 0).mean()),
                "logit_diff_change": float(diff[mask].mean() - baseline[mask].mean()),
                "margin_change": float(signed[mask].mean() - base_margin[mask].mean()),
            })
    return pd.DataFrame(rows)
