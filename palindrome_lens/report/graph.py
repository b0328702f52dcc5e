"""The circuit graph as a plotly figure: nodes placed by layer (x) and position group (y), the embeddings
as inputs on the left and the logits on the right, edges as curved arrows whose width and colour follow
their path-patching effect, each labelled next to its own arrow with the input it enters (q, k, v, mlp_in,
logits) and its effect, and each node labelled under itself with its name and role.

Only the circuit's nodes, the inputs that feed them and the edges at or above the floor are drawn; the
edges below the floor between drawn nodes are there too, hidden until the reader turns them on in the legend.
Node names are circuit.json's (`L0H0@chars`). Each trace carries `meta` ({"node": names}, {"edge":
"from->to:via"} or {"below": "from->to:via"}) and each label annotation a `name` ("node:..."/"edge:..."), so
the drawn graph can be read back from the figure or from the page.
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
BAND_PX = 220  # height of one position group (one y unit), exactly: the figure's height is set to fit
COLUMN_PX = 150  # width of one column (one x unit), exactly: the figure's width is set to fit
MARGIN = {"l": 90, "r": 120, "t": 70, "b": 220}  # room for the y title, the colour bar, the title, the legend
LEGEND_GAP_PX = 100  # from the bottom of the plot to the legend: below the tick labels and the x title
CELL_STEP = 0.6  # band units between nodes that share a layer column and a position group
# Widths of a character (bold 12 px node names, 10 px roles, 11 px edge labels) and the height of a line, as
# Chromium draws them, to keep labels apart.
NAME_CHAR_PX, ROLE_CHAR_PX, EDGE_CHAR_PX, LINE_PX = 7.4, 5.0, 6.0, 16
NODE_LABEL_PX = NODE_SIZE / 2 + 4  # a node's label starts this far below its centre
CURVE_POINTS = 60
LABEL_SPOTS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.8)  # along its curve, from the midpoint out
LABEL_NUDGE_PX = 15  # how far beside its curve a label may sit when no spot on it is free
WIDTH_MIN, WIDTH_SPAN = 1.5, 7.5  # an edge's width: WIDTH_MIN + WIDTH_SPAN * |effect| / the largest |effect|
# light at 0, dark at the strongest edge; blue for edges that push the other way. With no such edge the scale
# runs from 0 to the strongest edge only (POSITIVE_SCALE), so the colour bar spans the data.
EDGE_SCALE = [[0.0, "#08306b"], [0.45, "#9ecae1"], [0.5, "#d9d9d9"], [0.55, "#fcae91"], [1.0, "#67000d"]]
POSITIVE_SCALE = [[0.0, "#d9d9d9"], [0.1, "#fcae91"], [1.0, "#67000d"]]
ARROW_GAP_PX = NODE_SIZE / 2 + 5  # an arrowhead stops this far from its receiver's centre, outside the marker
ROLE_COLORS = {"input": "#868e96", "head": "#1c7ed6", "mlp": "#e8590c", LOGITS: "#2b8a3e"}
ROLE_NAMES = {"input": "input (embedding)", "head": "attention head", "mlp": "MLP", LOGITS: "logits"}
BELOW = "below the floor"


@dataclass(frozen=True)
class GraphNode:
    name: str
    component: str
    layer: int  # -1 for the embeddings
    group: str
    role: str = ""  # what the node does, written under it ('' when no gate passes)

    @property
    def kind(self) -> str:
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

    @property
    def label(self) -> str:
        return f"{self.via} {self.effect:.2f}"


def columns(n_layers: int, has_mlp: bool) -> list[tuple[str, str]]:
    """(column key, tick label) left to right: inputs, per layer its heads then its MLP, the logits."""
    out = [("input", "inputs (embeddings)")]
    for layer in range(n_layers):
        out.append((f"head{layer}", f"layer {layer} heads"))
        if has_mlp:
            out.append((f"mlp{layer}", f"layer {layer} MLP"))
    return [*out, (LOGITS, "logits")]


def column_key(node: GraphNode) -> str:
    return {"input": "input", LOGITS: LOGITS, "head": f"head{node.layer}", "mlp": f"mlp{node.layer}"}[node.kind]


Positions = dict[str, tuple[float, float]]


def positions(nodes: Sequence[GraphNode], column_x: dict[str, int], groups: Sequence[str]) -> Positions:
    """(x, y) per node: y = -(group index), nodes sharing a column and group stacked CELL_STEP apart around it."""
    cells: dict[tuple[str, str], list[GraphNode]] = {}
    for nd in nodes:
        cells.setdefault((column_key(nd), nd.group), []).append(nd)
    out = {}
    for (column, group), members in cells.items():
        for j, nd in enumerate(members):
            out[nd.name] = (float(column_x[column]), -groups.index(group) + ((len(members) - 1) / 2 - j) * CELL_STEP)
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


def bends(edges: Sequence[GraphEdge], xy: Positions) -> dict[str, float]:
    """Pixels each edge bows out: long edges arc over the columns they skip, parallel edges fan out."""
    by_pair: dict[tuple[str, str], list[GraphEdge]] = {}
    for e in edges:
        by_pair.setdefault((e.sender, e.receiver), []).append(e)
    out = {}
    for (sender, receiver), parallel in by_pair.items():
        span = abs(xy[receiver][0] - xy[sender][0])
        for k, e in enumerate(parallel):
            out[e.key] = 70 * max(0.0, span - 1) + 40 * (k - (len(parallel) - 1) / 2)
    return out


def trimmed(points: np.ndarray, gap_px: float) -> np.ndarray:
    """The curve without its last `gap_px` pixels (so an arrowhead at its end stops at the node's rim)."""
    left = np.hypot(*(to_px(points) - to_px(points[-1])).T)
    keep = np.flatnonzero(left >= gap_px)
    return points[: keep[-1] + 1] if len(keep) >= 2 else points[:2]


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels (y up)


def text_box(centre_px: np.ndarray, widths: Sequence[float], top: bool = False) -> Box:
    """The box a label of lines `widths` pixels wide covers, centred on `centre_px` (or hanging from it when
    `top`)."""
    width = max(widths) + 8
    height = LINE_PX * len(widths) + 4
    x, y = float(centre_px[0]), float(centre_px[1])
    return (x - width / 2, y - height, x + width / 2, y) if top else (x - width / 2, y - height / 2, x + width / 2,
                                                                      y + height / 2)


def role_lines(nd: GraphNode) -> list[str]:
    return [part for part in nd.role.split("; ") if part]


def node_label_widths(nd: GraphNode) -> list[float]:
    return [NAME_CHAR_PX * len(nd.name), *(ROLE_CHAR_PX * len(line) for line in role_lines(nd))]


def node_boxes(nodes: Sequence[GraphNode], xy: Positions) -> list[Box]:
    """Each node's marker and the label hanging under it."""
    out = []
    for nd in nodes:
        centre = to_px(np.array(xy[nd.name]))
        out.append((centre[0] - NODE_SIZE / 2, centre[1] - NODE_SIZE / 2, centre[0] + NODE_SIZE / 2,
                    centre[1] + NODE_SIZE / 2))
        out.append(text_box(centre - np.array([0.0, NODE_LABEL_PX]), node_label_widths(nd), top=True))
    return out


def label_spots(curves: Sequence[np.ndarray], texts: Sequence[str], taken: Sequence[Box]) -> list[np.ndarray]:
    """Where each edge's label goes: on its own curve, from its midpoint outwards, at the first spot whose box
    clears the nodes, their labels, the labels already placed and every other edge; failing that, just beside
    its curve (LABEL_NUDGE_PX across it); failing that, where it covers least."""
    placed = list(taken)
    dots = [[(x - 2, y - 2, x + 2, y + 2) for x, y in to_px(points)] for points in curves]  # each edge as boxes
    out = []
    for k, (points, text) in enumerate(zip(curves, texts)):
        n = len(points) - 1
        others = [b for j, boxes in enumerate(dots) if j != k for b in boxes]
        spots = []
        for nudge in (0.0, LABEL_NUDGE_PX, -LABEL_NUDGE_PX, 2 * LABEL_NUDGE_PX, -2 * LABEL_NUDGE_PX):
            for t in LABEL_SPOTS:
                i = round(t * n)
                tangent = to_px(points[min(n, i + 1)]) - to_px(points[max(0, i - 1)])
                normal = np.array([-tangent[1], tangent[0]]) / max(1e-9, float(np.hypot(*tangent)))
                spots.append(points[i] + nudge * normal / np.array([COLUMN_PX, BAND_PX]))
        boxes = [text_box(to_px(s), [EDGE_CHAR_PX * len(text)]) for s in spots]
        clash = [sum(overlap_area(box, b) for b in placed) + sum(overlap_area(box, b) for b in others)
                 for box in boxes]
        best = clash.index(min(clash))  # the first free spot, else the one that covers least
        placed.append(boxes[best])
        out.append(spots[best])
    return out


def overlap_area(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def edge_color(effect: float, limit: float, signed: bool = True) -> str:
    """The colour of `effect` on the diverging scale (`signed`) or on the scale from 0 to `limit`."""
    share = max(-1.0, min(1.0, effect / limit))
    return sample_colorscale(EDGE_SCALE, [0.5 + 0.5 * share])[0] if signed else \
        sample_colorscale(POSITIVE_SCALE, [max(0.0, share)])[0]


def edge_width(effect: float, limit: float) -> float:
    return WIDTH_MIN + WIDTH_SPAN * min(1.0, abs(effect) / limit)


def edge_hover(e: GraphEdge) -> str:
    receiver = "the logits" if e.receiver == LOGITS else e.receiver
    return (f"{e.sender} → {receiver} via {e.via}<br>effect {num(e.effect)} (ratio of means over {e.n_pairs} example "
            f"pairs)<br>per pair: q25 {num(e.q25)}, median {num(e.median)}, q75 {num(e.q75)}")


LABEL_STYLE = {"showarrow": False, "bgcolor": "rgba(255,255,255,0.9)", "borderpad": 2}


def add_edges(fig: go.Figure, nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], xy: Positions,
              limit: float, signed: bool) -> None:
    """Each edge as a curve ending in an arrowhead at the receiver's rim, and its label on the curve, framed
    in the edge's colour."""
    bend = bends(edges, xy)
    curves = [curve(xy[e.sender], xy[e.receiver], bend[e.key]) for e in edges]
    for e, points in zip(edges, curves):
        color, width = edge_color(e.effect, limit, signed), edge_width(e.effect, limit)
        shown = trimmed(points, ARROW_GAP_PX)
        sizes = [0] * (len(shown) - 1) + [9 + 1.5 * width]  # an arrowhead at the end only
        fig.add_trace(go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="lines+markers", line={"width": width, "color": color},
                                 marker={"symbol": "arrow", "angleref": "previous", "size": sizes, "color": color},
                                 hoverinfo="skip", showlegend=False, meta={"edge": e.key}))
    for e, spot in zip(edges, label_spots(curves, [e.label for e in edges], node_boxes(nodes, xy))):
        fig.add_annotation(x=spot[0], y=spot[1], text=e.label, hovertext=edge_hover(e), name=f"edge:{e.key}",
                           font={"size": 11, "color": "#1f2933"}, bordercolor=edge_color(e.effect, limit, signed),
                           borderwidth=1.5, **LABEL_STYLE)


