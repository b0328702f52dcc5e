"""Plotly figures in reports: every one must carry a title and a label on each axis it plots on."""

from __future__ import annotations

import re

import plotly.graph_objects as go

from palindrome_lens.report.errors import ReportError

DEFAULT_HEIGHT_PX = 450
# Offline reports: no "Share chart..." button (it uploads to Plotly Cloud).
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendChartToCloud"]}


def label_figure(
    fig: go.Figure,
    title: str,
    x_title: str | None = None,
    y_title: str | None = None,
    color_title: str | None = None,
) -> go.Figure:
    """Set the title, and the x/y axis titles on every x/y axis (and the colour-bar title); return `fig`."""
    fig.update_layout(title_text=title)
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    if color_title is not None:
        fig.update_layout(coloraxis_colorbar_title_text=color_title)
        for trace in fig.data:
            if "colorbar" in trace:
                trace.colorbar.title.text = color_title
    return fig


def _axis_key(ref: str) -> str:
    """'x' -> 'xaxis', 'y3' -> 'yaxis3'."""
    return f"{ref[0]}axis{ref[1:]}"


def _axis_titled(fig: go.Figure, ref: str) -> bool:
    axis = fig.layout[_axis_key(ref)]
    if axis.title.text:
        return True
    # An axis that `matches` another (shared subplot axes) may rely on that axis's label.
    return bool(axis.matches) and bool(fig.layout[_axis_key(axis.matches)].title.text)


def missing_labels(fig: go.Figure) -> list[str]:
    """What `fig` lacks: 'title' and/or the names of used cartesian axes without a title."""
    missing = [] if fig.layout.title.text else ["title"]
    used: list[str] = []
    for trace in fig.data:
        for letter in ("x", "y"):
            if f"{letter}axis" in trace:
                ref = trace[f"{letter}axis"] or letter
                if ref not in used:
                    used.append(ref)
    missing += [f"{_axis_key(ref)} title" for ref in used if not _axis_titled(fig, ref)]
    return missing


def require_labels(fig: go.Figure, where: str) -> None:
    """Raise ReportError naming `where` if `fig` has no title or an unlabelled axis."""
    missing = missing_labels(fig)
    if missing:
        raise ReportError(
            f"{where}: figure is missing {', '.join(missing)}; set them with "
            "palindrome_lens.report.label_figure(fig, title, x_title, y_title)"
        )


DIGITS = 6  # significant digits of every number a figure carries: far finer than a pixel or a hover label shows
_LONG_FLOAT = re.compile(rf"(?<![\w.])-?\d+\.\d{{{DIGITS},}}(?:e[-+]?\d+)?")


def figure_html(fig: go.Figure, div_id: str, where: str) -> str:
    """The figure as a `<div>` plus the inline script that draws it; plotly.js is loaded by the page."""
    require_labels(fig, where)
    height = fig.layout.height or DEFAULT_HEIGHT_PX
    document = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        default_height=f"{height}px",
        config=dict(PLOTLY_CONFIG),
    )
    return _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.{DIGITS}g}", document)
