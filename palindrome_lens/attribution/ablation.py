"""Ablation that does not lean to one class: resample (the default), label-balanced mean, and zero.

- `resample`: a component's activation is taken from another analysis string of the same length,
  drawn with a seed so that its label is a fair coin (whatever the row's own label) from the
  stratified rows. An ablated component then carries no information about the row it sits in, and
  pushes towards neither class on average.
- `mean`: the mean over palindromes and the mean over non-palindromes, averaged (per length and
  position), so neither class dominates the reference. The old mean over the stratified rows was 75%
  non-palindromes and pushed every ablated component towards "not".
- `zero`: zeros; kept only as the contrast that shows how zero ablation misleads.

Metrics are class-balanced: accuracy and margin (the logit difference signed towards the true
label) are averaged within each class, then across the two, so a constant predictor scores a
balanced accuracy of 0.5 and a balanced margin of exactly 0. The balanced mean logit difference is
the *lean*: how far an ablation pushes towards "palindrome" (> 0) or "not" (< 0) on average.

`Ablator` runs the model with chosen nodes (component x position group, see nodes.py) replaced, many
node sets in one batched forward pass.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import (
    balanced_accuracy,
    balanced_mean,
    cache_tensor,
    device_of,
    parse_head,
    readout_logit_diff,
    run_blocks,
)
from palindrome_lens.attribution.nodes import Node, component_layer, components
from palindrome_lens.data.generate import KINDS
from palindrome_lens.stage import tqdm_disabled

MODES = ("resample", "mean", "zero")
ALL, DISTANCE_1, BALANCED = "all", "distance_1", "balanced"
NONE = "none"
_STREAM = 6  # a seed stream of its own (extract uses 4, adversarial 5)
ROWS_PER_FORWARD = 4096  # rows of (node set x example) per batched forward pass (fastest on CPU)
SHARED_FORWARDS = 16  # forwards' worth of rows whose sets share their blocks' runs (bounds the memory held)


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


def source_pool(examples: pd.DataFrame) -> np.ndarray:
    """Rows ablation values come from: the stratified rows (equal numbers per kind and length)."""
    stratified = examples["role"].isna().to_numpy()
    return stratified if stratified.any() else np.ones(len(examples), dtype=bool)


def resample_sources(examples: pd.DataFrame, seed: int, stream: int = _STREAM) -> np.ndarray:
    """(n,) for every row, another row of the same length whose label is a fair coin, drawn with `seed`."""
    rng = np.random.default_rng([seed, stream])
    lengths = examples["length"].to_numpy()
    labels = examples["label"].to_numpy(dtype=bool)
    pool = source_pool(examples)
    coins = rng.random(len(examples)) < 0.5
    picks = rng.random(len(examples))
    out = np.empty(len(examples), dtype=np.int64)
    for i in range(len(examples)):
        same_length = lengths == lengths[i]
        for candidates in (same_length & pool & (labels == coins[i]), same_length & pool, same_length):
            candidates = np.flatnonzero(candidates & (np.arange(len(examples)) != i))
            if len(candidates):
                out[i] = candidates[int(picks[i] * len(candidates))]
                break
        else:
            out[i] = i  # the only string of its length: nothing else to take it from
    return out


def balanced_reference(activation: torch.Tensor, examples: pd.DataFrame) -> torch.Tensor:
    """(n, pos, ...) per row, the label-balanced mean of its length: (mean over palindromes + mean over
    the rest) / 2, taken over the stratified rows."""
    lengths = examples["length"].to_numpy()
    labels = examples["label"].to_numpy(dtype=bool)
    pool = source_pool(examples)
    out = torch.empty_like(activation)
    for length in np.unique(lengths):
        rows = lengths == length
        means = []
        for label in (True, False):
            chosen = rows & pool & (labels == label)
            if not chosen.any():
                chosen = rows & (labels == label)
            if chosen.any():
                means.append(activation[torch.from_numpy(np.flatnonzero(chosen)).to(activation.device)].mean(dim=0))
        mean = torch.stack(means).mean(dim=0)
        index = torch.from_numpy(np.flatnonzero(rows)).to(activation.device)
        out[index] = mean.expand(len(index), *mean.shape)
    return out


def replacement(cache: ActivationCache, examples: pd.DataFrame, component: str, mode: str,
                sources: np.ndarray) -> torch.Tensor:
    """(n, pos, ...) what `component` is replaced by in each row under `mode`."""
    activation = component_activation(cache, component, len(examples)).float()
    if mode == "resample":
        return activation[torch.from_numpy(sources).to(activation.device)]
    if mode == "mean":
        return balanced_reference(activation, examples)
    if mode == "zero":
        return torch.zeros_like(activation)
    raise ValueError(f"unknown ablation mode {mode!r}; modes are {', '.join(MODES)}")


@dataclass
class Ablator:
    """The model with chosen nodes replaced (by `mode`), for many node sets at once.

    `masks[group]` is (n, pos) bool: the positions of each row in that group. `logit_diffs(sets)`
    gives (len(sets), n) logit differences at the readout, each set's nodes replaced in every row.
    """

    model: TransformerBridge
    tokens: torch.Tensor
    cache: ActivationCache
    examples: pd.DataFrame
    masks: dict[str, np.ndarray]
    mode: str
    sources: np.ndarray
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    _embedded: torch.Tensor | None = field(default=None, repr=False)

    def value(self, component: str) -> torch.Tensor:
        if component not in self.values:
            self.values[component] = replacement(self.cache, self.examples, component, self.mode,
                                                 self.sources).to(device_of(self.model))
        return self.values[component]

    def logit_diffs(self, sets: Sequence[Collection[Node]], rows: np.ndarray | None = None,
                    desc: str | None = None) -> np.ndarray:
        rows = np.arange(len(self.tokens)) if rows is None else rows
        if not sets:
            return np.zeros((0, len(rows)))
        # Sets that ablate the same nodes up to layer l share that layer's output: runs go block by block and
        # each block runs once per distinct prefix. Sets sorted by prefix share the most within a batch.
        n_layers = self.model.cfg.n_layers
        prefixes = [tuple(frozenset(nd for nd in s if nd.layer <= layer) for layer in range(n_layers)) for s in sets]
        order = sorted(range(len(sets)), key=lambda i: [sorted(nd.name for nd in p) for p in prefixes[i]])
        per_batch = max(1, ROWS_PER_FORWARD * SHARED_FORWARDS // max(1, len(rows)))
        out = np.empty((len(sets), len(rows)))
        starts = range(0, len(sets), per_batch)
        for start in tqdm(starts, desc=desc, unit="batch", disable=tqdm_disabled() or desc is None, leave=False):
            chosen = order[start:start + per_batch]
            out[chosen] = self._run_layered([prefixes[i] for i in chosen], rows)
        return out

    def _entering(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), pos, d_model) the residual stream entering block 0 (embeddings), computed once."""
        if self._embedded is None:
            name = "blocks.0.hook_resid_pre"
            parts = []
            for start in range(0, len(self.tokens), ROWS_PER_FORWARD):
                with torch.inference_mode():
                    _, cache = self.model.run_with_cache(self.tokens[start:start + ROWS_PER_FORWARD].to(
                        device_of(self.model)), names_filter=lambda n: n == name, stop_at_layer=1)
                parts.append(cache[name].float())
            self._embedded = torch.cat(parts)
        return self._embedded[torch.from_numpy(rows).to(self._embedded.device)]

    def _run_layered(self, prefixes: Sequence[tuple[frozenset[Node], ...]], rows: np.ndarray) -> np.ndarray:
        """(len(prefixes), len(rows)) logit differences, each block run once per distinct prefix up to it."""
        n = len(rows)
        device = device_of(self.model)
        tokens = self.tokens[torch.from_numpy(rows)].to(device)
        index = torch.from_numpy(rows).to(device)
        states: dict[frozenset[Node], torch.Tensor] = {frozenset(): self._entering(rows)}
        per_forward = max(1, ROWS_PER_FORWARD // max(1, n))
        for layer in range(self.model.cfg.n_layers):
            distinct = list(dict.fromkeys(p[layer] for p in prefixes))
            new: dict[frozenset[Node], torch.Tensor] = {}
            for start in range(0, len(distinct), per_forward):
                chunk = distinct[start:start + per_forward]
                hidden = torch.cat([states[frozenset(nd for nd in key if nd.layer < layer)] for key in chunk])
                hooks = self._hooks([[nd for nd in key if nd.layer == layer] for key in chunk], rows, index, device)
                out = run_blocks(self.model, hidden, tokens.repeat(len(chunk), 1), layer, layer + 1, hooks)
                new.update(zip(chunk, out.split(n)))
            states = new
        finals = list(dict.fromkeys(p[-1] for p in prefixes))
        where = {key: i for i, key in enumerate(finals)}
        diffs = []
        for start in range(0, len(finals), per_forward):
            chunk = finals[start:start + per_forward]
            diffs.append(readout_logit_diff(self.model, torch.cat([states[k] for k in chunk]),
                                            tokens.repeat(len(chunk), 1)).cpu().numpy().reshape(len(chunk), n))
        diff = np.concatenate(diffs)
        return diff[[where[p[-1]] for p in prefixes]]

    def _hooks(self, sets: Sequence[Sequence[Node]], rows: np.ndarray, index: torch.Tensor,
               device: torch.device) -> list:
        """Forward hooks that replace each stacked set's nodes (one block of rows per set): one hook per hook point,
        every head of a layer's `hook_z` at once, the replacement broadcast over the sets rather than copied."""
        n, width = len(rows), self.tokens.shape[1]
        by_hook: dict[str, dict[int | None, np.ndarray]] = {}
        for s, nodes in enumerate(sets):
            for nd in nodes:
                hook, head = component_hook(nd.component)
                mask = by_hook.setdefault(hook, {}).setdefault(head, np.zeros((len(sets), n, width), bool))
                mask[s] |= self.masks[nd.group][rows]
        hooks = []
        for hook, per_head in by_hook.items():
            if None in per_head:  # an MLP's output: (sets, n, pos)
                where = per_head[None]
                values = self.value(component_of(hook, None))[index]
            else:  # a layer's heads: (sets, n, pos, head), the replacement of every head side by side
                n_heads = self.model.cfg.n_heads
                where = np.zeros((len(sets), n, width, n_heads), bool)
                for head, mask in per_head.items():
                    where[..., head] = mask
                if hook not in self.values:
                    self.values[hook] = torch.stack([self.value(component_of(hook, h)) for h in range(n_heads)], dim=2)
                values = self.values[hook][index]
            hooks.append((hook, _replacer(torch.from_numpy(where).to(device), values)))
        return hooks


def component_of(hook: str, head: int | None) -> str:
    """The inverse of component_hook: (`blocks.1.attn.hook_z`, 0) -> `L1H0`; (`blocks.0.hook_mlp_out`, None) ->
    `0_mlp_out`."""
    layer = int(hook.split(".")[1])
    return f"L{layer}H{head}" if head is not None else f"{layer}_mlp_out"


def _replacer(where: torch.Tensor, values: torch.Tensor):  # noqa: ANN202
    """`where` (sets, n, pos[, head]) chooses `values` (n, pos, ...) over the activation (sets * n, pos, ...)."""
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        stacked = activation.reshape(where.shape[0], *values.shape)
        mask = where.reshape(*where.shape, *([1] * (values.dim() - where.dim() + 1)))
        return torch.where(mask, values.to(activation.dtype), stacked).reshape(activation.shape)

    return hook


def groups(examples: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks: all, each kind (in generate's order), and distance-1 strings."""
    kinds = examples["kind"].to_numpy()
    present = [k for k in KINDS if k in set(kinds)] + sorted(set(kinds) - set(KINDS))
    out = {ALL: np.ones(len(examples), dtype=bool)}
    out.update({kind: kinds == kind for kind in present})
    out[DISTANCE_1] = examples["distance"].to_numpy() == 1
    return out


def metric_rows(diff: np.ndarray, base: np.ndarray, examples: pd.DataFrame) -> list[dict]:
    """Rows of ablation.parquet for one ablated run: per kind group, plus the class-balanced row."""
    label = examples["label"].to_numpy(dtype=bool)
    signed, base_signed = np.where(label, diff, -diff), np.where(label, base, -base)
    rows = []
    for kind, mask in groups(examples).items():
        if mask.any():
            rows.append({
                "kind": kind, "n": int(mask.sum()),
                "accuracy": float((signed[mask] > 0).mean()), "mean_logit_diff": float(diff[mask].mean()),
                "mean_margin": float(signed[mask].mean()),
                "accuracy_change": float((signed[mask] > 0).mean() - (base_signed[mask] > 0).mean()),
                "logit_diff_change": float(diff[mask].mean() - base[mask].mean()),
                "margin_change": float(signed[mask].mean() - base_signed[mask].mean()),
            })
    # class-balanced: accuracy and margin within each class, then across; mean_logit_diff is the lean
    acc, base_acc = balanced_accuracy(signed, label), balanced_accuracy(base_signed, label)
    lean, base_lean = balanced_mean(diff, label), balanced_mean(base, label)
    marg, base_marg = balanced_mean(signed, label), balanced_mean(base_signed, label)
    rows.append({"kind": BALANCED, "n": len(label), "accuracy": float(acc), "mean_logit_diff": float(lean),
                 "mean_margin": float(marg), "accuracy_change": float(acc - base_acc),
                 "logit_diff_change": float(lean - base_lean), "margin_change": float(marg - base_marg)})
    return rows


def whole_component_nodes(component: str, masks: dict[str, np.ndarray], layer: int) -> list[Node]:
    """A component at every position (one node per group)."""
    return [Node(layer, component, g) for g in masks]


def ablation_table(ablators: dict[str, Ablator], model: TransformerBridge, examples: pd.DataFrame,
                   base: np.ndarray, nodes: Iterable[Node], alone: np.ndarray | None = None) -> pd.DataFrame:
    """ablation.parquet: every component at every position alone, in each mode; and every candidate
    node alone under resample ablation (`alone`: those logit differences if already run, one row per node).
    `positions` is `all` or the node's group; kind `balanced` holds the class-balanced metrics (mean_logit_diff
    there is the lean towards "palindrome")."""
    comps = components(model)
    rows = [{"component": NONE, "positions": NONE, "mode": NONE, **r} for r in metric_rows(base, base, examples)]
    for mode, ablator in ablators.items():
        sets = [whole_component_nodes(c, ablator.masks, component_layer(c)) for c in comps]
        for component, diff in zip(comps, ablator.logit_diffs(sets, desc=f"ablation ({mode})")):
            rows += [{"component": component, "positions": ALL, "mode": mode, **r}
                     for r in metric_rows(diff, base, examples)]
    nodes = list(nodes)
    if alone is None:
        alone = ablators["resample"].logit_diffs([[nd] for nd in nodes], desc="node ablation")
    for nd, diff in zip(nodes, alone):
        rows += [{"component": nd.component, "positions": nd.group, "mode": "resample", **r}
                 for r in metric_rows(diff, base, examples)]
    return pd.DataFrame(rows)
