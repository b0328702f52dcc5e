"""The circuit document (circuit.json) and the sentences, each claim gated by the number behind it.

- "The decision is carried by C" only when faithfulness >= the target *and* every node's minimality
  is at least the floor; otherwise the sentences say what is and is not established.
- A scrubbing hypothesis is "supported" only when it keeps the target share of the loss on two scales
  (from a random scrub and from a constant predictor) and of the balanced accuracy, each within the target
  of 100% on either side, all at once and one pair at a time, beats a constant predictor, and its control
  scrub (donors that disagree) fails; a control that does not fail makes the test inconclusive (see
  scrub_verdict).
- Edges are named with their path-patching effect; heads are called mirror heads only with their
  mirror score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens import features
from palindrome_lens.attribution.ablation import ALL, BALANCED, NONE
from palindrome_lens.attribution.edges import LOGITS
from palindrome_lens.attribution.nodes import Node
from palindrome_lens.attribution.scrubbing import SELF_DRAW_LIMIT

FORMAT = "palindrome-lens/circuit/v2"  # v2: scrubs on both scales, local scrubs, `discovered`
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


def alone(local: dict[str, Any]) -> str:
    """'97.0% with each pair scrubbed alone (the weakest, pair 2; 98.1% pooled)': the gate's figure first."""
    worst, pooled = local.get("worst_unit"), local.get("pooled_recovered")
    side = "the farthest above 100%" if (local.get("recovered") or 0) > 1 else "the weakest"
    extra = "; ".join(x for x in (f"{side}, {worst}" if worst else "",
                                  f"{pct(pooled)} pooled" if pooled is not None else "") if x)
    return f"{pct(local.get('recovered'))} with each pair scrubbed alone" + (f" ({extra})" if extra else "")


def within(value: float | None, target: float) -> bool:
    """A recovered share within `target` of 100% on either side (None: no scale to fail on). A scrub that
    beats the model by more than that changes what the model computes as surely as one that falls short."""
    return value is None or target <= value <= 2 - target


def scrub_verdict(result: dict[str, Any], target: float) -> str:
    """supported: the scrub keeps the target share of the loss (on the random-anchored and on the
    constant-anchored scale) and of the balanced accuracy, each within the target of 100% on either side;
    so does every pair scrubbed alone (local); it beats a constant predictor; its control (donors that
    disagree on each kept feature) fails those loss gates; and most scrubbed positions drew another string
    than their own. inconclusive: the control passes too (what is kept is not shown to matter), or the scrub
    mostly drew the rows' own strings (it tested nothing). undefined: a random scrub costs nothing."""
    rec, constant = result["recovered"], result["constant"]
    if rec is None:
        return "undefined"
    if result.get("self_draw_share", 0.0) > SELF_DRAW_LIMIT:
        return "inconclusive"
    if not control_fails(result, target):
        return "inconclusive"
    local = result.get("local") or {}
    enough = all(within(result.get(k), target) for k in ("recovered", "recovered_constant", "accuracy_recovered"))
    enough = enough and within(local.get("recovered"), target) and within(local.get("accuracy_recovered"), target)
    enough = enough and not result.get("local_skipped")  # pairs never scrubbed alone support nothing
    return "supported" if enough and (constant is None or rec > constant) else "fails"


def control_fails(result: dict[str, Any], target: float) -> bool:
    """The control scrub misses the loss gate on one of the two scales (True when there is no control: a
    hypothesis that keeps only whole positions and nothing has no feature to disagree on)."""
    control, control_constant = result.get("control"), result.get("control_constant")
    if control is None and control_constant is None:
        return True
    return not (within(control, target) and within(control_constant, target))


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
                  "the model has parts outside the circuit that take over when circuit nodes are ablated"
                  + (": with K ablated, ablating " + "; ".join(f"{t['node']} as well closes {pct(t['share'])} of the gap"
                                                            for t in comp.get("taking_over") or [])
                     if comp.get("taking_over") else "") + "."))
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
        local = result.get("local") or {}
        text = (f"Hypothesis '{result['name']}'{': ' + result['claim'] if result['claim'] else ''}. Causal scrubbing "
                f"recovers {pct(result['recovered'])} of the loss (random resampling 0%, the model 100%; a constant "
                f"predictor would score {pct(result['constant'])} on this scale), "
                f"{pct(result.get('recovered_constant'))} on the scale from a constant predictor (0%) to the model, "
                f"{pct(result.get('accuracy_recovered'))} of the balanced accuracy and {alone(local)}; the control scrub from strings that disagree recovers "
                f"{pct(result['control'])} of the loss ({pct(result.get('control_constant'))} on the constant "
                "scale). ")
        text += {"supported": "The hypothesis is supported.",
                 "fails": f"The hypothesis fails: {why(scrub_facts(result, verdict), target)}.",
                 "inconclusive": f"The test is inconclusive: {why(scrub_facts(result, verdict), target)}.",
                 "undefined": "The test is undefined: random resampling costs nothing."}[verdict]
        out.append(text)
    for head, e in evidence.items():
        zero, resample = e.get("zero_ablation_balanced_accuracy"), e.get("resample_ablation_balanced_accuracy")
        if zero is not None and resample is not None and abs(zero - resample) >= ZERO_MISLEADS:
            out.append(f"Zero ablation misleads for {head}: zeroing it leaves a balanced accuracy of {pct(zero)} "
                       f"(lean {e['zero_ablation_lean']:+.2f} towards \"palindrome\"), resample ablation "
                       f"{pct(resample)} (lean {e['resample_ablation_lean']:+.2f}).")
    return out


