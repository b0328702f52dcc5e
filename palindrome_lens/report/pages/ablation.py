"""The ablation and circuit page: zero and mean ablation of every head and MLP by kind, the heads the
attribute stage names as the circuit, and the evidence for them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.formatting import names, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.plots import (
    DIVERGING,
    Panel,
    grid,
    grouped_bars,
    heatmap_grid,
    kind_sorted,
    symmetric_limit,
)

FILENAME = "ablation.html"
TITLE = "Ablation and circuit"
NAV = "Ablation & circuit"
SUMMARY = "zero and mean ablation of every head and MLP; the circuit heads and how much they carry"
NONE = "none"
MODES = ("zero", "mean")
# summary.json's circuit_accuracy entries, in the order the page and the index show them.
INTERVENTIONS = {"unablated": "nothing ablated", "circuit_ablated": "circuit heads mean-ablated",
                 "others_ablated": "all other heads mean-ablated"}
EVIDENCE_COLUMNS = {
    "score": "score",
    "mean_ablation_margin_loss": "mean-ablation margin loss",
    "patching_recovery": "z patching recovery",
    "mean_ablation_distance_1_accuracy_change": "Δ distance-1 acc. (mean abl.)",
    "zero_ablation_distance_1_accuracy_change": "Δ distance-1 acc. (zero abl.)",
    "patching_best_pos": "best patching pos",
    "mirror_score": "mirror score",
}


def component_rows(ablation: pd.DataFrame) -> list[str]:
    """'none' (the unablated model) first, then components in the order the stage wrote them."""
    components = [c for c in dict.fromkeys(ablation["component"]) if c != NONE]
    return ([NONE] if (ablation["component"] == NONE).any() else []) + components


def ablation_figure(ablation: pd.DataFrame, value: str, title: str, color_title: str, *, percent: bool) -> Figure:
    rows = component_rows(ablation)
    kinds = kind_sorted(ablation["kind"].unique().tolist())
    panels = []
    for mode in MODES:
        cells = ablation[(ablation["mode"] == mode) | (ablation["component"] == NONE)]  # 'none' in every panel
        z = grid(cells, "component", "kind", value, rows, kinds)
        labels = ["none (unablated)" if c == NONE else c for c in rows]
        panels.append(Panel(f"{mode} ablation", z, kinds, labels))
    if percent:
        fig = heatmap_grid(panels, title, "kind of string", "ablated component", color_title, cols=2, zmin=0, zmax=1,
                           colorscale="RdYlGn", hover="%{z:.1%}", text_format="%{z:.0%}",
                           panel_height=32 * len(rows))
    else:
        limit = symmetric_limit(np.concatenate([p.z.ravel() for p in panels]))
        fig = heatmap_grid(panels, title, "kind of string", "ablated component", color_title, cols=2,
                           zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING, text_format="%{z:.2f}",
                           panel_height=32 * len(rows))
    return Figure(fig)


def circuit_figure(accuracy: dict) -> Figure:
    keys = [k for k in INTERVENTIONS if k in accuracy]
    series = {"distance_1": [accuracy[k].get("distance_1_accuracy") for k in keys],
              "all": [accuracy[k].get("accuracy") for k in keys]}
    series = {k: [np.nan if v is None else v for v in vals] for k, vals in series.items()}
    hover = {k: [f"{INTERVENTIONS[key]}: {pct(v, 2)}" for key, v in zip(keys, vals)] for k, vals in series.items()}
    fig = grouped_bars([INTERVENTIONS[k] for k in keys], series,
                       "Accuracy with the circuit heads or the rest mean-ablated", "intervention",
                       "accuracy on the analysis set", legend_title="strings", percent=True, hover=hover)
    return Figure(fig)


def evidence_table(summary: dict) -> Table:
    circuit = set(summary["circuit_heads"])
    rows = []
    for head, facts in summary["evidence"].items():
        row = {"head": head, "in circuit": head in circuit}
        row.update({label: facts.get(key) for key, label in EVIDENCE_COLUMNS.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.assign(_s=frame["score"].astype(float).fillna(-np.inf)).sort_values(
            ["_s", "head"], ascending=[False, True], kind="stable").drop(columns="_s")
    return Table(frame.reset_index(drop=True), digits=3)


def ablation_page(attribution: Attribution) -> Page:
    summary, ablation = attribution.summary, attribution["ablation"]
    accuracy = summary["circuit_accuracy"]
    heads = list(summary["circuit_heads"])
    d1 = {k: accuracy[k].get("distance_1_accuracy") for k in INTERVENTIONS}
    intro = (f"Circuit heads: {names(heads)}. On the distance-1 strings of the analysis set, accuracy is "
             f"{pct(d1['unablated'])} unablated, {pct(d1['circuit_ablated'])} with only the circuit heads "
             f"mean-ablated, and {pct(d1['others_ablated'])} with every other head mean-ablated (MLPs untouched).")
    sections = [
        Section("The circuit in words", "Generated by the attribute stage from the numbers below.",
                Text("\n\n".join(summary["sentences"]) + "\n\nSelection rule: " + str(summary.get("selection", "")))),
        Section("Circuit heads versus the rest", (
            "Bars show accuracy on the analysis set's distance-1 strings (the hard case) and on all its strings. If "
            "the circuit is right, ablating it hurts a lot (middle group) while ablating everything else hurts "
            "little (right group). Mean ablation replaces a head's output by its average per position and length."),
            circuit_figure(accuracy)),
        Section("Evidence per head", (
            "score = max(mean-ablation margin loss, z patching recovery): the share of the model's mean margin lost "
            "when the head alone is mean-ablated, and the share of the clean logit difference restored when its "
            "output is patched from the clean palindrome at every position. Δ columns are changes in distance-1 "
            "accuracy when the head is ablated. Heads are sorted by score; the circuit is the top ones."),
            evidence_table(summary)),
        Section("Accuracy under ablation", (
            "Each row ablates one component (L{l}H{h}: that head's hook_z slice; {l}_mlp_out: that MLP) and "
            "shows the accuracy on each kind of string; the first row is the unablated model. Zero ablation sets "
            "the output to 0; mean ablation to its average (the fairer test: zeroing moves later layers off their "
            "usual inputs). Red cells are where a component is needed."),
            ablation_figure(ablation, "accuracy", "Accuracy per kind with one component ablated", "accuracy",
                            percent=True)),
        Section("Logit difference under ablation", (
            "The same ablations, showing the mean logit difference logit[palindrome] − logit[not palindrome] per "
            "kind: palindromes should stay red (positive) and the rest blue (negative). A row that turns pale has "
            "lost what separates the classes."),
            ablation_figure(ablation, "mean_logit_diff", "Mean logit difference per kind with one component ablated",
                            "mean logit difference", percent=False)),
    ]
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
