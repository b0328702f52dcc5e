"""Edges of the circuit graph by path patching on the clean/corrupted pairs.

An edge `S@Gs -> R@Gr via x` is measured on each corrupted string (a palindrome with one mirrored
pair broken): the sender's clean-minus-corrupted output at the positions of group Gs is added to the
receiver's input `x` alone, and every other component keeps its corrupted input (one forward pass,
the receiver's input recomputed from its own copy of the residual stream):

- `q`, `k`, `v` of a later head: its LayerNorm (ln1) and projection are recomputed from
  resid_pre + delta for that head only; only the head's output at the positions of Gr changes
  (the rest keeps its corrupted value), so the edge ends at the node R@Gr;
- `mlp_in` of an MLP in the same or a later layer (same positions: an MLP works position by position);
- `logits`: the final residual stream at the readout position.

Each forward starts at the receiver's layer from the corrupted residual stream entering it (everything
before the receiver is the corrupted run), so an edge into a late layer or the logits runs only what
follows it. This is `transformer_lens.patching.get_act_patch_direct_path`'s intervention, which the native
bridge cannot run (it has no pre-Q/K/V fork), extended to MLPs and the logits. The effect is the
normalised recovery as a ratio of means over the pairs (common.recovery_stats), with the per-pair
spread beside it. pos_embed sends nothing here:
a pair's two strings share every position.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import (
    cache_tensor,
    device_of,
    forward_logit_diff,
    has_layernorm,
    layernorm,
    parse_head,
    readout_positions,
    recovery_stats,
    resume_logit_diff,
)
from palindrome_lens.attribution.nodes import Node, readout_group
from palindrome_lens.stage import tqdm_disabled

LOGITS = "logits"
VIAS = ("q", "k", "v", "mlp_in", "logits")
SCREEN_PAIRS = 64  # pairs an undrawn edge is measured on (its effect only colours the wiring heatmap)


@dataclass(frozen=True)
class Edge:
    sender: Node
    receiver: Node | None  # None: the logits
    via: str

    @property
    def receiver_name(self) -> str:
        return LOGITS if self.receiver is None else self.receiver.name


def possible_edges(senders: list[Node], receivers: list[Node], readout_kind: str) -> list[Edge]:
    """Every sender -> receiver input pair that the model's wiring allows, in forward order."""
    out = []
    for r in receivers:
        for s in senders:
            if r.is_head and s.layer < r.layer:
                if s.group == r.group:
                    out.append(Edge(s, r, "q"))
                out += [Edge(s, r, "k"), Edge(s, r, "v")]
            elif not r.is_head and s.group == r.group and (s.layer < r.layer or (s.layer == r.layer and s.is_head)):
                out.append(Edge(s, r, "mlp_in"))
    out += [Edge(s, None, LOGITS) for s in senders if s.group == readout_group(readout_kind)]
    return out


def sender_output(model: TransformerBridge, cache: ActivationCache, component: str, rows: torch.Tensor) -> torch.Tensor:
    """(p, pos, d_model) what `component` writes into the residual stream for the given rows."""
    if component in ("embed", "pos_embed"):
        return cache_tensor(cache, f"hook_{component}", int(cache["hook_embed"].shape[0]))[rows].float()
    if component.startswith("L"):
        layer, head = parse_head(component)
        z = cache_tensor(cache, f"blocks.{layer}.attn.hook_z")[rows][:, :, head].float()
        return z @ model.W_O.detach()[layer, head].float()
    return cache_tensor(cache, f"blocks.{int(component.split('_')[0])}.hook_mlp_out")[rows].float()


class LayerNorms:
    """The model's LayerNorms by name (`blocks.0.ln1`), applied as TransformerLens does; identity without LN."""

    def __init__(self, model: TransformerBridge) -> None:
        self.eps = model.cfg.eps
        self.weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if has_layernorm(model):
            state = model.state_dict()
            for name in {k.rsplit(".", 1)[0] for k in state if ".ln" in k or k.startswith("ln")}:
                self.weights[name] = (state[f"{name}.weight"].detach(), state[f"{name}.bias"].detach())

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name not in self.weights:
            return x
        w, b = self.weights[name]
        return layernorm(x, w, b, self.eps)


