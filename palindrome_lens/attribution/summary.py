"""The circuit document (circuit.json) and the sentences, each claim gated by the number behind it.

- "The decision is carried by C" only when faithfulness >= the target *and* every node's minimality
  is at least the floor; otherwise the sentences say what is and is not established.
- A scrubbing hypothesis is "supported" only when it recovers at least the target share of the loss
  *and* its control scrub recovers less than a constant predictor would (the control must fail); a
  control that does not fail makes the test inconclusive.
- Edges are named with their path-patching effect; heads are called mirror heads only with their
  mirror score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.attribution.ablation import ALL, BALANCED, NONE
from palindrome_lens.attribution.edges import LOGITS
from palindrome_lens.attribution.nodes import Node

FORMAT = "palindrome-lens/circuit/v1"
MIRROR = 0.5  # a head whose mirror score is at least this attends from characters to their mirrors
ZERO_MISLEADS = 0.2  # zero vs resample balanced-accuracy gap worth a sentence


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def names(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"


def head_evidence(ablation: pd.DataFrame, patching: pd.DataFrame, mirrors: dict[str, float], heads: list[str],
                  circuit: list[Node], minimality: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per head: margin lost (share of the balanced margin) and lean under each ablation mode, patching
    recovery, mirror score, circuit membership and minimality."""
    base = ablation[(ablation["component"] == NONE) & (ablation["kind"] == BALANCED)]["mean_margin"].iloc[0]
    out = {}
    for name in heads:
        layer, head = (int(x) for x in name[1:].split("H"))
        row = {"layer": layer, "head": head}
        for mode in ("resample", "mean", "zero"):
            hit = ablation[(ablation["component"] == name) & (ablation["positions"] == ALL)
                           & (ablation["mode"] == mode) & (ablation["kind"] == BALANCED)]
            loss = -float(hit["margin_change"].iloc[0]) / base if len(hit) and base > 0 else None
            row[f"{mode}_ablation_margin_loss"] = loss
            row[f"{mode}_ablation_balanced_accuracy"] = float(hit["accuracy"].iloc[0]) if len(hit) else None
            row[f"{mode}_ablation_lean"] = float(hit["mean_logit_diff"].iloc[0]) if len(hit) else None
        mine = patching[(patching["activation"] == "z") & (patching["component"] == name)
                        & patching["mismatch_pos"].isna()]
        all_pos = mine[mine["pos"].isna()]
        by_pos = mine[mine["pos"].notna()].groupby("pos")["recovery"].mean()
        by_pos = by_pos[by_pos.notna()]
        row["patching_recovery"] = _mean_over_lengths(all_pos)
        row["patching_best_pos"] = int(by_pos.idxmax()) if len(by_pos) else None
        row["patching_best_pos_recovery"] = float(by_pos.max()) if len(by_pos) else None
        row["mirror_score"] = mirrors.get(name)
        in_circuit = [nd.name for nd in circuit if nd.component == name]
        row["in_circuit"] = bool(in_circuit)
        row["circuit_nodes"] = in_circuit
        row["minimality"] = min((minimality[n]["value"] for n in in_circuit if n in minimality), default=None)
        out[name] = {k: _clean(v) for k, v in row.items()}
    return out


def _mean_over_lengths(rows: pd.DataFrame) -> float | None:
    rows = rows[(rows["n"] > 0) & rows["recovery"].notna()]
    return float(np.average(rows["recovery"], weights=rows["n"])) if len(rows) else None


def scrub_verdict(result: dict[str, Any], target: float) -> str:
    """supported: the scrub keeps the target share of the loss *and* of the balanced accuracy, beats a constant
    predictor, and its control does worse than a constant predictor (it must fail)."""
    rec, control, constant = result["recovered"], result["control"], result["constant"]
    accuracy = result.get("accuracy_recovered")
    if rec is None:
        return "undefined"
    if control is not None and constant is not None and control >= constant:
        return "inconclusive"
    enough = rec >= target and (accuracy is None or accuracy >= target)
    return "supported" if enough and (constant is None or rec > constant) else "fails"


def edge_phrase(edge: dict[str, Any]) -> str:
    to = "the logits" if edge["to"] == LOGITS else edge["to"]
    via = "" if edge["via"] in ("logits",) else f" ({edge['via']})"
    return f"{edge['from']} -> {to}{via} {edge['effect']:.2f}"


