"""The circuit page on synthetic attribute outputs (tests/report_outputs.py): the graph draws exactly the
circuit's nodes and the edges above the floor, every table carries circuit.json's and the tables' numbers
beside their baselines, and the page opens offline in headless Chromium with every figure drawn."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.colors import hex_to_rgb

from palindrome_lens.report import render_page
from palindrome_lens.report.graph import BAND_PX, COLUMN_PX, EDGE_SCALE
from palindrome_lens.report.inputs import Attribution, ReportInputs, load_inputs
from palindrome_lens.report.pages import PAGE_FILES, write_report
from palindrome_lens.report.pages.wiring import wiring_sections
from tests.browser import Browser
from tests.report_outputs import (
    ACCURACY_RECOVERED,
    BASE_MARGIN,
    CIRCUIT,
    COMPLETENESS,
    EDGE_FLOOR,
    LOCAL_RECOVERED,
    MINIMALITY,
    RECOVERED_CONSTANT,
    SCRUBS,
    SELF_DRAWS,
    built_page,
    candidates,
    figure,
    page,
    section,
    write_all,
    z_of,
)

INPUTS = ["embed@bos", "embed@chars", "embed@eos"]
DRAWN_INPUTS = ["embed@chars"]  # the only input with an edge above the floor into the circuit
# The edges the graph must draw (tests/report_outputs.STRONG_EDGES between drawn nodes, |effect| >= the floor).
DRAWN = {"embed@chars->L0H0@chars:v", "L0H0@chars->0_mlp_out@chars:mlp_in", "0_mlp_out@chars->L1H0@bos:k",
         "0_mlp_out@chars->L1H0@bos:v", "L0H0@chars->L1H0@bos:v", "L1H0@bos->1_mlp_out@bos:mlp_in",
         "1_mlp_out@bos->logits:logits", "L1H0@bos->logits:logits"}


@pytest.fixture
def synthetic_circuit(synthetic_pages):  # noqa: ANN001, ANN201
    """circuit.html of the shared synthetic pages (conftest.py): report_pages(synthetic, 3, 7)'s circuit page."""
    return page(synthetic_pages(3, 7), "circuit.html")


def circuit_page(inputs: ReportInputs):  # noqa: ANN201
    return built_page(inputs, "circuit.html")  # as report_pages(inputs, 3, 7) builds it


def drawn_nodes(fig: go.Figure) -> list[str]:
    return [name for t in fig.data if t.meta and "node" in t.meta for name in t.meta["node"]]


def edge_traces(fig: go.Figure) -> dict[str, go.Scatter]:
    return {t.meta["edge"]: t for t in fig.data if t.meta and "edge" in t.meta}


def labels(fig: go.Figure, kind: str) -> dict[str, str]:
    """{node or edge: its label's text} from the annotations named 'node:...' or 'edge:...'."""
    return {a.name.split(":", 1)[1]: a.text for a in fig.layout.annotations if (a.name or "").startswith(f"{kind}:")}


def expected_edges(inputs: ReportInputs) -> set[str]:
    """From edges.parquet by the rule: both ends drawn (the logits count as drawn), |effect| >= the floor."""
    edges = inputs.attribution["edges"]
    shown = set(INPUTS) | set(CIRCUIT) | {"logits"}
    keep = edges["sender"].isin(shown) & edges["receiver"].isin(shown) & (edges["effect"].abs() >= EDGE_FLOOR)
    return {f"{r.sender}->{r.receiver}:{r.via}" for r in edges[keep].itertuples()}