def edge_hooks(model: TransformerBridge, ln: LayerNorms, edge: Edge, delta: torch.Tensor,
               receiver_mask: torch.Tensor, corrupted_z: torch.Tensor | None) -> list[tuple[str, Callable[..., Any]]]:
    """Forward hooks that add `delta` (p, pos, d_model) to the receiver's input only."""
    r = edge.receiver
    if r is None:
        return [("ln_final.hook_in", lambda x, hook: x + delta * receiver_mask[..., None].to(x.dtype))]
    stored: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook: Any) -> torch.Tensor:
        stored["resid"] = x
        return x

    if not r.is_head:
        layer = int(r.component.split("_")[0])
        return [(f"blocks.{layer}.hook_resid_mid", keep),
                (f"blocks.{layer}.mlp.hook_in", lambda x, hook: ln(f"blocks.{layer}.ln2",
                                                                   stored["resid"] + delta).to(x.dtype))]
    layer, head = parse_head(r.component)
    w = getattr(model, f"W_{edge.via.upper()}").detach()[layer, head]
    b = getattr(model, f"b_{edge.via.upper()}").detach()[layer, head]

    def project(x: torch.Tensor, hook: Any) -> torch.Tensor:
        out = x.clone()
        out[:, :, head] = (ln(f"blocks.{layer}.ln1", stored["resid"] + delta) @ w + b).to(x.dtype)
        return out

    def restrict(z: torch.Tensor, hook: Any) -> torch.Tensor:
        out = z.clone()
        mask = receiver_mask[..., None].to(z.device)
        out[:, :, head] = torch.where(mask, z[:, :, head], corrupted_z.to(z.dtype))
        return out

    return [(f"blocks.{layer}.hook_resid_pre", keep), (f"blocks.{layer}.attn.hook_{edge.via}", project),
            (f"blocks.{layer}.attn.hook_z", restrict)]


def entering_residuals(model: TransformerBridge, tokens: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """[layer] (n, pos, d_model) the residual stream entering each block, and last the one after the last block."""
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
    parts: list[list[torch.Tensor]] = [[] for _ in names]
    device = device_of(model)
    for start in range(0, len(tokens), batch_size):
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens[start:start + batch_size].to(device),
                                            names_filter=lambda name: name in names)
        for part, name in zip(parts, names):
            part.append(cache[name].float())
    return [torch.cat(part) for part in parts]


def screening_pairs(n: int, k: int = SCREEN_PAIRS) -> np.ndarray:
    """Indices of k pairs spread evenly over the n (corruption_pairs orders them by length and pair), all if n <= k."""
    return np.arange(n) if n <= k else np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def path_patching(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, pairs: pd.DataFrame,
                  masks: dict[str, np.ndarray], edges: list[Edge], batch_size: int,
                  screened: Collection[Edge] = frozenset(), screen_pairs: int = SCREEN_PAIRS,
                  confirm_from: float | None = None) -> pd.DataFrame:
    """edges.parquet: one row per edge with its effect (ratio of means) and per-pair spread. Edges in `screened`
    (those no figure draws: the stage passes every edge that does not join the circuit's nodes) are measured on
    `screen_pairs` pairs spread over the set, the rest on every pair; with `confirm_from`, the rest are measured on
    those pairs first too and again on every pair only where |effect| reaches `confirm_from` or has no figure there
    (the stage passes half the edge floor, so every edge between drawn nodes at the floor is an every-pair figure).
    `n_pairs` says which."""
    if pairs.empty or not edges:
        return _empty()
    clean_ids = torch.tensor(pairs["clean_id"].to_numpy())
    corrupted_ids = torch.tensor(pairs["corrupted_id"].to_numpy())
    corrupted = tokens[corrupted_ids]
    clean = forward_logit_diff(model, tokens[clean_ids], batch_size).cpu().numpy()
    base = forward_logit_diff(model, corrupted, batch_size).cpu().numpy()
    positions = readout_positions(model, corrupted)
    readout_mask = torch.zeros(corrupted.shape, dtype=torch.bool)
    readout_mask[torch.arange(len(corrupted)), positions] = True
    run = _PairRun(model, cache, clean_ids, corrupted_ids, corrupted, readout_mask,
                   {g: torch.from_numpy(m[pairs["corrupted_id"].to_numpy()]) for g, m in masks.items()},
                   entering_residuals(model, corrupted, batch_size), LayerNorms(model), batch_size, {})
    groups: dict[tuple[str, str], list[Edge]] = {}  # edges into one receiver input share their hooks
    for edge in edges:
        groups.setdefault((edge.receiver_name, edge.via), []).append(edge)
    every, few = np.arange(len(pairs)), screening_pairs(len(pairs), screen_pairs)
    patched: dict[Edge, tuple[np.ndarray, np.ndarray]] = {}
    for group in tqdm(groups.values(), desc="path patching", unit="receiver", disable=tqdm_disabled()):
        first_few = [e for e in group if e in screened or confirm_from is not None]
        if first_few:
            patched.update({e: (few, v) for e, v in zip(first_few, run.measure(first_few, few))})
        wide = [e for e in group if e not in screened and (confirm_from is None or (  # no figure (NaN) is confirmed too
            len(few) < len(every) and not abs(recovery_stats(patched[e][1], clean[few], base[few])["recovery"]) < confirm_from))]
        if wide:
            patched.update({e: (every, v) for e, v in zip(wide, run.measure(wide, every))})
    return pd.DataFrame([_row(e, patched[e][1], clean[patched[e][0]], base[patched[e][0]], model.cfg.n_layers)
                         for e in edges])