def sentences(doc: dict[str, Any], evidence: dict[str, dict[str, Any]], target: float, floor: float) -> list[str]:
    out = []
    f = doc["faithfulness"]
    node_names = [n["name"] for n in doc["nodes"] if n["layer"] >= 0]
    minimal = doc["minimality"]
    acc = doc["ablation"]
    full = acc["model"]
    if full["balanced_margin"] <= 0:
        return [f"The model has no positive class-balanced margin ({full['balanced_margin']:.2f}), so no circuit "
                "can be measured against it; no circuit claim is made."]
    circuit_run = acc["circuit_only"]
    numbers = (f"with every other node {doc['ablation']['mode']}-ablated it keeps {pct(f)} of its class-balanced margin "
               f"(balanced accuracy {pct(circuit_run['balanced_accuracy'])} against {pct(full['balanced_accuracy'])} "
               f"for the whole model; a constant predictor scores 50.0% and margin 0)")
    weak = [n for n in node_names if minimal[n]["value"] < floor]
    if f is not None and f >= target and not weak:
        smallest = min(node_names, key=lambda n: minimal[n]["value"]) if node_names else None
        out.append(f"The decision is carried by {names(node_names) or 'the embeddings alone'}: {numbers}. "
                   + (f"Every node is needed: each one's minimality is at least {minimal[smallest]['value']:.2f} "
                      f"(floor {floor:g}; smallest {smallest})." if smallest else ""))
    elif f is not None and f >= target:
        out.append(f"{names(node_names)} reach the faithfulness target ({numbers}), but {names(weak)} "
                   f"{'changes' if len(weak) == 1 else 'change'} the margin by less than {floor:g} of it whatever "
                   "else is ablated, so this set is not shown to be minimal.")
    else:
        out.append(f"No set of nodes found reaches faithfulness {target:g}: the decision is spread out over the model. "
                   f"The best set found ({names(node_names) or 'none'}) keeps {pct(f)} of the margin.")
    comp = doc["completeness"]
    out.append(f"Completeness gap {comp['value']:.2f} of the margin (worst K: {comp['worst_k']}): "
               + ("ablating any part of the circuit hurts the circuit and the model alike."
                  if comp["value"] < 1 - target else
                  "the model has parts outside the circuit that take over when circuit nodes are ablated."))
    strong = sorted(doc["edges"], key=lambda e: -abs(e["effect"]))[:6]
    if strong:
        out.append("Information flows " + "; ".join(edge_phrase(e) for e in strong)
                   + " (path patching: the share of the logit difference restored when only that edge carries the "
                   "clean palindrome's value).")
    mirror_heads = [(h, e["mirror_score"]) for h, e in evidence.items()
                    if e.get("in_circuit") and (e.get("mirror_score") or 0) >= MIRROR]
    if mirror_heads:
        out.append(" ".join(f"{h} attends from each character to its mirror (mirror score {s:.2f})."
                            for h, s in mirror_heads))
    for result in doc["scrubbing"]:
        verdict = result["verdict"]
        text = (f"Hypothesis '{result['name']}'{': ' + result['claim'] if result['claim'] else ''}. Causal scrubbing "
                f"recovers {pct(result['recovered'])} of the loss (random resampling 0%, the model 100%) and "
                f"{pct(result.get('accuracy_recovered'))} of the balanced accuracy; the control scrub from strings "
                f"that disagree recovers {pct(result['control'])} of the loss, and a constant predictor would "
                f"score {pct(result['constant'])} on this scale. ")
        text += {"supported": "The hypothesis is supported.",
                 "fails": f"The hypothesis fails: it keeps less than {pct(target, 0)} of the loss or of the balanced "
                          "accuracy, or no more than a constant predictor.",
                 "inconclusive": "The test is inconclusive: the control does not destroy the performance.",
                 "undefined": "The test is undefined: random resampling costs nothing."}[verdict]
        out.append(text)
    for head, e in evidence.items():
        zero, resample = e.get("zero_ablation_balanced_accuracy"), e.get("resample_ablation_balanced_accuracy")
        if zero is not None and resample is not None and abs(zero - resample) >= ZERO_MISLEADS:
            out.append(f"Zero ablation misleads for {head}: zeroing it leaves a balanced accuracy of {pct(zero)} "
                       f"(lean {e['zero_ablation_lean']:+.2f} towards \"palindrome\"), resample ablation "
                       f"{pct(resample)} (lean {e['resample_ablation_lean']:+.2f}).")
    return out


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy to Python, NaN to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
