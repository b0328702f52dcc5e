"""The circuit page: the graph of nodes and path-patched edges (circuit.json), its faithfulness,
completeness and minimality beside the gates and baselines, the causal-scrubbing tests, composition
scores against random weights, and every edge measured."""

from __future__ import annotations

from typing import Any

import pandas as pd

from palindrome_lens.attribution.nodes import NODE_POSITIONS, readout_group
from palindrome_lens.report.content import Figure, Table
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.graph import LOGITS, GraphEdge, GraphNode, circuit_graph
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution, finite
from palindrome_lens.report.pages.scrubbing import scrubbing_sections
from palindrome_lens.report.pages.wiring import wiring_sections
from palindrome_lens.report.roles import node_roles

FILENAME = "circuit.html"
TITLE = "The circuit as a mechanism"
NAV = "Circuit"
SUMMARY = ("the circuit's nodes and edges, how faithful, complete and minimal it is, and the causal-scrubbing tests "
           "of the algorithm, each beside its baseline")
CONSTANT = "constant predictor"
EDGES_SOURCE = "data/attribution/edges.parquet"


def graph_groups(circuit: dict[str, Any]) -> list[str]:
    """The position groups top to bottom: the stage's split, then any other group the nodes name."""
    groups = list(NODE_POSITIONS.get(circuit["search"]["node_positions"], ()))
    return groups + [g for g in dict.fromkeys(n["positions"] for n in circuit["nodes"]) if g not in groups]


def graph_parts(attribution: Attribution) -> tuple[list[GraphNode], list[GraphEdge], list[GraphEdge]]:
    """The drawn nodes (the circuit's, the inputs that feed it, the logits) with their roles; circuit.json's edges
    (at or above the floor) with their per-pair quartiles; and the edges below the floor between drawn nodes."""
    circuit, summary = attribution.circuit, attribution.summary
    spread = attribution["edges"].set_index(["sender", "receiver", "via"])[["pair_q25", "pair_median", "pair_q75"]]
    edges = []
    for e in circuit["edges"]:
        key = (e["from"], e["to"], e["via"])
        q25, median, q75 = spread.loc[key].tolist() if key in spread.index else (None, e["pair_median"], None)
        edges.append(edge_of(*key, e["effect"], e["n_pairs"], q25, median, q75))
    senders = {e.sender for e in edges}
    roles = node_roles(attribution)
    nodes = [GraphNode(n["name"], n["component"], int(n["layer"]), n["positions"], roles.get(n["name"], ""))
             for n in circuit["nodes"] if n["role"] != "input" or n["name"] in senders]
    nodes.append(GraphNode(LOGITS, LOGITS, int(summary["model"]["n_layers"]),
                           readout_group(summary["model"]["readout"]), roles.get(LOGITS, "")))
    drawn = {nd.name for nd in nodes}
    table = attribution["edges"]
    below = table[table["sender"].isin(drawn) & table["receiver"].isin(drawn)
                  & (table["effect"].abs() < circuit["gates"]["edge_floor"])]
    hidden = [edge_of(r.sender, r.receiver, r.via, r.effect, r.n_pairs, r.pair_q25, r.pair_median, r.pair_q75)
              for r in below.itertuples(index=False)]
    return nodes, edges, hidden


def edge_of(sender: str, receiver: str, via: str, effect: float, n_pairs: int, q25: Any, median: Any,
            q75: Any) -> GraphEdge:
    return GraphEdge(sender, receiver, via, float(effect), int(n_pairs), finite(q25), finite(median), finite(q75))


