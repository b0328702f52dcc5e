"""The circuit graph as a plotly figure: nodes placed by layer (x) and position group (y), the embeddings
as inputs on the left and the logits on the right, edges as curved arrows whose width and colour follow
their path-patching effect, each labelled with the input it enters (q, k, v, mlp_in, logits).

Node names are circuit.json's (`L0H0@chars`). Each trace carries `meta` ({"node": names} or
{"edge": "from->to:via"}), so the drawn graph can be read back from the figure or from the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from palindrome_lens.attribution.edges import LOGITS
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import num

NODE_SIZE = 20
BAND_PX = 190  # height of one position group
COLUMN_PX = 150  # about the width of one column on a report page
CHAR_PX, LINE_PX = 6.5, 18  # the size of a label's characters and lines, to keep labels apart
LABEL_OFFSET_PX = NODE_SIZE / 2 + 10  # a node's label sits this far above or below it
CURVE_POINTS = 60
# light at 0, dark at the strongest edge; blue for edges that push the other way
EDGE_SCALE = [[0.0, "#08306b"], [0.45, "#9ecae1"], [0.5, "#d9d9d9"], [0.55, "#fcae91"], [1.0, "#67000d"]]
ROLE_COLORS = {"input": "#868e96", "head": "#1c7ed6", "mlp": "#e8590c", LOGITS: "#2b8a3e"}
ROLE_NAMES = {"input": "input (embedding)", "head": "attention head", "mlp": "MLP", LOGITS: "logits"}


@dataclass(frozen=True)
class GraphNode:
    name: str
    component: str
    layer: int  # -1 for the embeddings
    group: str

    @property
    def role(self) -> str:
        if self.name == LOGITS:
            return LOGITS
        if self.layer < 0:
            return "input"
        return "head" if self.component.startswith("L") else "mlp"


@dataclass(frozen=True)
class GraphEdge:
    sender: str
    receiver: str
    via: str
    effect: float
    n_pairs: int
    q25: float | None
    median: float | None
    q75: float | None

    @property
    def key(self) -> str:
        return f"{self.sender}->{self.receiver}:{self.via}"


def columns(n_layers: int, has_mlp: bool) -> list[tuple[str, str]]:
    """(column key, tick label) left to right: inputs, per layer its heads then its MLP, the logits."""
    out = [("input", "inputs (embeddings)")]
    for layer in range(n_layers):
        out.append((f"head{layer}", f"layer {layer} heads"))
        if has_mlp:
            out.append((f"mlp{layer}", f"layer {layer} MLP"))
    return [*out, (LOGITS, "logits")]


def column_key(node: GraphNode) -> str:
    return {"input": "input", LOGITS: LOGITS, "head": f"head{node.layer}", "mlp": f"mlp{node.layer}"}[node.role]


def positions(nodes: Sequence[GraphNode], column_x: dict[str, int],
              groups: Sequence[str]) -> dict[str, tuple[float, float]]:
    """(x, y) per node: y = -(group index), nodes sharing a column and group spread around it."""
    cells: dict[tuple[str, str], list[GraphNode]] = {}
    for nd in nodes:
        cells.setdefault((column_key(nd), nd.group), []).append(nd)
    out = {}
    for (column, group), members in cells.items():
        step = min(0.36, 0.8 / len(members))
        for j, nd in enumerate(members):
            out[nd.name] = (float(column_x[column]), -groups.index(group) + ((len(members) - 1) / 2 - j) * step)
    return out


def to_px(points: np.ndarray) -> np.ndarray:
    """Data units to (roughly) pixels, so that curves bend and labels separate as they are seen."""
    return points * np.array([COLUMN_PX, BAND_PX])


def curve(p0: tuple[float, float], p2: tuple[float, float], bend_px: float, n: int = CURVE_POINTS) -> np.ndarray:
    """(n, 2) points of the quadratic curve from p0 to p2 whose control point sits `bend_px` pixels off the
    midpoint, on the upper side of the chord (left of it, going left to right)."""
    a, b = to_px(np.array(p0)), to_px(np.array(p2))
    chord = b - a
    normal = np.array([-chord[1], chord[0]]) / max(1e-9, float(np.hypot(*chord)))
    if normal[1] < 0 or (normal[1] == 0 and normal[0] > 0):
        normal = -normal
    control = (a + b) / 2 + bend_px * normal
    t = np.linspace(0, 1, n)[:, None]
    return ((1 - t) ** 2 * a + 2 * (1 - t) * t * control + t**2 * b) / np.array([COLUMN_PX, BAND_PX])


def bends(edges: Sequence[GraphEdge], xy: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Pixels each edge bows out: long edges arc over the columns they skip, parallel edges fan out."""
    by_pair: dict[tuple[str, str], list[GraphEdge]] = {}
    for e in edges:
        by_pair.setdefault((e.sender, e.receiver), []).append(e)
    out = {}
    for (sender, receiver), parallel in by_pair.items():
        span = abs(xy[receiver][0] - xy[sender][0])
        for k, e in enumerate(parallel):
            out[e.key] = 70 * max(0.0, span - 1) + 45 * (k - (len(parallel) - 1) / 2)
    return out


