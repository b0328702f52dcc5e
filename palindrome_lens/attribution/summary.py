"""The circuit summary: which heads carry the decision, chosen from ablation and patching, and the evidence.

Per head, two effects on the same 0..1 scale:
- ablation: the share of the model's mean margin (logit difference signed towards the right class)
  lost over the analysis set when the head alone is mean-ablated;
- patching: the normalised logit-difference recovery when the head's `z` at every position is patched
  from the clean palindrome into its distance-1 corruption.
A head's score is the larger of the two. Heads are ranked by score (name breaks ties); the circuit is
those scoring at least MIN_SCORE, at most `max_heads` of them, and never empty (with `weak` set when
even the best head falls short). Its faithfulness check: accuracy on distance-1 strings with only the
circuit heads mean-ablated, and with every other head mean-ablated (MLPs untouched).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.ablation import ALL, DISTANCE_1, NONE, mean_ablation, run_ablated
from palindrome_lens.attribution.attention import mirror_by_head
from palindrome_lens.attribution.common import head_names, margin, parse_head, to_numpy

MIN_SCORE = 0.1


def _weighted(rows: pd.DataFrame, column: str) -> float:
    rows = rows[(rows["n"] > 0) & rows[column].notna()]
    return float(np.average(rows[column], weights=rows["n"])) if len(rows) else math.nan


def head_evidence(model: TransformerBridge, ablation: pd.DataFrame, patching: pd.DataFrame,
                  mirror: pd.DataFrame) -> pd.DataFrame:
    """One row per head: ablation effects, patching recovery, mirror score and the ranking score."""
    base = ablation[(ablation["component"] == NONE) & (ablation["kind"] == ALL)]["mean_margin"].iloc[0]
    mirrors = mirror_by_head(mirror)
    rows = []
    for name in head_names(model):
        layer, head = parse_head(name)

        def ablated(mode: str, kind: str, column: str, name: str = name) -> float:
            hit = ablation[(ablation["component"] == name) & (ablation["mode"] == mode) & (ablation["kind"] == kind)]
            return float(hit[column].iloc[0]) if len(hit) else math.nan

        mine = patching[(patching["activation"] == "z") & (patching["component"] == name)
                        & patching["mismatch_pos"].isna()]
        all_pos = mine[mine["pos"].isna()]
        by_pos = {int(pos): _weighted(group, "recovery") for pos, group in mine[mine["pos"].notna()].groupby("pos")}
        by_pos = {pos: value for pos, value in by_pos.items() if not math.isnan(value)}
        best_pos = max(by_pos, key=lambda pos: (by_pos[pos], -pos)) if by_pos else None
        margin_loss = -ablated("mean", ALL, "margin_change") / base if base > 0 else math.nan
        recovery = _weighted(all_pos, "recovery")
        rows.append({
            "component": name, "layer": layer, "head": head,
            "mean_ablation_margin_loss": margin_loss,
            "mean_ablation_distance_1_accuracy_change": ablated("mean", DISTANCE_1, "accuracy_change"),
            "zero_ablation_distance_1_accuracy_change": ablated("zero", DISTANCE_1, "accuracy_change"),
            "mean_ablation_accuracy_change": ablated("mean", ALL, "accuracy_change"),
            "patching_recovery": recovery,
            "patching_best_pos": best_pos,
            "patching_best_pos_recovery": by_pos[best_pos] if best_pos is not None else math.nan,
            "mirror_score": mirrors.get(name, math.nan),
            "score": float(np.nanmax([margin_loss, recovery])) if not (math.isnan(margin_loss) and math.isnan(recovery))
            else math.nan,
        })
    return pd.DataFrame(rows)


def choose_circuit(evidence: pd.DataFrame, max_heads: int) -> tuple[list[str], bool]:
    """(heads, weak): the top heads by score with score >= MIN_SCORE, at most max_heads, at least one."""
    ranked = evidence.assign(_s=evidence["score"].fillna(-math.inf)).sort_values(["_s", "component"],
                                                                                  ascending=[False, True])
    strong = ranked[ranked["_s"] >= MIN_SCORE]["component"].tolist()[:max_heads]
    if strong:
        return strong, False
    return ranked["component"].tolist()[:1], True


def circuit_accuracy(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, examples: pd.DataFrame,
                     heads: list[str], batch_size: int) -> dict[str, Any]:
    """Accuracy unablated, with `heads` mean-ablated and with every other head mean-ablated.

    Reported over all rows, distance-1 rows and palindromes: ablation tends to push towards one class,
    so distance-1 accuracy alone can hide a circuit that is needed to say "palindrome".
    """
    label = examples["label"].to_numpy(dtype=bool)
    subsets = {"accuracy": np.ones(len(examples), dtype=bool),
               "distance_1_accuracy": examples["distance"].to_numpy() == 1,
               "palindrome_accuracy": label}
    others = [h for h in head_names(model) if h not in heads]
    out: dict[str, Any] = {"n": len(examples), "n_distance_1": int(subsets["distance_1_accuracy"].sum()),
                           "n_palindrome": int(label.sum()), "other_heads": others}
    for key, ablated in (("unablated", []), ("circuit_ablated", heads), ("others_ablated", others)):
        ablations = [mean_ablation(cache, examples, head) for head in ablated]
        correct = to_numpy(margin(run_ablated(model, tokens, ablations, batch_size).cpu(), torch.tensor(label))) > 0
        out[key] = {name: float(correct[mask].mean()) if mask.any() else None for name, mask in subsets.items()}
    return out


def describe(evidence: pd.DataFrame, heads: list[str], weak: bool, accuracy: dict[str, Any]) -> list[str]:
    """One or two sentences, written from the numbers."""
    def pct(x: float | None) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    def acc(key: str) -> str:
        a = accuracy[key]
        return f"{pct(a['distance_1_accuracy'])} on distance-1 strings and {pct(a['palindrome_accuracy'])} on palindromes"

    named = " and ".join(heads) if len(heads) <= 2 else ", ".join(heads[:-1]) + f" and {heads[-1]}"
    top = evidence.set_index("component").loc[heads[0]]
    n_others = len(accuracy["other_heads"])
    first = (f"{'The strongest single head is' if weak else 'The decision is carried mainly by'} {named}: "
             f"with {'it' if len(heads) == 1 else 'them'} mean-ablated the model scores {acc('circuit_ablated')} "
             f"(unablated: {acc('unablated')}), while with the other {n_others} head{'s' if n_others != 1 else ''} "
             f"mean-ablated it scores {acc('others_ablated')}.")
    second = (f"Patching {heads[0]}'s output from the clean palindrome into its one-pair corruption recovers "
              f"{pct(top['patching_recovery'])} of the logit difference, and its mirror score (attention from "
              f"character i to its mirror L+1-i) is {top['mirror_score']:.2f}.")
    if weak:
        second += f" No head reaches the selection threshold of {MIN_SCORE:g}: the decision is spread out."
    return [first, second]


def circuit_summary(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, examples: pd.DataFrame,
                    ablation: pd.DataFrame, patching: pd.DataFrame, mirror: pd.DataFrame, max_heads: int,
                    batch_size: int) -> dict[str, Any]:
    evidence = head_evidence(model, ablation, patching, mirror)
    heads, weak = choose_circuit(evidence, max_heads)
    accuracy = circuit_accuracy(model, tokens, cache, examples, heads, batch_size)
    return {
        "circuit_heads": heads,
        "weak": weak,
        "selection": (f"heads ranked by max(mean-ablation margin loss, all-position z patching recovery); "
                      f"kept if >= {MIN_SCORE:g}, at most {max_heads}, at least one"),
        "evidence": {row["component"]: {k: _clean(v) for k, v in row.items() if k != "component"}
                     for row in evidence.to_dict(orient="records")},
        "circuit_accuracy": accuracy,
        "sentences": describe(evidence, heads, weak, accuracy),
    }


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy to Python, NaN to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
