"""Figure helpers shared by the report pages: bars, lines, binned histograms and heatmap grids.

Every helper returns a labelled figure (title, axis titles, colour-bar title), ready for `Figure`.
Histograms are binned here with numpy, so a page carries counts, not raw samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import num, pct, pcts

KIND_ORDER = ("all", "palindrome", "near1", "near2", "random", "distance_1")
# Hues far apart (Okabe-Ito), so kinds drawn over each other stay apart.
KIND_COLORS = {"all": "#3e4c59", "palindrome": "#009e73", "near1": "#e69f00", "near2": "#0072b2",
               "random": "#7f7f7f", "redraw": "#cc79a7", "distance_1": "#7048e8"}
CLASS_COLORS = {"palindrome": "#2f9e44", "not_palindrome": "#c92a2a"}
SERIES = ("#1c7ed6", "#e8590c", "#2f9e44", "#7048e8", "#c92a2a", "#868e96", "#f59f00", "#0ca678")
DIVERGING = "RdBu_r"  # blue negative, white 0, red positive
SEQUENTIAL = "Blues"
ERROR_COLOR = "#c92a2a"
PANEL_HEIGHT_PX = 260
MIN_PANEL_HEIGHT_PX = 150  # below this the colour bar's ticks collide
ROW_GAP_PX = 110  # x tick labels + x title + the next row's subplot title
MARGIN_TOP_PX, MARGIN_BOTTOM_PX = 110, 80


def subplot_grid(n_panels: int, cols: int, titles: Sequence[str], panel_height: int, *, shared_y: bool = False,
                 horizontal_spacing: float = 0.1) -> go.Figure:
    """`make_subplots` with the gap between rows fixed in pixels (room for tick labels, the x title and the
    next row's subplot title), whatever the number of rows; the figure's height is set to fit."""
    rows = max(1, math.ceil(n_panels / cols))
    panel_height = max(panel_height, MIN_PANEL_HEIGHT_PX)
    plot_height = rows * panel_height + (rows - 1) * ROW_GAP_PX
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), shared_yaxes=shared_y,
                        horizontal_spacing=horizontal_spacing,
                        vertical_spacing=ROW_GAP_PX / plot_height if rows > 1 else 0.0)
    fig.update_layout(height=plot_height + MARGIN_TOP_PX + MARGIN_BOTTOM_PX,
                      margin={"t": MARGIN_TOP_PX, "b": MARGIN_BOTTOM_PX})
    return fig


def color_of(key: str, index: int = 0) -> str:
    return KIND_COLORS.get(key) or CLASS_COLORS.get(key) or SERIES[index % len(SERIES)]


def kind_sorted(kinds: Sequence[str]) -> list[str]:
    """Kinds in the report's fixed order, unknown ones after (alphabetically)."""
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(dict.fromkeys(kinds), key=lambda k: (rank.get(k, len(rank)), k))


def head_order(frame: pd.DataFrame) -> list[str]:
    """The `component` names of `frame`'s heads in TransformerLens order (by layer, then head)."""
    return list(dict.fromkeys(frame.sort_values(["layer", "head"], kind="stable")["component"]))


def position_labels(length: int, n_positions: int) -> list[str]:
    """Token positions of a string of `length` characters: BOS, 1..length, then EOS (then PAD)."""
    labels = []
    for pos in range(n_positions):
        if pos == 0:
            labels.append("BOS")
        elif pos <= length:
            labels.append(str(pos))
        elif pos == length + 1:
            labels.append("EOS")
        else:
            labels.append(f"PAD{pos}")
    return labels


def pair_label(length: int, pair: int) -> str:
    """Mismatch pair `pair` (left 0-based character index) as the token positions it breaks."""
    return f"pair {pair}: positions {pair + 1}↔{length - pair}"


def bars(x: Sequence[object], y: Sequence[float], title: str, x_title: str, y_title: str, *,
         text: Sequence[str] | None = None, hover: Sequence[str] | None = None, color: str = SERIES[0],
         percent: bool = False) -> go.Figure:
    """One bar series; `percent` formats the y axis (0..1) as percentages."""
    fig = go.Figure(go.Bar(x=[str(v) for v in x], y=list(y), marker_color=color, text=text,
                           textposition="outside" if text is not None else None, cliponaxis=False,
                           hovertext=hover, hoverinfo="text" if hover is not None else None))
    if percent:
        fig.update_yaxes(tickformat=".0%", range=[0, 1.08])
    fig.update_xaxes(type="category")
    return label_figure(fig, title, x_title, y_title)


def error_bars(keys: Sequence[object], wrong: Sequence[int], total: Sequence[int], title: str, x_title: str,
               y_title: str) -> go.Figure:
    """Misclassified counts per category, each bar labelled 'k of n' and its accuracy to enough digits: near
    100% accuracy, counts show what rounded percentages hide."""
    accuracy = [1 - w / n if n else float("nan") for w, n in zip(wrong, total)]
    shown = pcts(accuracy, 2)
    text = [f"{w} of {n}" for w, n in zip(wrong, total)]
    hover = [f"{k}: {w} wrong of {n} (accuracy {a})" for k, w, n, a in zip(keys, wrong, total, shown)]
    fig = bars(keys, wrong, title, x_title, y_title, text=text, hover=hover, color=ERROR_COLOR)
    return count_axis(fig, max([0, *wrong]))


def count_axis(fig: go.Figure, top: float) -> go.Figure:
    """A y axis of whole counts from 0 to a little above `top` (at least 1), with whole-number ticks."""
    top = max(1.0, float(top))
    fig.update_yaxes(range=[0, top * 1.2], dtick=max(1, math.ceil(top / 5)), tickformat="d")
    return fig


def grouped_bars(x: Sequence[object], series: dict[str, Sequence[float]], title: str, x_title: str, y_title: str,
                 *, legend_title: str, percent: bool = False, hover: dict[str, Sequence[str]] | None = None
                 ) -> go.Figure:
    """Bars grouped by x, one colour per series (named by kind/class when possible)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        fig.add_trace(go.Bar(name=str(name), x=[str(v) for v in x], y=list(values), marker_color=color_of(name, i),
                             hovertext=(hover or {}).get(name), hoverinfo="text" if hover else None))
    fig.update_layout(barmode="group", legend_title_text=legend_title)
    fig.update_xaxes(type="category")
    if percent:
        fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return label_figure(fig, title, x_title, y_title)


def pair_bars(values: pd.DataFrame, notes: pd.DataFrame, title: str, pair_name: str, y_title: str, *,
              percent: bool) -> go.Figure:
    """Bars of `values` (mirrored pair x string length, NaN = no bar) grouped by pair, one colour per length.
    `pair_name` says which pair it is ('broken pair'); pair 0 is the outermost one.

    Hovering a bar shows its value and its cell of `notes` (same index and columns as `values`).
    """
    shown = (lambda v: pct(v, 2)) if percent else num
    series, hover = {}, {}
    for length in values.columns:
        name = f"length {length}"
        series[name] = values[length].tolist()
        hover[name] = [f"length {length}, pair {pair}: {shown(v)}{notes.loc[pair, length]}"
                       for pair, v in values[length].items()]
    fig = grouped_bars([str(p) for p in values.index], series, title, f"{pair_name} (0 = the outermost characters)",
                       y_title, legend_title="string length", percent=percent, hover=hover)
    fig.update_layout(showlegend=len(values.columns) > 1)  # one length: nothing for a legend to tell apart
    return fig


def lines(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, x_title: str, y_title: str, *,
          log_y: bool = False, percent: bool = False) -> go.Figure:
    fig = go.Figure()
    for i, (name, (x, y)) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines", name=name, line={"color": SERIES[i]}))
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    if percent:
        fig.update_yaxes(tickformat=".0%")
    fig.update_layout(showlegend=len(series) > 1)
    return label_figure(fig, title, x_title, y_title)


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """`bins` equal bins over the finite range of `values` (a unit range around a constant)."""
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


@dataclass(frozen=True)
class HistPanel:
    """One subplot of `histograms`: a name and, per group, the samples."""

    title: str
    groups: dict[str, np.ndarray]


def histograms(panels: Sequence[HistPanel], bins: int, title: str, x_title: str, y_title: str, *,
               legend_title: str, cols: int = 3, share: bool = True, same_x: bool = False) -> go.Figure:
    """One panel per entry, the groups overlaid as step-free bars of the share of each group per bin.

    Bins are shared by the groups of a panel (so they compare), `bins` of them over the panel's range; with
    `same_x`, every panel has the same bins and one x axis, so a narrow distribution looks narrow.
    """
    fig = subplot_grid(len(panels), cols, [p.title for p in panels], PANEL_HEIGHT_PX)
    shown: set[str] = set()
    everything = [np.asarray(v, dtype=np.float64) for p in panels for v in p.groups.values()]
    common = bin_edges(np.concatenate(everything) if everything else np.zeros(0), bins) if same_x else None
    for i, panel in enumerate(panels):
        samples = [np.asarray(v, dtype=np.float64) for v in panel.groups.values()]
        edges = common if common is not None else bin_edges(np.concatenate(samples) if samples else np.zeros(0), bins)
        centres, width = (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])
        for j, (name, values) in enumerate(panel.groups.items()):
            values = values[np.isfinite(values)]
            counts, _ = np.histogram(values, bins=edges)
            share_ = counts / max(1, values.size) if share else counts
            fig.add_trace(go.Bar(x=centres, y=share_, width=width, name=name, legendgroup=name,
                                 showlegend=name not in shown, marker_color=color_of(name, j), opacity=0.6,
                                 hovertemplate=f"{name}<br>%{{x:.3g}}: %{{y:.3g}}<extra></extra>"),
                          row=i // cols + 1, col=i % cols + 1)
            shown.add(name)
    fig.update_layout(barmode="overlay", bargap=0, legend_title_text=legend_title)
    if same_x:
        fig.update_xaxes(matches="x")
    return label_figure(fig, title, x_title, y_title)


@dataclass(frozen=True)
class Panel:
    """One heatmap of `heatmap_grid`: z is (len(y), len(x)); row 0 is drawn at the top."""

    title: str
    z: np.ndarray
    x: Sequence[str]
    y: Sequence[str]


def grid(cells: pd.DataFrame, rows: str, columns: str, values: str, row_keys: Sequence[object],
         column_keys: Sequence[object]) -> np.ndarray:
    """`cells` (one row per cell) as a (len(row_keys), len(column_keys)) array of `values`, in that order.

    Cells `cells` lacks are NaN (drawn blank); a cell given twice is an error (DataFrame.pivot raises).
    """
    table = cells.pivot(index=rows, columns=columns, values=values)
    return table.reindex(index=list(row_keys), columns=list(column_keys)).to_numpy(np.float64)


def heatmap_grid(panels: Sequence[Panel], title: str, x_title: str, y_title: str, color_title: str, *,
                 cols: int = 3, zmin: float | None = None, zmax: float | None = None, zmid: float | None = None,
                 colorscale: str = DIVERGING, hover: str = "%{z:.3f}", text_format: str | None = None,
                 panel_height: int = PANEL_HEIGHT_PX) -> go.Figure:
    """Heatmaps sharing one colour axis, `cols` per row; `text_format` writes each cell's value.

    When every panel has the same row labels, only the first column shows them (and the y title).
    """
    cols = max(1, min(cols, len(panels)))
    share_y = cols > 1 and all(list(p.y) == list(panels[0].y) for p in panels)
    fig = subplot_grid(len(panels), cols, [p.title for p in panels], panel_height, shared_y=share_y,
                       horizontal_spacing=0.04 if share_y else 0.1)
    for i, panel in enumerate(panels):
        z = np.asarray(panel.z, dtype=np.float64)
        z = np.where(np.isfinite(z), z, None)  # missing cells stay blank
        fig.add_trace(go.Heatmap(z=z.tolist(), x=list(panel.x), y=list(panel.y), coloraxis="coloraxis",
                                 texttemplate=text_format, xgap=1, ygap=1,
                                 hovertemplate=f"{y_title} %{{y}}, {x_title} %{{x}}: {hover}<extra>{panel.title}</extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    coloraxis: dict[str, object] = {"colorscale": colorscale}
    if zmin is not None:
        coloraxis["cmin"] = zmin
    if zmax is not None:
        coloraxis["cmax"] = zmax
    if zmid is not None:
        coloraxis["cmid"] = zmid
    fig.update_layout(coloraxis=coloraxis)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    label_figure(fig, title, x_title, y_title, color_title=color_title)
    if share_y:  # the other columns `match` the first one's axis, which carries the title
        for i in range(len(panels)):
            if i % cols:
                fig.get_subplot(i // cols + 1, i % cols + 1).yaxis.title.text = None
    return fig


def symmetric_limit(values: np.ndarray) -> float:
    """max |value| over the finite values (1 if there are none), for a colour scale centred on 0."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 1.0