def trimmed(points: np.ndarray, gap_px: float) -> np.ndarray:
    """The curve without its last `gap_px` pixels (so an arrowhead at its end stops at the node's rim)."""
    left = np.hypot(*(to_px(points) - to_px(points[-1])).T)
    keep = np.flatnonzero(left >= gap_px)
    return points[: keep[-1] + 1] if len(keep) >= 2 else points[:2]


def label_spots(curves: Sequence[np.ndarray], texts: Sequence[str],
                taken: Sequence[tuple[np.ndarray, str]]) -> list[np.ndarray]:
    """Where each edge's label goes: its curve's middle, slid along the curve away from the labels already
    placed (the nodes', then earlier edges')."""
    placed = list(taken)

    def free(spot: np.ndarray, text: str) -> bool:
        return all(abs(to_px(spot - s)[0]) > CHAR_PX * (len(text) + len(t)) / 2 + 6
                   or abs(to_px(spot - s)[1]) > LINE_PX for s, t in placed)

    out = []
    for points, text in zip(curves, texts):
        n = len(points) - 1
        spots = [points[round(t * n)] for t in (0.5, 0.38, 0.62, 0.28, 0.72)]
        spot = next((s for s in spots if free(s, text)), spots[0])
        placed.append((spot, text))
        out.append(spot)
    return out


def edge_color(effect: float, limit: float) -> str:
    return sample_colorscale(EDGE_SCALE, [0.5 + 0.5 * max(-1.0, min(1.0, effect / limit))])[0]


def edge_hover(e: GraphEdge) -> str:
    receiver = "the logits" if e.receiver == LOGITS else e.receiver
    return (f"{e.sender} → {receiver} via {e.via}<br>effect {num(e.effect)} (ratio of means over {e.n_pairs} pairs)"
            f"<br>per pair: q25 {num(e.q25)}, median {num(e.median)}, q75 {num(e.q75)}")


Positions = dict[str, tuple[float, float]]
LABEL_STYLE = {"showarrow": False, "bgcolor": "rgba(255,255,255,0.85)", "borderpad": 1}


def label_side(node: GraphNode, xy: Positions) -> int:
    """+1 (above) for a node in the upper half of its group's band, else -1 (below)."""
    return 1 if xy[node.name][1] - round(xy[node.name][1]) > 1e-9 else -1


