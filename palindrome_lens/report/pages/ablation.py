"""The ablation page: every head and MLP ablated alone under resample, mean and zero ablation (the margin
it costs and the lean it leaves, class-balanced), every node (component at a position group) under
resample ablation, the circuit against the rest, and the evidence per head."""

from __future__ import annotations

import numpy as np
import pandas as pd

from palindrome_lens.report.content import Figure
from palindrome_lens.report.downloads import Download
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
TITLE = "Ablation"
NAV = "Ablation"
SUMMARY = ("every head and MLP ablated alone (resample, mean, zero): the class-balanced margin it costs and the lean "
           "it leaves; every node under resample ablation; the circuit against the rest")
NONE, ALL, BALANCED = "none", "all", "balanced"
MODES = ("resample", "mean", "zero")
MODE_LABELS = {"resample": "resample", "mean": "mean (label-balanced)", "zero": "zero (contrast only)"}
# summary.json's circuit_accuracy runs, in the order the page and the index show them.
INTERVENTIONS = {"unablated": "whole model", "others_ablated": "circuit only (every other node ablated)",
                 "circuit_ablated": "circuit ablated (its nodes ablated)"}
CONSTANT = "constant predictor"
def base_margin(ablation: pd.DataFrame) -> float:
    """The unablated model's class-balanced margin."""
    row = ablation[(ablation["component"] == NONE) & (ablation["kind"] == BALANCED)]
    return float(row["mean_margin"].iloc[0]) if len(row) else float("nan")


def balanced_rows(ablation: pd.DataFrame, positions: str) -> pd.DataFrame:
    """The class-balanced row of every component ablated at `positions`, with `margin_lost` (share of the
    unablated balanced margin) and `lean` (balanced mean logit difference)."""
    rows = ablation[(ablation["kind"] == BALANCED) & (ablation["positions"] == positions)].copy()
    base = base_margin(ablation)
    rows["margin_lost"] = -rows["margin_change"] / base if base > 0 else np.nan
    return rows.rename(columns={"mean_logit_diff": "lean"})


def components(rows: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(rows["component"]))


def mode_figure(ablation: pd.DataFrame, value: str, title: str, y_title: str) -> Figure:
    rows = balanced_rows(ablation, ALL)
    order = components(rows)
    series = {MODE_LABELS[m]: rows[rows["mode"] == m].set_index("component")[value].reindex(order).tolist()
              for m in MODES if (rows["mode"] == m).any()}
    fig = grouped_bars(order, series, title, "ablated component (at every position)", y_title,
                       legend_title="ablation")
    base = ablation[(ablation["component"] == NONE) & (ablation["kind"] == BALANCED)]
    if value == "margin_lost":
        fig.update_yaxes(tickformat=".0%")
        fig.add_hline(y=1, line_dash="dash", line_color="#52606d", annotation_position="top right",
                      annotation_text=f"{CONSTANT}: all of the margin lost")
    elif len(base):
        fig.add_hline(y=float(base["mean_logit_diff"].iloc[0]), line_dash="dash", line_color="#52606d",
                      annotation_text="unablated model", annotation_position="top right")
    return Figure(fig)


def node_figure(ablation: pd.DataFrame, circuit_nodes: list[str]) -> Figure | None:
    """Component x position group: the share of the balanced margin lost when that node alone is
    resample-ablated; components with a circuit node are marked ●."""
    rows = ablation[(ablation["kind"] == BALANCED) & ~ablation["positions"].isin([ALL, NONE])]
    if rows.empty:
        return None
    base = base_margin(ablation)
    rows = rows.assign(margin_lost=-rows["margin_change"] / base if base > 0 else np.nan)
    order, groups = components(rows), list(dict.fromkeys(rows["positions"]))
    z = grid(rows, "component", "positions", "margin_lost", order, groups)
    labels = [f"{c} ●" if any(n.startswith(f"{c}@") for n in circuit_nodes) else c for c in order]
    limit = max(1.0, symmetric_limit(z))
    fig = heatmap_grid([Panel("", z, groups, labels)], "Margin lost when one node is resample-ablated",
                       "position group", "component (● = has a circuit node)", "margin lost", zmin=-limit,
                       zmax=limit, zmid=0, colorscale=DIVERGING, hover="%{z:.1%}", text_format="%{z:.0%}",
                       panel_height=34 * len(order))
    return Figure(fig)


def kind_figure(ablation: pd.DataFrame) -> Figure:
    """One panel per mode: component rows (the unablated model first) x kind of string (and balanced): accuracy."""
    whole = ablation[ablation["positions"].isin([ALL, NONE])]
    rows = [NONE, *[c for c in components(whole) if c != NONE]]
    kinds = kind_sorted(whole["kind"].unique().tolist())
    labels = ["none (unablated)" if c == NONE else c for c in rows]
    panels = []
    for mode in [m for m in MODES if (whole["mode"] == m).any()]:
        cells = whole[(whole["mode"] == mode) | (whole["component"] == NONE)]  # 'none' in every panel
        panels.append(Panel(f"{MODE_LABELS[mode]} ablation", grid(cells, "component", "kind", "accuracy", rows,
                                                                  kinds), kinds, labels))
    return Figure(heatmap_grid(panels, "Accuracy per kind with one component ablated", "kind of string",
                               "ablated component", "accuracy", zmin=0, zmax=1, colorscale="RdYlGn",
                               hover="%{z:.1%}", text_format="%{z:.0%}", panel_height=32 * len(rows)))