def graph_section(attribution: Attribution, anchor: str = "graph") -> Section:
    circuit, summary = attribution.circuit, attribution.summary
    nodes, edges, hidden = graph_parts(attribution)
    n_circuit = sum(1 for n in circuit["nodes"] if n["role"] == "circuit")
    floor = num(circuit["gates"]["edge_floor"])
    fig = circuit_graph(nodes, edges, graph_groups(circuit), int(summary["model"]["n_layers"]),
                        not summary["model"].get("attn_only", False),
                        f"The circuit: {n_circuit} nodes and {len(edges)} edges with |effect| ≥ {floor}", hidden)
    return Section("Circuit graph", (
        "Each node is a component at a group of token positions (L0H0@chars: head 0 of layer 0 at every character), "
        "with its role under its name when a number backs one (the glossary says which). Columns follow the "
        "residual stream from the inputs on the left to the logits on the right; rows are position groups. An "
        "arrow is an edge measured by path patching, labelled with the input it enters (q, k, v of a head, mlp_in "
        "of an MLP, or the logits) and its effect: the share of the clean logit difference it restores alone. "
        "Wider and darker arrows restore more (see the width entries in the legend); blue arrows push the other "
        f"way. Only edges with |effect| ≥ the edge floor {floor} are drawn; the {len(hidden)} weaker edges between "
        "these nodes appear when you click their legend entry. Hover a label for the per-pair quartiles."),
        Figure(fig), anchor=anchor, data=[Download("edges.csv", attribution["edges"], EDGES_SOURCE)])