def add_hidden_edges(fig: go.Figure, edges: Sequence[GraphEdge], xy: Positions) -> None:
    """The edges below the floor between drawn nodes: thin grey curves, off until their legend entry is clicked."""
    bend = bends(edges, xy)
    for i, e in enumerate(edges):
        points = curve(xy[e.sender], xy[e.receiver], bend[e.key])
        fig.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], mode="lines", visible="legendonly",
                                 line={"width": 1, "color": "#adb5bd", "dash": "dot"}, legendgroup=BELOW,
                                 name=f"{len(edges)} edges {BELOW} (click to show)", showlegend=i == 0,
                                 hovertext=edge_hover(e), hoverinfo="text", meta={"below": e.key}))


def add_width_legend(fig: go.Figure, limit: float, signed: bool) -> None:
    """Legend entries that show what an edge's width means."""
    for share in (0.25, 0.5, 1.0):
        effect = share * limit
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", legendgroup="width", hoverinfo="skip",
                                 name=f"edge |effect| {effect:.2f}",
                                 line={"width": edge_width(effect, limit), "color": edge_color(effect, limit, signed)}))


def add_nodes(fig: go.Figure, nodes: Sequence[GraphNode], xy: Positions) -> None:
    """One marker trace per kind (for the legend), then every node's name and role under it, above the edges."""
    for kind in ROLE_COLORS:
        members = [nd for nd in nodes if nd.kind == kind]
        if members:
            fig.add_trace(go.Scatter(
                x=[xy[nd.name][0] for nd in members], y=[xy[nd.name][1] for nd in members], mode="markers",
                name=ROLE_NAMES[kind], hovertext=[f"{nd.name}: {nd.role}" if nd.role else nd.name for nd in members],
                hoverinfo="text", legendgroup="nodes",
                marker={"size": NODE_SIZE, "color": ROLE_COLORS[kind], "line": {"width": 1.5, "color": "#ffffff"}},
                meta={"node": [nd.name for nd in members]}))
    for nd in nodes:
        role = "".join(f"<br><span style='font-size:10px;color:#52606d'>{line}</span>" for line in role_lines(nd))
        fig.add_annotation(x=xy[nd.name][0], y=xy[nd.name][1], yshift=-NODE_LABEL_PX, yanchor="top",
                           text=f"<b>{nd.name}</b>{role}", name=f"node:{nd.name}", font={"size": 12, "color": "#1f2933"},
                           **LABEL_STYLE)


