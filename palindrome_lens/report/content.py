"""What a report section can show: a plotly figure, a table, an attention view or plain text."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go

from palindrome_lens.report.attention import attention_html
from palindrome_lens.report.errors import ReportError
from palindrome_lens.report.figures import figure_html, require_labels
from palindrome_lens.report.tables import table_html


@dataclass(frozen=True, eq=False)
class Figure:
    """A plotly figure; it must have a title and axis labels (see `label_figure`)."""

    fig: go.Figure
    kind: ClassVar[str] = "plot"

    def __post_init__(self) -> None:
        require_labels(self.fig, "Figure")

    def to_html(self, div_id: str, where: str) -> str:
        return figure_html(self.fig, div_id, where)


@dataclass(frozen=True, eq=False)
class Table:
    """A DataFrame shown as an escaped HTML table; floats get `digits` significant digits."""

    df: pd.DataFrame
    index: bool = False
    digits: int = 4
    kind: ClassVar[str] = "table"

    def to_html(self, div_id: str, where: str) -> str:
        return f'<div id="{div_id}">{table_html(self.df, div_id, index=self.index, digits=self.digits)}</div>'


@dataclass(frozen=True, eq=False)
class AttentionView:
    """CircuitsVis AttentionHeads for one input: `pattern` is (heads, dest, src) or (dest, src)."""

    pattern: object
    tokens: Sequence[str]
    head_names: Sequence[str] | None = None
    kind: ClassVar[str] = "attn"

    def to_html(self, div_id: str, where: str) -> str:
        return attention_html(self.pattern, self.tokens, div_id, where, self.head_names)


@dataclass(frozen=True, eq=False)
class Text:
    """Plain text, escaped: paragraphs split on blank lines, or one `<pre>` block if `preformatted`."""

    text: str
    preformatted: bool = False
    kind: ClassVar[str] = "text"

    def to_html(self, div_id: str, where: str) -> str:
        if self.preformatted:
            return f'<pre id="{div_id}">{html.escape(self.text)}</pre>'
        return f'<div id="{div_id}">{paragraphs(self.text)}</div>'


_LOCAL_PAGE = re.compile(r"^[a-z0-9][a-z0-9_-]*\.html(#[A-Za-z0-9_-]+)?$")


@dataclass(frozen=True, eq=False)
class Links:
    """A list of links to pages of the same report: (page filename, label, one-line description)."""

    items: Sequence[tuple[str, str, str]]
    kind: ClassVar[str] = "links"

    def to_html(self, div_id: str, where: str) -> str:
        entries = []
        for href, label, description in self.items:
            if not _LOCAL_PAGE.match(href):
                raise ReportError(f"{where}: link {href!r} must name a page of this report ('name.html')")
            entries.append(f'<li><a href="{href}">{html.escape(label)}</a>: {html.escape(description)}</li>')
        return f'<ul id="{div_id}" class="links">\n' + "\n".join(entries) + "\n</ul>"


Content = Figure | Table | AttentionView | Text | Links


def paragraphs(text: str, css_class: str | None = None) -> str:
    """Escaped `<p>` per blank-line-separated paragraph."""
    attr = f' class="{css_class}"' if css_class else ""
    parts = [" ".join(block.split()) for block in text.strip().split("\n\n")]
    return "\n".join(f"<p{attr}>{html.escape(part)}</p>" for part in parts if part)