def test_graph_draws_exactly_the_circuit_nodes_and_the_edges_above_the_floor(synthetic: ReportInputs, synthetic_circuit) -> None:
    fig = figure(synthetic_circuit, "Circuit graph")
    assert sorted(drawn_nodes(fig)) == sorted([*DRAWN_INPUTS, *CIRCUIT, "logits"])  # no input without an edge
    edges = synthetic.attribution["edges"]
    assert ((edges["effect"].abs() >= EDGE_FLOOR) & ~edges["sender"].isin([*INPUTS, *CIRCUIT])).any()  # left out
    assert set(edge_traces(fig)) == expected_edges(synthetic) == DRAWN
    edge_labels = labels(fig, "edge")  # one label per edge, next to it: via and effect
    assert edge_labels == {"embed@chars->L0H0@chars:v": "v 0.30", "L0H0@chars->0_mlp_out@chars:mlp_in": "mlp_in 0.45",
                           "0_mlp_out@chars->L1H0@bos:k": "k 0.20", "0_mlp_out@chars->L1H0@bos:v": "v 0.35",
                           "L0H0@chars->L1H0@bos:v": "v -0.12", "L1H0@bos->1_mlp_out@bos:mlp_in": "mlp_in 0.25",
                           "1_mlp_out@bos->logits:logits": "logits 0.50", "L1H0@bos->logits:logits": "logits 0.15"}
    assert set(labels(fig, "node")) == {*DRAWN_INPUTS, *CIRCUIT, "logits"}
    # The weaker edges between drawn nodes are there, hidden until the legend turns them on; none is labelled.
    below = {t.meta["below"]: t for t in fig.data if t.meta and "below" in t.meta}
    drawn = {*DRAWN_INPUTS, *CIRCUIT, "logits"}
    weak = edges[edges["sender"].isin(drawn) & edges["receiver"].isin(drawn) & (edges["effect"].abs() < EDGE_FLOOR)]
    assert set(below) == {f"{r.sender}->{r.receiver}:{r.via}" for r in weak.itertuples()} and len(below) > 0
    assert {t.visible for t in below.values()} == {"legendonly"} and not set(below) & set(edge_labels)
    assert "embed@chars->L0H0@chars:q" in below  # 0.04: between circuit nodes, under the floor


def test_each_node_says_what_it_does_when_a_gate_backs_it(synthetic_circuit) -> None:
    roles = {name: [re.sub(r"<[^>]+>", "", line) for line in text.split("<br>")] for name, text in
             labels(figure(synthetic_circuit, "Circuit graph"), "node").items()}
    assert roles == {
        "embed@chars": ["embed@chars", "the characters"],
        "L0H0@chars": ["L0H0@chars", "mirror head (0.90)"],  # mirror score 0.9 >= 0.5
        "0_mlp_out@chars": ["0_mlp_out@chars", "mismatch flag"],  # fed by the mirror head; pair_flags supported
        "L1H0@bos": ["L1H0@bos", "reader at BOS (30×)", "writes the answer (0.15)"],  # 0.3 vs 0.01 from BOS
        "1_mlp_out@bos": ["1_mlp_out@bos", "writes the answer (0.50)"],
        "logits": ["logits", "the answer"],
    }