@dataclass
class _PairRun:
    """What every receiver group's forwards share: the pairs' sender outputs, masks and entering residuals."""

    model: TransformerBridge
    cache: ActivationCache
    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    corrupted: torch.Tensor
    readout_mask: torch.Tensor
    group_mask: dict[str, torch.Tensor]
    entering: list[torch.Tensor]
    ln: LayerNorms
    batch_size: int
    outputs: dict[str, torch.Tensor]

    def measure(self, group: list[Edge], rows: np.ndarray) -> list[np.ndarray]:
        """Per edge of one receiver input, the patched logit differences on the chosen pairs."""
        model, device, index = self.model, device_of(self.model), torch.from_numpy(rows)
        receiver = group[0].receiver
        for s in {e.sender.component for e in group} - set(self.outputs):
            self.outputs[s] = (sender_output(model, self.cache, s, self.clean_ids)
                               - sender_output(model, self.cache, s, self.corrupted_ids))
        # every (edge, pair) is one row of a stacked batch: the senders' deltas side by side, one forward per slice
        delta = torch.cat([self.outputs[e.sender.component][index]
                           * self.group_mask[e.sender.group][index][..., None].float() for e in group])
        receiver_mask = (self.readout_mask if receiver is None else self.group_mask[receiver.group])[index].repeat(
            len(group), 1)
        corrupted_z = None
        if receiver is not None and receiver.is_head:
            layer, head = parse_head(receiver.component)
            corrupted_z = cache_tensor(self.cache, f"blocks.{layer}.attn.hook_z")[self.corrupted_ids[index]][
                :, :, head].repeat(len(group), 1, 1)
        layer = model.cfg.n_layers if receiver is None else receiver.layer  # the forward starts here
        stacked, resid = self.corrupted[index].repeat(len(group), 1), self.entering[layer][index].repeat(len(group), 1, 1)
        out = []
        for start in range(0, len(stacked), self.batch_size):
            sl = slice(start, start + self.batch_size)
            hooks = edge_hooks(model, self.ln, group[0], delta[sl].to(device), receiver_mask[sl].to(device),
                               None if corrupted_z is None else corrupted_z[sl].to(device))
            out.append(resume_logit_diff(model, resid[sl].to(device), stacked[sl], layer - 1, hooks).cpu().numpy())
        values = np.concatenate(out)
        return [values[i * len(rows):(i + 1) * len(rows)] for i in range(len(group))]


def _row(edge: Edge, patched: np.ndarray, clean: np.ndarray, corrupted: np.ndarray, n_layers: int) -> dict[str, Any]:
    r = edge.receiver
    stats = recovery_stats(patched, clean, corrupted)
    return {
        "sender": edge.sender.name, "sender_component": edge.sender.component, "sender_layer": edge.sender.layer,
        "sender_group": edge.sender.group, "receiver": edge.receiver_name,
        "receiver_component": LOGITS if r is None else r.component,
        "receiver_layer": n_layers if r is None else r.layer, "receiver_group": LOGITS if r is None else r.group,
        "via": edge.via, "effect": float(stats["recovery"]), "n_pairs": stats["n"],
        "pair_q25": float(stats["pair_q25"]), "pair_median": float(stats["pair_median"]),
        "pair_q75": float(stats["pair_q75"]),
    }


def _empty() -> pd.DataFrame:
    columns = {"sender": "object", "sender_component": "object", "sender_layer": "int64", "sender_group": "object",
               "receiver": "object", "receiver_component": "object", "receiver_layer": "int64",
               "receiver_group": "object", "via": "object", "effect": "float64", "n_pairs": "int64",
               "pair_q25": "float64", "pair_median": "float64", "pair_q75": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


