"""The wiring sections of the circuit page: composition scores of every head pair beside random weights,
and every edge path patching measured (not only those in the graph), with its per-pair spread."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from palindrome_lens.attribution.edges import VIAS
from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import num
from palindrome_lens.report.html import Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.plots import DIVERGING, SERIES, Panel, grid, heatmap_grid, symmetric_limit

MODES = ("Q", "K", "V")


def composition_figure(composition: pd.DataFrame) -> Figure:
    """One panel per mode: each sender → receiver score as a dot, the random baseline's mean and 95th
    percentile as lines."""
    modes = [m for m in MODES if (composition["mode"] == m).any()]
    fig = make_subplots(rows=1, cols=len(modes), shared_yaxes=True, subplot_titles=[f"{m}-composition" for m in modes],
                        horizontal_spacing=0.04)
    for i, mode in enumerate(modes, start=1):
        rows = composition[composition["mode"] == mode]
        pairs = (rows["sender"] + " → " + rows["receiver"]).tolist()
        for name, value, dash in (("random mean", "baseline_mean", "dot"), ("random 95th percentile", "baseline_q95",
                                                                             "dash")):
            fig.add_trace(go.Scatter(x=pairs, y=rows[value].tolist(), mode="lines", name=name, legendgroup=name,
                                     showlegend=i == 1, line={"color": "#868e96", "dash": dash}), row=1, col=i)
        fig.add_trace(go.Scatter(x=pairs, y=rows["score"].tolist(), mode="markers", name="score", legendgroup="score",
                                 showlegend=i == 1, marker={"size": 10, "color": SERIES[0]},
                                 hovertext=[f"{p}: {num(s)} ({num(r)}× the random mean)" for p, s, r
                                            in zip(pairs, rows["score"], rows["ratio"])], hoverinfo="text"),
                      row=1, col=i)
    fig.update_xaxes(type="category", tickangle=-40)
    fig.update_layout(height=480, legend_title_text="")
    return Figure(label_figure(fig, "Composition scores against random weights of the same shapes",
                               "sender → receiver head", "composition score"))


def edge_heatmap(edges: pd.DataFrame, candidates: list[str]) -> Figure:
    """One panel per input (q, k, v, mlp_in, logits): sender rows (the same in every panel: the embeddings,
    then the candidate nodes in forward order) x receiver columns, colour = effect."""
    rank = {name: i for i, name in enumerate(candidates)}
    first = {name: i for i, name in enumerate(dict.fromkeys(edges["sender"]))}
    senders = sorted(first, key=lambda name: (rank.get(name, -1), first[name]))
    panels = []
    for via in [v for v in VIAS if (edges["via"] == v).any()]:
        rows = edges[edges["via"] == via]
        receivers = list(dict.fromkeys(rows["receiver"]))
        panels.append(Panel(f"via {via}", grid(rows, "sender", "receiver", "effect", senders, receivers), receivers,
                            senders))
    limit = symmetric_limit(pd.concat([pd.Series(p.z.ravel()) for p in panels]).to_numpy())
    fig = heatmap_grid(panels, "Path-patching effect of every edge, by the input it enters", "receiver", "sender",
                       "effect", cols=2, zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING,
                       text_format="%{z:.2f}", panel_height=24 * len(senders))
    return Figure(fig)


def edge_table(edges: pd.DataFrame, graph: set[tuple[str, str, str]]) -> pd.DataFrame:
    """Every edge by |effect|, with its per-pair quartiles and whether the graph draws it; the number of example
    pairs is a column only when it varies (the caption gives it otherwise)."""
    columns = ["sender", "receiver", "via", "effect", "pair_q25", "pair_median", "pair_q75"]
    if edges["n_pairs"].nunique() > 1:
        columns.append("n_pairs")
    frame = edges[columns].copy()
    frame["in graph"] = [(s, r, v) in graph for s, r, v in zip(frame["sender"], frame["receiver"], frame["via"])]
    order = frame["effect"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].rename(columns={"pair_q25": "pair q25", "pair_median": "pair median",
                                            "pair_q75": "pair q75", "n_pairs": "pairs"}).reset_index(drop=True)


def wiring_sections(attribution: Attribution) -> list[Section]:
    composition, edges, circuit = attribution["composition"], attribution["edges"], attribution.circuit
    sections = []
    if composition.empty:
        sections.append(Section("Composition scores", "Composition needs heads in two layers.",
                                Text("The model has one layer of heads, so no head composes with another.")))
    else:
        read = ("Weights only: how strongly each head's output can feed a head of a later layer through its query "
                "(Q), key (K) or value (V), beside the same score of random Gaussian weights of the model's shapes "
                "(mean and 95th percentile), since unrelated matrices do not score 0. A score above the 95th "
                "percentile suggests an edge; path patching says whether it carries anything.")
        sections += [
            Section("Composition scores against random weights", read + " One panel per mode.",
                    composition_figure(composition),
                    data=[Download("composition.csv", composition, "data/attribution/composition.parquet")]),
        ]
    if edges.empty:
        sections.append(Section("Every edge", "Path patching needs clean/corrupted pairs (extract.n_pairs > 0).",
                                Text("No pairs, so no edge was measured.")))
        return sections
    graph = {(e["from"], e["to"], e["via"]) for e in circuit["edges"]}
    floor = circuit["gates"]["edge_floor"]
    table = edge_table(edges, graph)
    weak = table["effect"].abs() < floor
    counts = edges["n_pairs"].astype(int)
    drawn = [(s, r, v) in graph for s, r, v in zip(edges["sender"], edges["receiver"], edges["via"])]
    short = int((counts[drawn] < counts.max()).sum())  # drawn edges on the fewer pairs: the sentence says so if any
    pairs = (f" Every edge is measured over the same {counts.iloc[0]} example pairs." if counts.nunique() == 1 else
             f" {int((counts == counts.max()).sum())} edges are measured over {counts.max()} example pairs and the other "
             f"{int((counts < counts.max()).sum())} over {counts.min()} spread over them (n_pairs in the table): every edge is "
             f"measured on those {counts.min()} first, and one between drawn nodes whose |effect| there reaches half the "
             f"edge floor is measured again on all {counts.max()}, "
             + ("so every edge the graph draws at the floor stands on every pair." if not short else
                f"yet {short} edge{'s' if short > 1 else ''} the graph draws at the floor stand{'' if short > 1 else 's'} "
                f"on the {counts.min()} only."))
    data = [Download("edges.csv", edges, "data/attribution/edges.parquet")]
    sections += [
        Section("Every edge, by input", (
            "Every sender → receiver edge the wiring allows, measured by path patching: one panel per input of the "
            "receiver. Colour and number are the effect: red restores the clean answer, blue pushes the other way, "
            "white does nothing. Blank cells are edges the wiring does not allow." + pairs),
            edge_heatmap(edges, list(circuit["search"]["candidates"])), data=data),
        Section("Every edge (table)", (
            "The edges with |effect| at least the edge floor, sorted by |effect|, with the per-pair quartiles (a large "
            f"effect with a median near 0 comes from a few pairs); 'in graph' marks those drawn above (between drawn "
            f"nodes).{pairs} The {int(weak.sum())} edges below the floor {num(floor)} are behind the toggle under the "
            "table."),
            Table(table[~weak].reset_index(drop=True), digits=3, more=table[weak].reset_index(drop=True),
                  more_label=f"Show the {int(weak.sum())} edges below the floor (|effect| < {num(floor)})"),
            data=data),
    ]
    return sections
