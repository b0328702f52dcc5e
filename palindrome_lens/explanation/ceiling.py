"""How far the pair-comparison template can go at all: its readout fed the model's *own* features.

Every level computes the same features (each readout head's output at the readout position, projected on that
head's evidence direction, then the readout's layer-0 reading projected on the context directions) from tables,
and a readout fitted to the model's logits turns them into the logit difference. Here the features are taken
from the model's forward pass instead (`blocks.{last}.attn.hook_z` and `blocks.0.attn.hook_z` through W_O,
projected on the same directions) and the same readout is fitted on the same strings. Its within-class fit is a
ceiling for every level: what it misses is not in these features (the readout heads' query moves with the
string, and the last MLP reads more than one direction per head), so no table can give it back; what a level
misses below it, its tables lose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import readout_positions
from palindrome_lens.explanation.agreement import agreement_table, figures
from palindrome_lens.explanation.readout import apply_readout, fit_readout
from palindrome_lens.explanation.tables import LengthTables, run_capturing


def model_features(model: TransformerBridge, tokens: torch.Tensor, tables: LengthTables,
                   batch_size: int) -> np.ndarray:
    """(n, H + k) the features a level computes, as the model computes them, for strings of one length."""
    last = model.cfg.n_layers - 1
    names = [f"blocks.{last}.attn.hook_z", "blocks.0.attn.hook_z"]
    w_last, w_first = (model.W_O.detach()[layer].float().cpu() for layer in (last, 0))  # (H, d_head, d_model)
    directions = torch.from_numpy(np.stack([h.direction for h in tables.heads])).float()  # (H, d_model)
    context = torch.from_numpy(tables.context_directions).float()  # (k, d_model)
    readout = readout_positions(model, tokens).cpu()
    out = []

    def reduce(rows: slice, acts: dict[str, torch.Tensor]) -> None:
        at = readout[rows]
        every = torch.arange(len(at))
        z_last, z_first = (acts[n].cpu()[every, at] for n in names)  # (n, H, d_head)
        heads = torch.einsum("nhd,hdm,hm->nh", z_last, w_last, directions)
        reading = torch.einsum("nhd,hdm->nm", z_first, w_first) @ context.T
        out.append(torch.cat([heads, reading], dim=1).double().numpy())

    run_capturing(model, tokens, names, batch_size, reduce)
    return np.concatenate(out) if out else np.zeros((0, len(tables.heads) + context.shape[0]))


def feature_ceiling(model: TransformerBridge, encode: Callable[[list[str]], torch.Tensor],
                    tables: Mapping[int, LengthTables], fit_texts: Sequence[str], fit_logits: np.ndarray,
                    test: pd.DataFrame, test_model: np.ndarray, edits: pd.DataFrame, baseline: Mapping[bool, float],
                    batch_size: int) -> dict[str, Any]:
    """The template's readout fitted, per length, on the model's own features of the fit strings, and scored on
    test and the edits as a level is: {"test": figures, "edits": figures} (agreement.figures)."""
    predicted = {"test": np.zeros(len(test)), "edits": np.zeros(len(edits))}
    sets = {"test": test["text"].astype(str).tolist(), "edits": edits["text"].astype(str).tolist()}
    fit_lengths = np.array([len(t) for t in fit_texts])
    for length, t in tables.items():
        rows = np.flatnonzero(fit_lengths == length)
        features = model_features(model, encode([fit_texts[i] for i in rows]), t, batch_size)
        gate, sides = fit_readout(features, len(t.heads), np.asarray(fit_logits)[rows])
        for name, texts in sets.items():
            at = np.flatnonzero(np.array([len(x) for x in texts]) == length)
            if len(at):
                f = model_features(model, encode([texts[i] for i in at]), t, batch_size)
                predicted[name][at] = apply_readout(f, len(t.heads), gate, sides)
    table = agreement_table(test, test_model, predicted["test"], edits, predicted["edits"])
    return {name: figures(table[table["set"] == name], dict(baseline)) for name in ("test", "edits")}