def test_a_role_goes_when_its_gate_fails(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    circuit = json.loads((src.attribution / "circuit.json").read_text())
    circuit["scrubbing"][0]["verdict"] = "fails"  # pair_flags no longer supported: no mismatch flag
    (src.attribution / "circuit.json").write_text(json.dumps(circuit))
    summary = json.loads((src.attribution / "summary.json").read_text())
    summary["mirror_scores"]["L0H0"] = 0.45  # below the mirror gate
    (src.attribution / "summary.json").write_text(json.dumps(summary))
    texts = labels(figure(circuit_page(load_inputs(src)), "Circuit graph"), "node")
    assert texts["L0H0@chars"] == "<b>L0H0@chars</b>" and texts["0_mlp_out@chars"] == "<b>0_mlp_out@chars</b>"
    assert "reader at BOS" in texts["L1H0@bos"]


def test_graph_places_nodes_by_layer_and_position_group(synthetic_circuit) -> None:
    fig = figure(synthetic_circuit, "Circuit graph")
    where = {name: (x, y) for t in fig.data if t.meta and "node" in t.meta
             for name, x, y in zip(t.meta["node"], t.x, t.y)}
    assert list(fig.layout.xaxis.ticktext) == ["inputs (embeddings)", "layer 0 heads", "layer 0 MLP",
                                               "layer 1 heads", "layer 1 MLP", "logits"]
    assert list(fig.layout.yaxis.ticktext) == ["bos", "chars"]  # y = -0, -1; no node at eos: no row
    assert where == {"embed@chars": (0, -1), "L0H0@chars": (1, -1), "0_mlp_out@chars": (2, -1), "L1H0@bos": (3, 0),
                     "1_mlp_out@bos": (4, 0), "logits": (5, 0)}
    # one unit is COLUMN_PX wide and BAND_PX high, as the label placement assumes
    plot_w = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r
    plot_h = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    x0, x1 = fig.layout.xaxis.range
    y0, y1 = fig.layout.yaxis.range
    assert plot_w / (x1 - x0) == pytest.approx(COLUMN_PX, rel=0.01) and plot_h / (y1 - y0) == pytest.approx(BAND_PX)
    for key, trace in edge_traces(fig).items():  # every edge runs from its sender to (the rim of) its receiver
        sender, receiver = key.split(":")[0].split("->")
        assert (trace.x[0], trace.y[0]) == pytest.approx(where[sender])
        assert math.dist((trace.x[-1], trace.y[-1]), where[receiver]) < 0.2


def test_edge_width_and_colour_follow_the_effect(synthetic: ReportInputs, synthetic_circuit) -> None:
    fig = figure(synthetic_circuit, "Circuit graph")
    traces = edge_traces(fig)
    effect = {f"{e['from']}->{e['to']}:{e['via']}": e["effect"] for e in synthetic.attribution.circuit["edges"]}
    by_width = sorted(traces, key=lambda k: traces[k].line.width)
    assert by_width == sorted(traces, key=lambda k: abs(effect[k]))
    darkest = "rgb({}, {}, {})".format(*hex_to_rgb(EDGE_SCALE[-1][1]))
    assert traces["1_mlp_out@bos->logits:logits"].line.color == darkest  # the strongest edge: the darkest red
    red, blue = traces["L1H0@bos->logits:logits"].line.color, traces["L0H0@chars->L1H0@bos:v"].line.color
    rgb = [tuple(int(v) for v in c[c.index("(") + 1:-1].split(",")) for c in (red, blue)]
    assert rgb[0][0] > rgb[0][2] and rgb[1][2] > rgb[1][0]  # positive edges red, the negative one blue
    hover = next(a.hovertext for a in fig.layout.annotations if a.text == "v 0.35")
    widths = [t.line.width for t in fig.data if t.legendgroup == "width"]  # the legend says what a width means
    assert widths == sorted(widths) and len(widths) == 3 and widths[-1] == max(t.line.width for t in traces.values())
    edges = synthetic.attribution["edges"].set_index(["sender", "receiver", "via"])
    row = edges.loc[("0_mlp_out@chars", "L1H0@bos", "v")]
    assert f"q25 {row['pair_q25']:.3g}, median {row['pair_median']:.3g}, q75 {row['pair_q75']:.3g}" in hover


def test_gates_and_baselines_carry_circuit_json(synthetic_circuit) -> None:
    p = synthetic_circuit
    gates = section(p, "Faithfulness, completeness and minimality").content.df.set_index("quantity")
    assert gates.loc["faithfulness F(C) / F(M)"].tolist() == ["0.93", "target ≥ 0.9", "meets the target"]
    completeness = gates.loc["completeness gap (worst K: {L1H0@bos})"]
    assert completeness["value"] == "0.06" and completeness["reading"] == "complete"
    smallest = gates.loc["minimality, smallest (1_mlp_out@bos)"]
    assert smallest.tolist() == ["0.04", "floor ≥ 0.05", "below the floor: 1_mlp_out@bos"]
    assert gates.loc["search", "value"] == f"exhaustive over {len(candidates(False))} candidate nodes"
    assert gates.loc["search", "reading"] == ("123 sets screened on 256 strings, 3 rescored on every string; "
                                              "target reached")
    runs = section(p, "The circuit against the model").content.df
    assert runs["balanced margin"].tolist() == pytest.approx([BASE_MARGIN, 0.93 * BASE_MARGIN, 0.51 * BASE_MARGIN,
                                                              0.1, 0.0])
    assert runs["share of F(M)"].tolist() == pytest.approx([1.0, 0.93, 0.51, 0.025, 0.0])
    assert runs["balanced accuracy"].tolist() == pytest.approx([0.98, 0.95, 0.51, 0.52, 0.5])
    assert runs["run"].iloc[-1].startswith("constant predictor")


def test_node_and_completeness_tables_carry_every_node_and_every_k(synthetic: ReportInputs, synthetic_circuit) -> None:
    p = synthetic_circuit
    nodes = section(p, "Minimality and single-node ablation").content.df.set_index("node")
    stored = synthetic.attribution["nodes"].set_index("node")
    assert list(nodes.index) == [nd.name for nd in candidates(False)]
    assert nodes["margin lost, ablated alone"].tolist() == stored["ablated_alone_margin_loss"].tolist()
    for name, (value, k) in MINIMALITY.items():
        assert nodes.loc[name, "minimality"] == value and nodes.loc[name, "above floor"] == (value >= 0.05)
        assert nodes.loc[name, "K giving it"] == ("{" + ", ".join(k) + "}" if k else "∅ (nothing else ablated)")
    assert nodes["in circuit"].sum() == len(CIRCUIT) and np.isnan(nodes.loc["L0H1@chars", "minimality"])
    tried = section(p, "Completeness: every K tried").content.df
    assert dict(zip(tried.iloc[:, 0], tried.iloc[:, 1])) == COMPLETENESS
    assert tried.iloc[:, 1].is_monotonic_decreasing


def test_scrubbing_shows_recovered_control_constant_and_per_class_losses(synthetic: ReportInputs, synthetic_circuit) -> None:
    p = synthetic_circuit
    verdicts = section(p, "Causal scrubbing: verdicts").content.df.set_index("hypothesis")
    assert list(verdicts.columns[:2]) == ["verdict", "loss recovered, from a constant predictor"]  # verdict first
    assert verdicts.columns[-1] == "claim"  # the long text last
    for name, (recovered, control, _, verdict) in SCRUBS.items():
        assert verdicts.loc[name, ["verdict", "loss recovered, from a constant predictor", "from a random scrub",
                                   "accuracy recovered", "each pair alone", "control, from a constant",
                                   "self draws"]].tolist() == [
            verdict, f"{100 * RECOVERED_CONSTANT[name]:.1f}%", f"{100 * recovered:.1f}%",
            f"{100 * ACCURACY_RECOVERED[name]:.1f}%", f"{100 * LOCAL_RECOVERED[name]:.1f}%",
            "below −100% (worse than a constant)" if control - 1.5 < -1 else f"{100 * (control - 1.5):.1f}%",
            f"{100 * SELF_DRAWS[name]:.1f}%"]
    circuit = synthetic.attribution.circuit
    points = figure(p, "Causal scrubbing: each run's loss")  # every run's loss as a point on a log axis, per hypothesis
    assert points.layout.xaxis.type == "log"
    by_name = {t.name: t for t in points.data}
    assert list(by_name) == ["hypothesis scrub", "model (nothing scrubbed)", "control scrub", "random scrub",
                             "constant predictor (ln 2)"]
    for trace, run in zip(points.data[:4], ("hypothesis", "model", "control", "random")):
        assert list(trace.y) == list(SCRUBS) and list(trace.x) == pytest.approx(
            [r["runs"][run]["loss"] for r in circuit["scrubbing"]])
    assert list(by_name["constant predictor (ln 2)"].x) == pytest.approx([math.log(2)] * len(SCRUBS))
    losses = section(p, "Causal scrubbing: losses per class").content.df
    for result in circuit["scrubbing"]:
        mine = losses[losses["hypothesis"] == result["name"]]
        assert len(mine) == 5  # model, hypothesis, control, random, and the constant predictor
        for run, row in zip(("model", "hypothesis", "control", "random"), mine.itertuples()):
            assert run in row.run
            stored = result["runs"][run]
            assert [row[3], row[4], row[5]] == pytest.approx(
                [stored["loss"], stored["loss_palindrome"], stored["loss_not_palindrome"]])
        assert mine.iloc[-1, 2:5].tolist() == pytest.approx([math.log(2)] * 3)


def test_claims_are_escaped(synthetic_pages) -> None:
    pages = synthetic_pages(3, 7)
    text = render_page(page(pages, "circuit.html"), pages)
    assert "carries only &lt;pair_flags&gt; &amp; nothing else" in text and "<pair_flags>" not in text


def test_composition_sits_beside_its_random_baseline(synthetic: ReportInputs, synthetic_circuit) -> None:
    p = synthetic_circuit
    fig = figure(p, "Composition scores against random weights")
    stored = synthetic.attribution["composition"]
    assert [a.text for a in fig.layout.annotations] == ["Q-composition", "K-composition", "V-composition"]
    for i, mode in enumerate("QKV"):
        mine = stored[stored["mode"] == mode]
        mean, q95, score = fig.data[3 * i: 3 * i + 3]
        assert (mean.name, q95.name, score.name) == ("random mean", "random 95th percentile", "score")
        assert list(score.y) == mine["score"].tolist() and list(score.x) == [
            f"{s} → {r}" for s, r in zip(mine["sender"], mine["receiver"])]
        assert set(mean.y) == {0.17} and set(q95.y) == {0.19}


def test_every_edge_is_listed_with_its_quartiles(synthetic: ReportInputs, synthetic_circuit) -> None:
    p = synthetic_circuit
    edges = synthetic.attribution["edges"]
    heatmap = figure(p, "Every edge, by input")
    assert [a.text for a in heatmap.layout.annotations] == ["via q", "via k", "via v", "via mlp_in", "via logits"]
    senders = list(heatmap.data[0].y)
    assert senders[:3] == INPUTS and all(list(t.y) == senders for t in heatmap.data)
    assert senders[3:] == [nd.name for nd in candidates(False)]  # forward order
    v = heatmap.data[2]
    z = z_of(v)
    assert z[senders.index("0_mlp_out@chars"), list(v.x).index("L1H0@bos")] == 0.35
    assert np.isnan(z[senders.index("1_mlp_out@bos"), list(v.x).index("L1H0@bos")])  # not a possible edge
    assert np.nansum([np.isfinite(z_of(t)).sum() for t in heatmap.data]) == len(edges)  # every edge, once
    content = section(p, "Every edge (table)").content
    table, hidden = content.df, content.more  # the edges below the floor wait behind a toggle
    assert len(table) + len(hidden) == len(edges) and table["effect"].abs().is_monotonic_decreasing
    assert (table["effect"].abs() >= EDGE_FLOOR).all() and (hidden["effect"].abs() < EDGE_FLOOR).all()
    assert "pairs" not in table.columns  # every edge has the same 6 pairs: said once, in the caption
    assert "same 6 example pairs" in section(p, "Every edge (table)").caption
    assert table.iloc[0][["sender", "receiver", "via", "effect"]].tolist() == ["1_mlp_out@bos", "logits", "logits", 0.5]
    merged = table.merge(edges, on=["sender", "receiver", "via"])
    assert (merged["pair q25"] == merged["pair_q25"]).all() and (merged["pair q75"] == merged["pair_q75"]).all()
    assert set(table[table["in graph"]].apply(lambda r: f"{r.sender}->{r.receiver}:{r.via}", axis=1)) == DRAWN


def test_an_attention_only_model_has_no_mlp_column(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, attn_only=True))
    fig = figure(circuit_page(inputs), "Circuit graph")
    assert list(fig.layout.xaxis.ticktext) == ["inputs (embeddings)", "layer 0 heads", "layer 1 heads", "logits"]
    assert sorted(drawn_nodes(fig)) == sorted([*DRAWN_INPUTS, "L0H0@chars", "L1H0@bos", "logits"])
    assert set(edge_traces(fig)) == {"embed@chars->L0H0@chars:v", "L0H0@chars->L1H0@bos:v",
                                     "L1H0@bos->logits:logits"}