def add_edges(fig: go.Figure, nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], xy: Positions) -> None:
    """Each edge as a curve ending in an arrowhead at the receiver's rim, its label, and one colour bar."""
    limit = max([abs(e.effect) for e in edges] + [1e-12])
    bend = bends(edges, xy)
    curves = [curve(xy[e.sender], xy[e.receiver], bend[e.key]) for e in edges]
    for e, points in zip(edges, curves):
        color = edge_color(e.effect, limit)
        width = 1.5 + 7.5 * abs(e.effect) / limit
        shown = trimmed(points, NODE_SIZE / 2 + 2)
        sizes = [0] * (len(shown) - 1) + [9 + 1.5 * width]  # an arrowhead at the end only
        fig.add_trace(go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="lines+markers", line={"width": width, "color": color},
                                 marker={"symbol": "arrow", "angleref": "previous", "size": sizes, "color": color},
                                 hoverinfo="skip", showlegend=False, meta={"edge": e.key}))
    node_labels = [(np.array(xy[nd.name]) + np.array([0.0, label_side(nd, xy) * LABEL_OFFSET_PX / BAND_PX]), nd.name)
                   for nd in nodes]
    texts = [f"{e.via} {e.effect:.2f}" for e in edges]
    for e, text, spot in zip(edges, texts, label_spots(curves, texts, node_labels)):
        fig.add_annotation(x=spot[0], y=spot[1], text=text, hovertext=edge_hover(e),
                           font={"size": 11, "color": "#1f2933"}, **LABEL_STYLE)
    if edges:  # an invisible point that carries the colour bar of the edges
        fig.add_trace(go.Scatter(x=[xy[edges[0].sender][0]], y=[xy[edges[0].sender][1]], mode="markers",
                                 hoverinfo="skip", showlegend=False,
                                 marker={"size": 0.1, "opacity": 0, "color": [0.0], "colorscale": EDGE_SCALE,
                                         "cmin": -limit, "cmax": limit, "showscale": True,
                                         "colorbar": {"title": {"text": "edge effect"}, "len": 0.8}}))


def add_nodes(fig: go.Figure, nodes: Sequence[GraphNode], xy: Positions) -> None:
    """One marker trace per role (for the legend), then every node's name above the edges on a white ground."""
    for role in ROLE_COLORS:
        members = [nd for nd in nodes if nd.role == role]
        if members:
            fig.add_trace(go.Scatter(
                x=[xy[nd.name][0] for nd in members], y=[xy[nd.name][1] for nd in members], mode="markers",
                name=ROLE_NAMES[role], hovertext=[nd.name for nd in members], hoverinfo="text",
                marker={"size": NODE_SIZE, "color": ROLE_COLORS[role], "line": {"width": 1.5, "color": "#ffffff"}},
                meta={"node": [nd.name for nd in members]}))
    for nd in nodes:
        fig.add_annotation(x=xy[nd.name][0], y=xy[nd.name][1], yshift=label_side(nd, xy) * LABEL_OFFSET_PX,
                           text=nd.name, font={"size": 12, "color": "#1f2933"}, **LABEL_STYLE)


def circuit_graph(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], groups: Sequence[str], n_layers: int,
                  has_mlp: bool, title: str) -> go.Figure:
    """The graph of `nodes` (inputs, circuit nodes and the logits) and `edges` between them."""
    cols = columns(n_layers, has_mlp)
    xy = positions(nodes, {key: i for i, (key, _) in enumerate(cols)}, groups)
    fig = go.Figure()
    add_edges(fig, nodes, edges, xy)
    add_nodes(fig, nodes, xy)  # after the edges, so nodes are drawn over them
    fig.update_xaxes(tickvals=list(range(len(cols))), ticktext=[label for _, label in cols],
                     range=[-0.6, len(cols) - 0.4], showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=[-i for i in range(len(groups))], ticktext=list(groups),
                     range=[-len(groups) + 0.45, 0.6], showgrid=True, zeroline=False)
    fig.update_layout(height=BAND_PX * len(groups) + 190, plot_bgcolor="#ffffff",
                      legend={"orientation": "h", "y": -0.18, "title": {"text": "node"}},
                      margin={"t": 70, "b": 120})
    return label_figure(fig, title, "where in the model (the residual stream flows left to right)",
                        "token positions the node acts at")