def gate_rows(circuit: dict[str, Any]) -> pd.DataFrame:
    gates, search = circuit["gates"], circuit["search"]
    target, floor = gates["faithfulness_target"], gates["minimality_floor"]
    f = finite(circuit["faithfulness"])
    comp = circuit["completeness"]
    minimal = {name: m["value"] for name, m in circuit["minimality"].items()}
    smallest = min(minimal, key=minimal.__getitem__) if minimal else None
    weak = [n for n, v in minimal.items() if v < floor]
    rows = [
        ("faithfulness F(C) / F(M)", num(f), f"target ≥ {num(target)}",
         "n/a" if f is None else ("meets the target" if f >= target else "below the target")),
        (f"completeness gap (worst K: {comp['worst_k'] or 'n/a'})", num(comp["value"]),
         f"0 = complete; the sentences call it complete below 1 − target = {num(1 - target)}",
         "n/a" if comp["value"] is None else ("complete" if comp["value"] < 1 - target else "not complete")),
        (f"minimality, smallest ({smallest or 'n/a'})", num(minimal.get(smallest)) if smallest else "n/a",
         f"floor ≥ {num(floor)}",
         "n/a" if smallest is None else (f"below the floor: {names(weak)}" if weak else "every node above the floor")),
        ("search", f"{search['method']} over {search['n_candidates']} candidate nodes",
         f"every set of at most {search['exhaustive_up_to']} nodes (budget {search['budget']} sets)",
         f"{search['screened']} sets screened on {search['screening_rows']} strings, {search['rescored']} rescored "
         f"on every string; target {'reached' if search['reached'] else 'not reached'}"),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value", "gate or baseline", "reading"])


def runs_table(attribution: Attribution) -> pd.DataFrame:
    """F on the class-balanced margin for the model, the circuit alone, nothing, the circuit ablated and a
    constant predictor; lean where the summary has it."""
    ablation, accuracy = attribution.circuit["ablation"], attribution.summary["circuit_accuracy"]
    mode = ablation["mode"]
    full = finite(ablation["model"]["balanced_margin"])
    runs = [
        ("whole model, F(M)", ablation["model"], accuracy["unablated"].get("lean")),
        (f"circuit only, F(C): every other node {mode}-ablated", ablation["circuit_only"],
         accuracy["others_ablated"].get("lean")),
        (f"circuit ablated: its nodes {mode}-ablated, the rest kept", accuracy["circuit_ablated"],
         accuracy["circuit_ablated"].get("lean")),
        (f"nothing, F(∅): every candidate node {mode}-ablated", ablation["nothing"], None),
        (f"{CONSTANT} (always the same answer)", ablation["constant_predictor"], 0.0),
    ]
    rows = []
    for label, run, lean in runs:
        margin = finite(run["balanced_margin"])
        rows.append({"run": label, "balanced margin": margin,
                     "share of F(M)": margin / full if margin is not None and full else None,
                     "balanced accuracy": finite(run["balanced_accuracy"]), "lean": finite(lean)})
    return pd.DataFrame(rows)


def node_table(attribution: Attribution) -> pd.DataFrame:
    circuit, nodes = attribution.circuit, attribution["nodes"]
    floor = circuit["gates"]["minimality_floor"]
    minimal = circuit["minimality"]
    rows = []
    for r in nodes.itertuples(index=False):
        m = minimal.get(r.node)
        rows.append({"node": r.node, "layer": r.layer, "positions": r.group, "in circuit": bool(r.in_circuit),
                     "minimality": finite(m["value"]) if m else None,
                     "above floor": (m["value"] >= floor) if m else None,
                     "K giving it": node_set(m["k"]) if m else "",
                     "margin lost, ablated alone": finite(r.ablated_alone_margin_loss),
                     "faithfulness, kept alone": finite(r.kept_alone_faithfulness)})
    return pd.DataFrame(rows)


def node_set(names_: list[str]) -> str:
    return "{" + ", ".join(names_) + "}" if names_ else "∅ (nothing else ablated)"


def completeness_table(circuit: dict[str, Any]) -> pd.DataFrame:
    tried = circuit["completeness"]["tried"]
    frame = pd.DataFrame({"K (ablated from both)": list(tried), "gap |F(C∖K) − F(M∖K)| / F(M)": list(tried.values())})
    return frame.sort_values(frame.columns[1], ascending=False, kind="stable").reset_index(drop=True)


def evaluation_sections(attribution: Attribution) -> list[Section]:
    circuit = attribution.circuit
    mode = circuit["ablation"]["mode"]
    target, floor = circuit["gates"]["faithfulness_target"], circuit["gates"]["minimality_floor"]
    return [
        Section("Faithfulness, completeness and minimality", (
            f"Faithfulness, the completeness gap and minimality of the circuit C against all candidate nodes M, beside "
            f"the gates the attribute stage applies: the circuit is claimed only when faithfulness ≥ {num(target)} "
            f"and every node's minimality ≥ {num(floor)}. F is the class-balanced margin with every node outside the "
            f"set {mode}-ablated."), Table(gate_rows(circuit)), anchor="faithfulness"),
        Section("The circuit against the model, nothing and a constant", (
            "Balanced margin, its share of F(M), balanced accuracy and lean of each run. A constant predictor scores "
            "a balanced margin of exactly 0 and a balanced accuracy of 50%: a run near it has lost the decision."),
            Table(runs_table(attribution), digits=3)),
        Section("Minimality and single-node ablation per node", (
            "Every candidate node. Minimality and the K that gives it are defined for circuit nodes; "
            f"'above floor' compares it with {num(floor)}. 'Margin lost, ablated alone' is the share of F(M) lost "
            "when only that node is ablated; 'faithfulness, kept alone' is F of that node alone over F(M)."),
            Table(node_table(attribution), digits=3),
            data=[Download("nodes.csv", attribution["nodes"], "data/attribution/nodes.parquet")]),
        Section("Completeness: every K tried", (
            "Each set K ablated from both the circuit and the model, and the gap between what the two lose (share of "
            "F(M)): each single node, each layer's nodes, and the sets of a greedy search that grows K by the node "
            "that widens the gap most. The largest gap is the completeness gap above."),
            Table(completeness_table(circuit), digits=3)),
    ]


def circuit_page(attribution: Attribution) -> Page:
    circuit = attribution.circuit
    circuit_nodes = [n["name"] for n in circuit["nodes"] if n["role"] == "circuit"]
    intro = (f"The attribute stage searched {circuit['search']['n_candidates']} candidate nodes for the smallest set "
             f"that keeps at least {pct(circuit['gates']['faithfulness_target'], 0)} of the class-balanced margin under "
             f"{circuit['ablation']['mode']} ablation and found {names(circuit_nodes) or 'no node'}, which keeps "
             f"{pct(circuit['faithfulness'])} (a constant predictor keeps 0%)"
             + ("." if circuit["search"]["reached"] else "; the target was not reached, so no circuit is claimed.")
             + " Every claim below sits beside the causal number behind it and a baseline.")
    sections = [graph_section(attribution), *evaluation_sections(attribution), *scrubbing_sections(circuit),
                *wiring_sections(attribution)]
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