GROUP_WORDS = {"chars": "each character position", "first_half": "each first-half position",
               "second_half": "each second-half position", "centre": "the centre position", "bos": "BOS", "eos": "EOS"}


def carries(group: str, feature: str) -> str:
    """ "each character position carries only whether its mirrored pair matches" """
    subject = GROUP_WORDS[group]
    if feature in (features.ALL, features.NONE):
        return f"{subject} carries {features.words(feature)}"
    return f"{subject} carries only {features.words(feature)} ({feature})"


def boundary_sentence(boundary: dict[str, Any], target: float) -> str:
    """What the search found after one layer, in words, with the figures behind it and what failed."""
    layer, keep, result = boundary["after_layer"], boundary["keep"], boundary["result"]
    bits = boundary["bits"]
    ordered = sorted(keep.items(), key=lambda gf: gf[0] in ("bos", "eos"))  # the characters first
    parts = [carries(g, f) + (f", {bits[g]:.1f} bits" if f not in (features.ALL, features.NONE) and g in bits else "")
             for g, f in ordered]
    text = f"After layer {layer}, {'; '.join(parts)}."
    if all(f == features.ALL for f in keep.values()):
        text = (f"After layer {layer}, no position group can be scrubbed down to any feature in the library: "
                f"{'; '.join(carries(g, f) for g, f in keep.items())}.")
    local = result.get("local") or {}
    if any(f != features.ALL for f in keep.values()):
        text += (f" Causal scrubbing every position down to that keeps {pct(result['recovered'])} of the loss "
                 f"(random scrub 0%, model 100%), {pct(result.get('recovered_constant'))} on the scale from a constant "
                 f"predictor (0%) to the model, {pct(result.get('accuracy_recovered'))} of the balanced accuracy and "
                 f"{alone(local)}")
        text += (f"; its control recovers {pct(result['control'])} ({pct(result.get('control_constant'))} on the "
                 "constant scale)." if result.get("control") is not None else ".")
    for group, feature in keep.items():
        failed = [s for s in boundary["path"] if s["group"] == group and not s["accepted"]]
        if feature == features.ALL and failed:
            best = max(failed, key=lambda s: _score(s))
            text += (f" {GROUP_WORDS[group][0].upper() + GROUP_WORDS[group][1:]} carries more than any feature in the "
                     f"library: all {len(failed)} coarser features tried fail (closest: {best['feature']}, "
                     f"{_why(best, target)}).")
        elif failed and feature != features.NONE:
            coarser = [s for s in failed if s["feature"] != features.NONE]
            if coarser:
                text += (f" Coarser features fail at {GROUP_WORDS[group]}: "
                         + "; ".join(f"{s['feature']} ({_why(s, target)})" for s in coarser[:3]) + ".")
    if boundary.get("budget_exhausted"):
        text += " The search budget ran out here, so coarser hypotheses may exist for the groups not reached."
    return text


def scrub_facts(result: dict[str, Any], verdict: str) -> dict[str, Any]:
    """The numbers of a scrub, flat, that summary.json and the search's path keep."""
    local = result.get("local") or {}
    return {**{k: result.get(k) for k in ("recovered", "recovered_constant", "accuracy_recovered", "control",
                                          "control_constant", "constant", "self_draw_share")},
            "local_recovered": local.get("recovered"), "local_accuracy_recovered": local.get("accuracy_recovered"),
            "local_skipped": bool(result.get("local_skipped")), "worst_unit": local.get("worst_unit"),
            "bits": result.get("bits"), "verdict": verdict}