def circuit_figure(accuracy: dict) -> Figure:
    keys = list(INTERVENTIONS)
    series = {"balanced": [accuracy[k].get("balanced_accuracy") for k in keys],
              "palindrome": [accuracy[k].get("palindrome_accuracy") for k in keys],
              "distance_1": [accuracy[k].get("distance_1_accuracy") for k in keys]}
    series = {k: [np.nan if v is None else v for v in vals] for k, vals in series.items()}
    hover = {k: [f"{INTERVENTIONS[key]}, {k}: {pct(v, 2)}" for key, v in zip(keys, vals)] for k, vals in series.items()}
    fig = grouped_bars([INTERVENTIONS[k] for k in keys], series,
                       f"Accuracy of the circuit alone and with the circuit ablated ({accuracy['mode']} ablation)",
                       "run", "accuracy on the analysis set", legend_title="strings", percent=True, hover=hover)
    fig.add_hline(y=0.5, line_dash="dash", line_color="#52606d", annotation_position="top right",
                  annotation_text=f"{CONSTANT} (balanced accuracy)")
    return Figure(fig)


def ablation_page(attribution: Attribution) -> Page:
    summary, ablation = attribution.summary, attribution["ablation"]
    accuracy = summary["circuit_accuracy"]
    mode = accuracy["mode"]
    bal = {k: accuracy[k].get("balanced_accuracy") for k in INTERVENTIONS}
    intro = (f"Circuit nodes: {names(list(summary['circuit_nodes'])) or 'none'} (see the Circuit page). Class-balanced "
             f"accuracy on the analysis set is {pct(bal['unablated'])} for the whole model, {pct(bal['others_ablated'])} "
             f"for the circuit alone (every other node {mode}-ablated) and {pct(bal['circuit_ablated'])} with the "
             "circuit's nodes ablated; a constant predictor scores 50%. Margin = the logit difference signed towards "
             "the true label; 'class-balanced' averages within each class, then across the two, so a constant "
             "predictor has a balanced margin of 0.")
    loss_read = ("Margin lost = the drop in the class-balanced margin as a share of the unablated model's: 0 = no "
                 "effect, 100% = the margin of a constant predictor, above 100% = worse than one. Resample ablation "
                 "takes the component's output from another string of the same length whose label is a fair coin; "
                 "mean ablation uses the label-balanced mean; zero ablation (shown only as the contrast) moves later "
                 "layers off their usual inputs and can over- or under-state a component.")
    sections = [
        Section("Margin lost per component, by ablation", loss_read + " Each component is ablated at every position.",
                mode_figure(ablation, "margin_lost", "Class-balanced margin lost with one component ablated",
                            "share of the margin lost")),
        Section("Lean per component, by ablation", (
            "Lean = the class-balanced mean logit difference (> 0 pushes towards 'palindrome', < 0 towards 'not'), "
            "with one component ablated at every position; the dashed line is the unablated model's lean. A "
            "component whose ablation leaves a strong lean makes the model answer one class whatever the string."),
            mode_figure(ablation, "lean", "Lean with one component ablated", "lean (balanced mean logit difference)")),
    ]
    nodes = node_figure(ablation, list(summary["circuit_nodes"]))
    if nodes is not None:
        sections.append(Section("Margin lost per node (resample)", (
            "Each cell resample-ablates one component at one group of positions only (a node of the circuit search) "
            "and shows the share of the class-balanced margin lost. Red cells are needed; white cells do nothing; "
            "blue cells help when removed. ● marks components with a node in the circuit. Nodes of the last layer "
            "exist only at the readout position."), nodes))
    sections += [
        Section("Circuit versus the rest", (
            f"Accuracy of the whole model, of the circuit alone (every other candidate node {mode}-ablated) and of "
            "the model with the circuit's nodes ablated: class-balanced, on palindromes, and on distance-1 strings. "
            "If the circuit is right, the circuit alone keeps the accuracy and ablating it drops the balanced "
            "accuracy to the constant predictor's 50%."), circuit_figure(accuracy)),
        Section("Accuracy under ablation, by kind", (
            "Each row ablates one component at every position (L{l}H{h}: that head's hook_z slice; {l}_mlp_out: that "
            "MLP) and shows the accuracy on each kind of string and the class-balanced accuracy; the first row is "
            "the unablated model. Red cells are where a component is needed, green where it is not."),
            kind_figure(ablation)),
    ]
    data = [Download("ablation.csv", ablation, "data/attribution/ablation.parquet")]
    sections = [Section(s.heading, s.caption, s.content, data=data) if isinstance(s.content, Figure) else s
                for s in sections]
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
