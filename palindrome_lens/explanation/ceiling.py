"""How far the pair-comparison template can go at all: its readout fed the model's *own* features.

Every level computes the same features (each readout head's softmax-weighted mean of per-position evidence at
the readout position, then the readout's layer-0 reading projected on the context directions) from tables, and
a readout fitted to the model's logits turns them into the logit difference. Here the features come from the
model's forward pass instead: the readout heads' attention pattern (`blocks.{L}.attn.hook_pattern`) and each
position's value through W_O projected on the head's evidence direction (`hook_v`), the layer-0 reading from
`blocks.0.attn.hook_z` (in every variant). The same readout is fitted on the same strings. Three variants:
- `model`: attention and evidence both the model's: a ceiling for every level, since what it misses is not in
  these features (the last MLP reads more than one direction per head), so no table can give it back;
- `model_attention`: the model's attention weights with the full tables' evidence;
- `model_evidence`: the full tables' attention (softmax of their salience) with the model's evidence.
Between the full level and `model`, the two halves say which part of the tables loses the within-class lean: one
salience per (position, own, mirror) from the readout's mean query, or one evidence per entry averaged over
contexts, while the model's move with the rest of the string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import parse_head, readout_positions
from palindrome_lens.explanation.agreement import agreement_table, figures
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.readout import apply_readout, fit_readout
from palindrome_lens.explanation.tables import LengthTables, run_capturing

VARIANTS = {"model": (True, True), "model_attention": (True, False), "model_evidence": (False, True)}


@dataclass
class Reading:
    """What the readout heads and the layer-0 heads do at the readout position, for strings of one length."""

    weights: np.ndarray  # (n, H, P) each readout head's attention over every position ([BOS], characters, [EOS])
    evidence: np.ndarray  # (n, H, P) each position's value through W_O along the head's evidence direction
    context: np.ndarray  # (n, k) the layer-0 heads' output, projected on the context directions

    def features(self) -> np.ndarray:
        """(n, H + k) what a level computes, as the model computes it."""
        return np.concatenate([(self.weights * self.evidence).sum(axis=2), self.context], axis=1)


def model_reading(model: TransformerBridge, tokens: torch.Tensor, tables: LengthTables, batch_size: int) -> Reading:
    heads = [parse_head(h.name) for h in tables.heads]  # (layer, head) of every readout head, in table order
    layers = sorted({layer for layer, _ in heads})
    names = [n for layer in layers for n in (f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v")]
    names.append("blocks.0.attn.hook_z")
    w_o = model.W_O.detach().float().cpu()  # (layer, H, d_head, d_model)
    directions = torch.from_numpy(np.stack([h.direction for h in tables.heads])).float()  # (heads, d_model)
    context = torch.from_numpy(tables.context_directions).float()  # (k, d_model)
    readout = readout_positions(model, tokens).cpu()
    parts: dict[str, list[np.ndarray]] = {"weights": [], "evidence": [], "context": []}

    def reduce(rows: slice, acts: dict[str, torch.Tensor]) -> None:
        at = readout[rows]
        every = torch.arange(len(at))
        weights, evidence = [], []
        for i, (layer, head) in enumerate(heads):
            pattern, v = (acts[f"blocks.{layer}.attn.hook_{n}"].cpu() for n in ("pattern", "v"))
            weights.append(pattern[every, head, at])  # (n, key position)
            evidence.append(v[:, :, head] @ w_o[layer, head] @ directions[i])  # (n, position)
        parts["weights"].append(torch.stack(weights, dim=1).double().numpy())  # (n, heads, key position)
        parts["evidence"].append(torch.stack(evidence, dim=1).double().numpy())
        z_first = acts["blocks.0.attn.hook_z"].cpu()
        reading = torch.einsum("nhd,hdm->nm", z_first[every, at], w_o[0]) @ context.T
        parts["context"].append(reading.double().numpy())

    run_capturing(model, tokens, names, batch_size, reduce)
    return Reading(*(np.concatenate(parts[k]) for k in ("weights", "evidence", "context")))


def table_reading(program: Emulator, texts: Sequence[str], context: np.ndarray) -> Reading:
    """The same parts from the full level's per-position tables (the softmax of their salience)."""
    marks = program.head_marks(texts)
    scores = np.stack([s for s, _ in marks], axis=1)
    weights = np.exp(scores - scores.max(axis=2, keepdims=True))
    return Reading(weights / weights.sum(axis=2, keepdims=True), np.stack([v for _, v in marks], axis=1), context)


def mixed(own: Reading, tables: Reading, variant: str) -> np.ndarray:
    attention, evidence = VARIANTS[variant]
    return Reading((own if attention else tables).weights, (own if evidence else tables).evidence,
                   own.context).features()


def feature_ceiling(model: TransformerBridge, encode: Callable[[list[str]], torch.Tensor],
                    tables: Mapping[int, LengthTables], program: Emulator, fit_texts: Sequence[str],
                    fit_logits: np.ndarray, test: pd.DataFrame, test_model: np.ndarray, edits: pd.DataFrame,
                    baseline: Mapping[bool, float], batch_size: int) -> dict[str, dict[str, Any]]:
    """Per variant, the template's readout fitted per length on the fit strings' features and scored on test and
    the edits as a level is: {variant: {"test": figures, "edits": figures}} (agreement.figures). `program` holds
    the full level's per-position tables (constants.json)."""
    sets = {"fit": list(fit_texts), "test": test["text"].astype(str).tolist(),
            "edits": edits["text"].astype(str).tolist()}
    predicted = {v: {"test": np.zeros(len(test)), "edits": np.zeros(len(edits))} for v in VARIANTS}
    for length, t in tables.items():
        readings = {}
        for name, texts in sets.items():
            at = np.flatnonzero(np.array([len(x) for x in texts], dtype=np.int64) == length)
            chosen = [texts[i] for i in at]
            own = model_reading(model, encode(chosen), t, batch_size) if chosen else None
            readings[name] = (at, own, table_reading(program, chosen, own.context) if chosen else None)
        fit_at, fit_own, fit_tables = readings["fit"]
        if not len(fit_at):
            continue
        for variant in VARIANTS:
            gate, sides = fit_readout(mixed(fit_own, fit_tables, variant), len(t.heads),
                                      np.asarray(fit_logits)[fit_at])
            for name in ("test", "edits"):
                at, own, tab = readings[name]
                if len(at):
                    predicted[variant][name][at] = apply_readout(mixed(own, tab, variant), len(t.heads), gate, sides)
    out = {}
    for variant, values in predicted.items():
        table = agreement_table(test, test_model, values["test"], edits, values["edits"])
        out[variant] = {name: figures(table[table["set"] == name], dict(baseline)) for name in ("test", "edits")}
    return out