def _figures(step: dict[str, Any]) -> dict[str, Any]:
    return step["full"] or step["screen"]


def _score(step: dict[str, Any]) -> float:
    f = _figures(step)
    values = [f.get(k) for k in ("recovered", "recovered_constant", "accuracy_recovered", "local_recovered")]
    return min((v for v in values if v is not None), default=-math.inf)


def _why(step: dict[str, Any], target: float) -> str:
    return why(_figures(step), target)


def why(f: dict[str, Any], target: float) -> str:
    """The first gate a scrub (flat figures, scrub_facts) missed, with its number."""
    if f["verdict"] == "inconclusive":
        if (f.get("self_draw_share") or 0) > SELF_DRAW_LIMIT:
            return f"inconclusive: {pct(f['self_draw_share'])} of positions found no other string that agrees"
        return (f"inconclusive: its control also recovers {pct(f.get('control'))} of the loss "
                f"({pct(f.get('control_constant'))} on the constant scale)")
    checks = (("recovered_constant", "on the constant scale"), ("recovered", "of the loss"),
              ("accuracy_recovered", "of the balanced accuracy"), ("local_recovered", "with each pair alone"),
              ("local_accuracy_recovered", "of the balanced accuracy with each pair alone"))
    for key, words in checks:
        value = f.get(key)
        if key == "local_recovered" and f.get("worst_unit"):
            words = words.replace("each pair alone", f"{f['worst_unit']} alone")
        if value is not None and not within(value, target):
            side = "above" if value > 1 else "below"
            return f"{pct(value)} {words}, {side} the {pct(target, 0)}-{pct(2 - target, 0)} band"
    return f"{pct(f.get('recovered'))} of the loss, no more than a constant predictor"


def discovered_sentences(discovered: dict[str, Any], target: float) -> list[str]:
    """The discovered algorithm in one sentence, then what the search found after each layer."""
    steps = []
    for boundary in discovered["boundaries"]:
        if boundary["result"].get("verdict") != "supported":
            continue
        kept = [carries(g, f) for g, f in sorted(boundary["keep"].items(), key=lambda gf: gf[0] in ("bos", "eos"))
                if f != features.NONE]
        quiet = [GROUP_WORDS[g] for g, f in boundary["keep"].items() if f == features.NONE]
        if kept:
            steps.append(f"after layer {boundary['after_layer']}, {'; '.join(kept)}"
                         + (f" ({names(quiet)}: nothing the output needs)" if quiet else ""))
    out = []
    if steps:
        out.append("What the residual stream carries, found by a hypothesis search by causal scrubbing (each step is "
                   "the coarsest hypothesis in the feature library whose scrub passes every gate): " + "; ".join(steps) + ".")
    out += [boundary_sentence(b, target) for b in discovered["boundaries"]]
    chain = chain_sentence(discovered["boundaries"])
    return [*out, *([chain] if chain else [])]


def chain_sentence(boundaries: list[dict[str, Any]]) -> str | None:
    """Where the comparison is made (readable.read_test at each boundary), in one sentence."""
    steps = []
    for b in boundaries:
        read = b.get("read")
        if not read:
            continue
        layer, verdicts = b["after_layer"], read["verdicts"]
        if verdicts["flag"] == "read":
            steps.append(f"after layer {layer}, {pct(read['flag'])}: compared, the pair flags are written where the "
                         "later layers read them")
        elif verdicts["label"] == "read":
            steps.append(f"after layer {layer}, {pct(read['flag'])} (the label direction {pct(read['label'])}): the "
                         "answer is written at the characters, not pair by pair")
        elif verdicts["flag"] == "spread":
            steps.append(f"after layer {layer}, {pct(read['flag'])} against {pct(read['whole'])} for the whole "
                         "residual: the characters matter, but no single direction per position carries the pair "
                         "flag (not compared yet, or compared into several directions, as a comparison that depends "
                         "on the characters would be)")
        elif verdicts["flag"] == "inconclusive":
            steps.append(f"after layer {layer}, {pct(read['flag'])}, but a control with shuffled coordinates moves "
                         f"{pct(read['control'])}: inconclusive")
        elif verdicts["flag"] == "not needed":
            steps.append(f"after layer {layer} the characters are no longer needed (their whole residual moves "
                         f"{pct(read['whole'])})")
    if not steps:
        return None
    return ("Where the comparison is made (the share of decisions that follow a donor of the other class when only "
            "each character position's pair-flag direction is swapped for the donor's): " + "; ".join(steps) + ".")


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy to Python, NaN to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
