"""The discovered-algorithm page: what the residual stream carries after each layer, found by the attribute
stage's hypothesis search by causal scrubbing (circuit.json `discovered`), with every hypothesis it tried."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from palindrome_lens import features
from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution

FILENAME = "discovery.html"
TITLE = "What the residual stream carries: the discovered algorithm"
NAV = "Algorithm"
SUMMARY = ("after each layer, the coarsest feature each position group can be scrubbed down to, found by a search by "
           "causal scrubbing, with every hypothesis it tried and why the coarser ones fail")
GATES = ("Each scrub resamples every position of a group from another string of the same length that agrees on the "
         "kept feature there. A hypothesis is supported when the loss recovered reaches the target on two scales "
         "(0% = every position resampled at random, and 0% = a constant predictor that always answers 50/50; 100% = "
         "the model), as does the balanced accuracy, each within the target of 100% on either side (beating the "
         "model by more changes what it computes too); when scrubbing each mirrored pair alone, the rest left as "
         "they are, keeps the same; when the control scrub from strings that disagree misses those gates; and when "
         "most scrubbed positions found a donor other than their own string.")


def hypothesis_table(boundary: dict[str, Any]) -> pd.DataFrame:
    bits = boundary.get("bits") or {}
    return pd.DataFrame([{"position group": group, "feature": feature, "what it carries": features.words(feature),
                          "bits (mean entropy per position)": bits.get(group)}
                         for group, feature in boundary["keep"].items()])


def figures_table(boundary: dict[str, Any]) -> pd.DataFrame:
    r = boundary["result"]
    local = r.get("local") or {}
    rows = [("loss recovered (random scrub 0%, model 100%)", pct(r["recovered"])),
            ("loss recovered (constant predictor 0%, model 100%)", pct(r.get("recovered_constant"))),
            ("balanced accuracy recovered", pct(r.get("accuracy_recovered"))),
            ("each pair scrubbed alone: loss recovered", pct(local.get("recovered"))),
            ("each pair scrubbed alone: balanced accuracy recovered", pct(local.get("accuracy_recovered"))),
            ("each pair scrubbed alone: the weakest pair", local.get("worst_unit") or "n/a"),
            ("each pair scrubbed alone: loss recovered, pooled over the pairs", pct(local.get("pooled_recovered"))),
            ("control scrub (strings that disagree)", pct(r.get("control"))),
            ("constant predictor on the random-to-model scale", pct(r.get("constant"))),
            ("scrubbed positions that found no other agreeing string", pct(r.get("self_draw_share"))),
            ("draws x rows", f"{r['n_draws']} x {r['n_rows']}"),
            ("verdict", r.get("verdict", "n/a"))]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def path_table(boundary: dict[str, Any]) -> pd.DataFrame:
    """Every hypothesis the search scrubbed at this boundary: screened on a subset, scrubbed in full when close."""
    rows = []
    for step in boundary["path"]:
        f = step["full"] or step["screen"]
        rows.append({"group": step["group"], "feature": step["feature"], "bits": step["bits"],
                     "scrub": "full" if step["full"] else "screen",
                     "loss recovered": pct(f.get("recovered")), "from a constant": pct(f.get("recovered_constant")),
                     "accuracy recovered": pct(f.get("accuracy_recovered")),
                     "each pair alone": "not run" if f.get("local_skipped") else pct(f.get("local_recovered")),
                     "control": pct(f.get("control")),
                     "self draws": pct(f.get("self_draw_share")), "verdict": f["verdict"],
                     "kept": "yes" if step["accepted"] else ""})
    return pd.DataFrame(rows)


Y_FLOOR, Y_CEILING = -0.15, 1.25  # the axis shows the band and below it; a step further out sits on the edge


def path_figure(boundary: dict[str, Any], target: float) -> Figure:
    """Per group, each feature tried: its bits against the lowest of its recovered shares (a share beyond the
    axis is drawn on its edge as a triangle, its value in the hover)."""
    fig = go.Figure()
    for group in dict.fromkeys(s["group"] for s in boundary["path"]):
        steps = [s for s in boundary["path"] if s["group"] == group]
        worst = []
        for s in steps:
            f = s["full"] or s["screen"]
            values = [f.get(k) for k in ("recovered", "recovered_constant", "accuracy_recovered", "local_recovered")]
            worst.append(min((v for v in values if v is not None), default=None))
        shown = [None if w is None else min(max(w, Y_FLOOR), Y_CEILING) for w in worst]
        symbols = ["star" if s["accepted"] else "triangle-down" if w is not None and w < Y_FLOOR else
                   "triangle-up" if w is not None and w > Y_CEILING else "circle" for s, w in zip(steps, worst)]
        fig.add_trace(go.Scatter(
            x=[s["bits"] for s in steps], y=shown, mode="markers+text", name=group,
            text=[s["feature"] + (" ✓" if s["accepted"] else "") for s in steps], textposition="top center",
            marker={"size": 12, "symbol": symbols},
            hovertext=[f"{group} {s['feature']}: {s['bits']:.2f} bits, lowest share recovered {pct(w)} ({v})"
                       for s, w, v in zip(steps, worst, [(s["full"] or s["screen"])["verdict"] for s in steps])],
            hoverinfo="text"))
    fig.add_hrect(y0=target, y1=2 - target, fillcolor="#3e9c35", opacity=0.12, line_width=0)
    fig.update_yaxes(tickformat=".0%", range=[Y_FLOOR - 0.05, Y_CEILING + 0.05])
    fig.update_layout(legend_title_text="position group")
    return Figure(label_figure(fig, f"Features tried after layer {boundary['after_layer']}",
                               x_title="bits the feature carries (mean entropy per position)",
                               y_title=f"lowest share recovered (green: {pct(target, 0)}-{pct(2 - target, 0)})"))


def discovery_sections(circuit: dict[str, Any]) -> list[Section]:
    discovered = circuit["discovered"]
    target = circuit["gates"]["faithfulness_target"]
    sentences = [s for s in circuit["sentences"]
                 if s.startswith(("What the residual stream carries", "After layer", "Where the comparison is made"))]
    out = [Section("In words", "The attribute stage's sentences, built from the numbers below. " + GATES,
                   Text("\n\n".join(sentences)))]
    for boundary in discovered["boundaries"]:
        layer = boundary["after_layer"]
        out += [
            Section(f"After layer {layer}: the hypothesis", anchor=f"after-layer-{layer}", caption=(
                "The feature each position group keeps (none: resampled from any string; all: not scrubbed, more "
                "than any feature in the library). Bits: the feature's entropy on the analysis strings, averaged "
                "over the group's positions; fewer bits is a coarser claim."), content=Table(hypothesis_table(boundary), digits=3)),
            Section(f"After layer {layer}: its figures", "The figures the verdict reads (the gates are stated under "
                    "'In words' above).", Table(figures_table(boundary))),
            Section(f"After layer {layer}: every hypothesis tried", (
                f"Groups in search order; each group's features from fewest bits up, the others kept at what they "
                f"reached; the first supported one is kept. Then two features kept together (joined), coarser than "
                f"what the group keeps, and the halves of the string searched apart (kept only when a half goes "
                f"coarser). A screen uses {discovered['screen_rows']} class-balanced "
                f"rows and {discovered['screen_draws']} draws; one within 5 points of every gate is scrubbed in full "
                f"({discovered['draws']} draws, every row), and only a full pass is kept. A scrub more than 5 points "
                f"below a global gate fails whatever its pairs give, so its pairs are not scrubbed alone ('not run' "
                f"in the table). Budget: "
                f"{discovered['evaluated']} of {discovered['budget']} scrubs used, each boundary an even share of "
                f"what was left" + ("; it ran out at this boundary." if boundary.get("budget_exhausted") else ".")),
                path_figure(boundary, target) if boundary["path"] else Text("Nothing was tried."),
                data=[Download(f"discovery_path_after_layer_{layer}.csv", path_table(boundary),  # every figure
                               "data/attribution/circuit.json, key discovered")]),
        ]
    return out


def discovery_page(attribution: Attribution) -> Page:
    intro = ("Which features of the string the residual stream carries after each layer, as far as the output needs "
             "them: the coarsest hypothesis in the feature library that survives causal scrubbing, found by a search "
             "rather than stated by hand. A group that keeps 'all' carries more than any library feature; that is "
             "a result too.")
    return Page(FILENAME, TITLE, intro, discovery_sections(attribution.circuit), nav_label=NAV)