def circuit_graph(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], groups: Sequence[str], n_layers: int,
                  has_mlp: bool, title: str, hidden: Sequence[GraphEdge] = ()) -> go.Figure:
    """The graph of `nodes` (inputs, circuit nodes and the logits) and `edges` between them; `hidden` edges are
    drawn but off until the reader turns them on."""
    cols = columns(n_layers, has_mlp)
    groups = [g for g in groups if any(nd.group == g for nd in nodes)]  # no empty rows
    xy = positions(nodes, {key: i for i, (key, _) in enumerate(cols)}, groups)
    limit = max([abs(e.effect) for e in edges] + [1e-12])
    fig = go.Figure()
    add_hidden_edges(fig, hidden, xy)
    signed = any(e.effect < 0 for e in edges)
    add_edges(fig, nodes, edges, xy, limit, signed)
    add_nodes(fig, nodes, xy)  # after the edges, so nodes are drawn over them
    if edges:
        add_width_legend(fig, limit, signed)
        fig.add_trace(go.Scatter(x=[xy[edges[0].sender][0]], y=[xy[edges[0].sender][1]], mode="markers",
                                 hoverinfo="skip", showlegend=False,  # an invisible point that carries the colour bar
                                 marker={"size": 0.1, "opacity": 0, "color": [0.0],
                                         "colorscale": EDGE_SCALE if signed else POSITIVE_SCALE,
                                         "cmin": -limit if signed else 0.0, "cmax": limit, "showscale": True,
                                         "colorbar": {"title": {"text": "edge effect"}, "len": 0.6, "y": 0.65}}))
    # Ranges and size so that one unit is exactly COLUMN_PX wide and BAND_PX high, as the label placement assumes.
    fig.update_xaxes(tickvals=list(range(len(cols))), ticktext=[label for _, label in cols],
                     range=[-0.6, len(cols) - 0.4], showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=[-i for i in range(len(groups))], ticktext=list(groups),
                     range=[-len(groups) + 0.5, 0.5], showgrid=True, zeroline=False)
    fig.update_layout(height=BAND_PX * len(groups) + MARGIN["t"] + MARGIN["b"],
                      width=round(COLUMN_PX * (len(cols) + 0.2)) + MARGIN["l"] + MARGIN["r"], plot_bgcolor="#ffffff",
                      legend={"orientation": "h", "y": -LEGEND_GAP_PX / (BAND_PX * len(groups)), "yanchor": "top"},
                      margin=MARGIN)
    return label_figure(fig, title, "where in the model (the residual stream flows left to right)",
                        "token positions the node acts at")
