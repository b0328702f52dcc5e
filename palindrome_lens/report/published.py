"""A published mechanism beside this run's numbers, point by point: ARENA's July 2023 palindrome problem.

The published findings are data (published/arena_palindromes.yaml); each point is measured here from the
attribute stage's outputs with a stated rule, and marked `agrees`, `differs` or `not comparable` (when
this run's setup is not theirs). Heads are named as TransformerLens does (`L0H0` is ARENA's 0.0); heads
within a layer are interchangeable, so a point about "0.0" is checked on whichever layer-0 head plays
that part here, and the name is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from palindrome_lens.report.formatting import pct, pcts
from palindrome_lens.report.roles import MIRROR, READS_MISMATCHES  # the same gates as the node roles

DESTROYS, SPARES = 0.8, 0.2  # share of the margin lost by an essential / an unimportant head
ZERO_MISLEADS = 0.3  # zero minus mean ablation margin loss that makes a head look important
NEAR_THE_END = 0.7  # share of the misclassified (or weakest) edits in the outer half of the pairs
N_WEAKEST = 20


@dataclass(frozen=True)
class Point:
    point: str
    published: str
    this_run: str
    verdict: str  # agrees, differs, not comparable


def published_findings() -> dict[str, Any]:
    text = resources.files("palindrome_lens.report").joinpath("published/arena_palindromes.yaml").read_text()
    return yaml.safe_load(text)


def setup_differences(model: dict[str, Any], published: dict[str, Any]) -> list[str]:
    """The settings of this run that are not the published setup's."""
    return [f"{key}: {model.get(key)!r} here, {want!r} there" for key, want in published["setup"].items()
            if model.get(key) != want]


def _margin_loss(ablation: pd.DataFrame, component: str, mode: str) -> float:
    base = ablation[(ablation["component"] == "none") & (ablation["kind"] == "balanced")]["mean_margin"].iloc[0]
    hit = ablation[(ablation["component"] == component) & (ablation["positions"] == "all")
                   & (ablation["mode"] == mode) & (ablation["kind"] == "balanced")]
    return float(-hit["margin_change"].iloc[0] / base) if len(hit) and base > 0 else math.nan


def _margin(ablation: pd.DataFrame, component: str, mode: str) -> float:
    hit = ablation[(ablation["component"] == component) & (ablation["positions"].isin(["all", "none"]))
                   & (ablation["mode"] == mode) & (ablation["kind"] == "balanced")]
    return float(hit["mean_margin"].iloc[0]) if len(hit) else math.nan