def test_a_model_without_margin_or_hypotheses_gets_notes_not_a_crash(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    circuit = json.loads((src.attribution / "circuit.json").read_text())
    circuit.update(faithfulness=None, completeness={"value": None, "worst_k": None, "tried": {}}, minimality={},
                   scrubbing=[], edges=[])
    circuit["search"].update(method="none (the model has no positive margin)", reached=False)
    (src.attribution / "circuit.json").write_text(json.dumps(circuit))
    p = circuit_page(load_inputs(src))
    gates = section(p, "Faithfulness, completeness and minimality").content.df
    assert gates["value"].tolist()[:3] == ["n/a", "n/a", "n/a"]
    assert "No hypothesis" in section(p, "Causal scrubbing").content.text
    assert edge_traces(figure(p, "Circuit graph")) == {}


# --- in a real browser ----------------------------------------------------------------------------------

_GRAPH_JS = """
const div = document.querySelectorAll('.plotly-graph-div')[0];
return {edges: div.data.filter(t => t.meta && t.meta.edge).map(t => t.meta.edge),
        nodes: div.data.filter(t => t.meta && t.meta.node).flatMap(t => t.meta.node),
        lines: div.querySelectorAll('.scatterlayer .trace .js-line').length};
"""


@pytest.mark.slow
def test_every_page_opens_offline_and_the_graph_is_drawn(browser: Browser, synthetic: ReportInputs,
                                                         tmp_path: Path) -> None:
    """Labels and their overlaps in the browser: tests/test_report_browser.py."""
    write_report(tmp_path, synthetic, n_examples=3, hist_bins=7)
    for name in PAGE_FILES:
        result = browser.open_page(tmp_path / name)
        assert result.problems() == [], name
        assert all(result.plots.values()) and all(src.startswith(("assets/", "data/")) for src in result.script_srcs), name
    result = browser.open_page(tmp_path / "circuit.html")
    assert len(result.plots) == 4  # the graph, the scrubbing losses, composition and the edge heatmap
    drawn = browser.driver.execute_script(_GRAPH_JS)
    assert set(drawn["edges"]) == DRAWN and sorted(drawn["nodes"]) == sorted([*DRAWN_INPUTS, *CIRCUIT, "logits"])
    assert drawn["lines"] >= len(DRAWN)  # an SVG path per edge


def test_edges_measured_on_fewer_pairs_are_counted_and_said(synthetic: ReportInputs) -> None:
    """The stage measures most edges on fewer pairs: the page says how many edges, on how many."""
    edges = synthetic.attribution["edges"].copy()
    undrawn = ~edges.apply(lambda r: f"{r.sender}->{r.receiver}:{r.via}", axis=1).isin(DRAWN)
    edges.loc[undrawn, "n_pairs"] = 3
    attribution = Attribution(synthetic.attribution.summary, {**synthetic.attribution.tables, "edges": edges},
                              synthetic.attribution.circuit)
    sections = {s.heading: s for s in wiring_sections(attribution)}
    said = (f"{int((~undrawn).sum())} edges are measured over 6 example pairs and the other {int(undrawn.sum())} over 3 "
            "spread over them")
    assert 0 < undrawn.sum() < len(edges)
    assert said in sections["Every edge, by input"].caption and said in sections["Every edge (table)"].caption
    assert "same 6 example pairs" not in sections["Every edge (table)"].caption
    assert "so every edge the graph draws at the floor stands on every pair" in sections["Every edge (table)"].caption
    # one drawn edge measured on the fewer pairs only: the caption no longer says every drawn edge stands on all
    edges.loc[(~undrawn).to_numpy().nonzero()[0][0], "n_pairs"] = 3
    attribution = Attribution(synthetic.attribution.summary, {**synthetic.attribution.tables, "edges": edges},
                              synthetic.attribution.circuit)
    caption = {s.heading: s for s in wiring_sections(attribution)}["Every edge (table)"].caption
    assert "yet 1 edge the graph draws at the floor stands on the 3 only" in caption
    assert "so every edge the graph draws" not in caption
