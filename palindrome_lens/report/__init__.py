"""Offline, deterministic HTML reports: pages of sections holding plotly figures, tables, CircuitsVis
attention views or text, with plotly.js and CircuitsVis shipped once under `assets/`."""

from palindrome_lens.report.assets import CIRCUITSVIS_JS, PLOTLY_JS, write_assets
from palindrome_lens.report.content import AttentionView, Content, Figure, Links, Table, Text
from palindrome_lens.report.errors import ReportError
from palindrome_lens.report.figures import label_figure, missing_labels, require_labels
from palindrome_lens.report.html import Page, Section, build_report, render_page

__all__ = [
    "CIRCUITSVIS_JS",
    "PLOTLY_JS",
    "AttentionView",
    "Content",
    "Figure",
    "Links",
    "Page",
    "ReportError",
    "Section",
    "Table",
    "Text",
    "build_report",
    "label_figure",
    "missing_labels",
    "render_page",
    "require_labels",
    "write_assets",
]