def compare(summary: dict[str, Any], circuit: dict[str, Any], tables: dict[str, pd.DataFrame]) -> list[Point]:
    """Every published point beside this run's measurement and a verdict."""
    published = published_findings()
    claims = published["findings"]
    differences = setup_differences(summary["model"], published)
    mirrors = summary.get("mirror_scores") or {}
    n_heads = int(summary["model"]["n_heads"])
    layer0 = [f"L0H{h}" for h in range(n_heads)]
    layer1 = [f"L1H{h}" for h in range(n_heads)]
    points: list[Point] = []

    # 1. the mirror head
    mirror_heads = [h for h in layer0 if (mirrors.get(h) or 0) >= MIRROR]
    scores = ", ".join(f"{h} {mirrors.get(h, math.nan):.2f}" for h in layer0)
    mirror = max(layer0, key=lambda h: mirrors.get(h) or 0)
    points.append(Point("mirror head", claims["mirror_head"],
                        f"mirror scores {scores}: " + (f"{', '.join(mirror_heads)} is the mirror head"
                                                       if mirror_heads else "no layer-0 mirror head"),
                        "agrees" if len(mirror_heads) == 1 else "differs"))

    # 2. the layer-1 head that reads mismatches at the readout
    attention = tables["readout_attention"]
    second = attention[(attention["half"] == "second_half") & (attention["layer"] == 1)]
    ratios = {}
    for head in layer1:
        mine = second[(second["component"] == head) & (second["n"] > 0)]
        by_status = {status: (g["attention"] * g["n"]).sum() / g["n"].sum() for status, g in mine.groupby("status")}
        matched = by_status.get("matched", math.nan)
        ratios[head] = by_status.get("mismatched", math.nan) / matched if matched > 0 else math.nan
    reader = max(layer1, key=lambda h: -math.inf if math.isnan(ratios[h]) else ratios[h])
    reads = ratios[reader] >= READS_MISMATCHES
    points.append(Point("reader head", claims["reader_head"],
                        "attention from the readout to a mismatched vs a matched second-half position: "
                        + ", ".join(f"{h} {ratios[h]:.1f}x" for h in layer1),
                        "agrees" if reads else "differs"))

    # 3. K and V composition of the mirror head into the reader, against random matrices, and as edges
    comp = tables["composition"]
    text, above = [], {}
    for mode in ("K", "V"):
        row = comp[(comp["mode"] == mode) & (comp["sender"] == mirror) & (comp["receiver"] == reader)]
        if len(row):
            r = row.iloc[0]
            above[mode] = bool(r["above_q95"])
            text.append(f"{mode}-composition {mirror}->{reader} {r['score']:.2f} (random: mean {r['baseline_mean']:.2f}, "
                        f"95th percentile {r['baseline_q95']:.2f})")
    edges = tables["edges"]
    for via in ("k", "v"):
        hit = edges[(edges["sender_component"] == mirror) & (edges["receiver_component"] == reader)
                    & (edges["via"] == via)]
        best = hit.loc[hit["effect"].abs().idxmax()] if len(hit) else None
        if best is not None:
            text.append(f"path patching {best['sender']} -> {best['receiver']} ({via}) {best['effect']:.2f}")
    points.append(Point("composition", claims["composition"], "; ".join(text) or "n/a",
                        "agrees" if above.get("K") and above.get("V") else "differs"))

    # 4. mean ablation per head
    ablation = tables["ablation"]
    base = _margin(ablation, "none", "none")
    per_head = {h: (_margin(ablation, h, "mean"), _margin_loss(ablation, h, "mean")) for h in layer0 + layer1}
    essential = {mirror, reader}
    spared = [h for h in per_head if h not in essential]
    ok = all(per_head[h][1] >= DESTROYS for h in essential) and all(per_head[h][1] <= SPARES for h in spared)
    points.append(Point("mean ablation", claims["mean_ablation"],
                        f"class-balanced margin {base:.1f} unablated; mean-ablated: "
                        + ", ".join(f"{h} {m:.1f}" for h, (m, _) in per_head.items()),
                        "agrees" if ok else "differs"))

    # 5. zero ablation makes the other layer-0 head look important
    other = [h for h in layer0 if h != mirror]
    misleads = {h: _margin_loss(ablation, h, "zero") - _margin_loss(ablation, h, "mean") for h in other}
    points.append(Point("zero ablation", claims["zero_ablation"],
                        "margin lost under zero vs mean ablation: "
                        + ", ".join(f"{h} {pct(_margin_loss(ablation, h, 'zero'), 0)} vs "
                                    f"{pct(_margin_loss(ablation, h, 'mean'), 0)}" for h in other),
                        "agrees" if any(v >= ZERO_MISLEADS for v in misleads.values()) else "differs"))

    # 6. adversarial edits: where the misclassified ones (or, with none, the weakest) break the string
    adversarial = tables["adversarial"]
    broken = adversarial[~adversarial["label"]]
    wrong = broken[~broken["correct"]]
    judged = wrong if len(wrong) else broken.nsmallest(N_WEAKEST, "margin")
    n_pairs = int(broken["length"].max()) // 2 if len(broken) else 0
    outer_pairs = n_pairs // 2  # pairs 0 .. n_pairs//2 - 1; the middle pair of an odd count is in neither half
    outer = float((judged["pair_pos"] < outer_pairs).mean()) if len(judged) else math.nan
    which = f"of the {len(judged)} misclassified" if len(wrong) else f"of the {len(judged)} weakest"
    halves = (f"pairs 0-{outer_pairs - 1} of 0-{n_pairs - 1}, the characters nearest START and END"
              if outer_pairs > 1 else f"pair 0 of 0-{n_pairs - 1}, the characters nearest START and END")
    points.append(Point("adversarial examples", claims["adversarial"],
                        f"{len(wrong)} of {len(adversarial)} single edits misclassified; {which}, {outer:.0%} break one of "
                        f"the outer half of the pairs ({halves}){weakest_pair(broken, n_pairs)}",
                        "agrees" if outer >= NEAR_THE_END else "differs"))

    # 7. what ARENA did not measure
    scrubs = "; ".join(f"{r['name']}: {r['verdict']} ({pct(r['recovered'])} recovered, control "
                       f"{pct(r['control'])}, constant {pct(r['constant'])})" for r in circuit.get("scrubbing", []))
    points.append(Point("faithfulness and scrubbing", claims["faithfulness"],
                        f"circuit {', '.join(summary.get('circuit_nodes', [])) or 'none'}: faithfulness "
                        f"{pct(summary.get('faithfulness'))}; {scrubs or 'no hypothesis tested'}", "new"))
    if differences:
        points = [Point(p.point, p.published, p.this_run, "not comparable" if p.verdict != "new" else p.verdict)
                  for p in points]
    return points


def weakest_pair(broken: pd.DataFrame, n_pairs: int) -> str:
    """'; the weakest pair is 2 (0 = outermost, 4 = centre) at 99.97% against 99.99%-100.00% for the others', or that
    no pair is weaker than another; percentages carry the digits they need to differ."""
    by_pair = broken.groupby("pair_pos")["correct"].mean() if len(broken) else pd.Series(dtype=float)
    if len(by_pair) < 2:
        return ""
    if by_pair.nunique() == 1:
        return f"; every pair is at {pcts([by_pair.iloc[0]], 1)[0]}: no pair is weaker than another"
    low = int(by_pair.idxmin())
    others = by_pair.drop(low)
    shown = dict(zip(["low", "lo", "hi"], pcts([by_pair[low], others.min(), others.max()], 1)))
    spread = shown["lo"] if shown["lo"] == shown["hi"] else f"{shown['lo']}-{shown['hi']}"
    return (f"; the weakest pair is {low} (0 = outermost, {n_pairs - 1} = centre) at {shown['low']} against "
            f"{spread} for the others")


def comparison_table(points: list[Point]) -> pd.DataFrame:
    return pd.DataFrame([p.__dict__ for p in points], columns=["point", "published", "this_run", "verdict"])
