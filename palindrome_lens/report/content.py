"""What a report section can show: a plotly figure, a table, an attention view or plain text."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import plotly.graph_objects as go

from palindrome_lens.report.algorithm import Step
from palindrome_lens.report.assets import CIRCUITSVIS_JS, EXPLORER_JS, PLOTLY_JS
from palindrome_lens.report.attention import attention_html
from palindrome_lens.report.errors import ReportError
from palindrome_lens.report.explorer import DATA_FILE, payload_script
from palindrome_lens.report.figures import figure_html, require_labels
from palindrome_lens.report.glossary import Term, link_terms
from palindrome_lens.report.tables import table_html


@dataclass(frozen=True, eq=False)
class Figure:
    """A plotly figure; it must have a title and axis labels (see `label_figure`)."""

    fig: go.Figure
    kind: ClassVar[str] = "plot"
    scripts: ClassVar[tuple[str, ...]] = (PLOTLY_JS,)

    def __post_init__(self) -> None:
        require_labels(self.fig, "Figure")

    def to_html(self, div_id: str, where: str) -> str:
        return figure_html(self.fig, div_id, where)


@dataclass(frozen=True, eq=False)
class Table:
    """A DataFrame shown as an escaped HTML table; floats get `digits` significant digits. `more` holds rows
    hidden by default behind a `<details>` toggle labelled `more_label`."""

    df: pd.DataFrame
    index: bool = False
    digits: int = 4
    more: pd.DataFrame | None = None
    more_label: str = ""
    kind: ClassVar[str] = "table"
    scripts: ClassVar[tuple[str, ...]] = ()

    def to_html(self, div_id: str, where: str) -> str:
        shown = table_html(self.df, div_id, index=self.index, digits=self.digits)
        if self.more is None or self.more.empty:
            return f'<div id="{div_id}">{shown}</div>'
        hidden = table_html(self.more, f"{div_id}-more", index=self.index, digits=self.digits)
        return (f'<div id="{div_id}">{shown}\n<details class="more"><summary>{html.escape(self.more_label)}</summary>'
                f"\n{hidden}\n</details></div>")


@dataclass(frozen=True, eq=False)
class AttentionView:
    """CircuitsVis AttentionHeads for one input: `pattern` is (heads, dest, src) or (dest, src)."""

    pattern: object
    tokens: Sequence[str]
    head_names: Sequence[str] | None = None
    kind: ClassVar[str] = "attn"
    scripts: ClassVar[tuple[str, ...]] = (CIRCUITSVIS_JS,)

    def to_html(self, div_id: str, where: str) -> str:
        return attention_html(self.pattern, self.tokens, div_id, where, self.head_names)


@dataclass(frozen=True, eq=False)
class Text:
    """Plain text, escaped: paragraphs split on blank lines, or one `<pre>` block if `preformatted`."""

    text: str
    preformatted: bool = False
    kind: ClassVar[str] = "text"
    scripts: ClassVar[tuple[str, ...]] = ()

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
    scripts: ClassVar[tuple[str, ...]] = ()

    def to_html(self, div_id: str, where: str) -> str:
        entries = []
        for href, label, description in self.items:
            entries.append(f'<li><a href="{local_href(href, where)}">{html.escape(label)}</a>: '
                           f"{html.escape(description)}</li>")
        return f'<ul id="{div_id}" class="links">\n' + "\n".join(entries) + "\n</ul>"


@dataclass(frozen=True, eq=False)
class Steps:
    """The algorithm as a numbered list: each step's sentence, the number behind it and a link to its figure;
    `empty` is said when no step is established."""

    steps: Sequence[Step]
    empty: str
    kind: ClassVar[str] = "steps"
    scripts: ClassVar[tuple[str, ...]] = ()

    def to_html(self, div_id: str, where: str) -> str:
        if not self.steps:
            return f'<div id="{div_id}">{paragraphs(self.empty)}</div>'
        page = where.split(",")[0]  # glossary terms link from the page the list is on
        items = [f'<li><span class="sentence">{link_terms(html.escape(s.sentence), page)}</span> <span '
                 f'class="evidence">{link_terms(html.escape(s.evidence), page)}.</span> <a href="'
                 f'{local_href(s.href, where)}">See: {html.escape(s.link_text)}</a></li>' for s in self.steps]
        return f'<ol id="{div_id}" class="steps">\n' + "\n".join(items) + "\n</ol>"


@dataclass(frozen=True, eq=False)
class Glossary:
    """Every term with its definition, each entry an anchor (`#g-<anchor>`) the captions link to."""

    terms: Sequence[Term]
    kind: ClassVar[str] = "glossary"
    scripts: ClassVar[tuple[str, ...]] = ()

    def to_html(self, div_id: str, where: str) -> str:
        entries = [f'<dt id="{t.id}">{html.escape(t.term)}</dt><dd>{html.escape(t.definition)}</dd>' for t in self.terms]
        return f'<dl id="{div_id}" class="glossary">\n' + "\n".join(entries) + "\n</dl>"


@dataclass(frozen=True, eq=False)
class ExplorerPicker:
    """The explorer's filters (source or kind, broken pair, margin), the string picker its script fills with the
    strings that pass them, the summary line, and the data file it loads (see report/explorer.py)."""

    payload: dict
    attention: bytes
    n_pairs: int  # mirrored pairs of the longest string
    kind: ClassVar[str] = "explorer"
    scripts: ClassVar[tuple[str, ...]] = (PLOTLY_JS, CIRCUITSVIS_JS, EXPLORER_JS)

    def files(self) -> dict[str, str]:
        return {DATA_FILE: payload_script(self.payload, self.attention)}

    def to_html(self, div_id: str, where: str) -> str:
        def select(name: str, label: str, options: Sequence[tuple[str, str]]) -> str:
            items = "".join(f'<option value="{html.escape(v)}">{html.escape(t)}</option>' for v, t in options)
            return f'<label>{label} <select id="explorer-{name}">{items}</select></label>'

        groups = [("", "any"), *((f"s{i}", s + "s") for i, s in enumerate(self.payload["sources"])),
                  *((f"k{i}", f"kind {k}") for i, k in enumerate(self.payload["kinds"]))]
        pairs = [("", "any"), *((str(p), f"pair {p} broken") for p in range(self.n_pairs))]
        return (f'<div id="{div_id}" class="explorer">\n<div class="filters">{select("group", "Show", groups)} '
                f'{select("pair", "Broken pair", pairs)} <label>Margin from <input id="explorer-min" type="number" '
                'step="0.5" size="5"></label> <label>to <input id="explorer-max" type="number" step="0.5" size="5">'
                '</label> <span id="explorer-count"></span></div>\n<label for="explorer-pick">String: </label>'
                '<select id="explorer-pick"></select>\n<div class="explorer-summary" data-view="summary"></div>\n'
                f'<script src="{DATA_FILE}"></script>\n</div>')


@dataclass(frozen=True, eq=False)
class ExplorerView:
    """A figure the explorer's script draws for the picked string: `view` is 'dla', 'patching' or 'attention'."""

    view: str
    kind: ClassVar[str] = "view"
    scripts: ClassVar[tuple[str, ...]] = (PLOTLY_JS, CIRCUITSVIS_JS, EXPLORER_JS)

    def to_html(self, div_id: str, where: str) -> str:
        if self.view not in ("dla", "patching", "attention"):
            raise ReportError(f"{where}: unknown explorer view {self.view!r}")
        css = "circuitsvis" if self.view == "attention" else "plotly-graph-div"  # so the page checks count it
        return f'<div id="{div_id}" class="{css}" data-view="{self.view}"></div>'


Content = Figure | Table | AttentionView | Text | Links | Steps | Glossary | ExplorerPicker | ExplorerView


def local_href(href: str, where: str) -> str:
    """`href` checked to name a page of this report ('name.html' or 'name.html#anchor'), escaped."""
    if not _LOCAL_PAGE.match(href):
        raise ReportError(f"{where}: link {href!r} must name a page of this report ('name.html')")
    return html.escape(href)


def paragraphs(text: str, css_class: str | None = None, page: str | None = None) -> str:
    """Escaped `<p>` per blank-line-separated paragraph; with `page` (the filename it goes on), the first use of
    each glossary term links to its entry."""
    attr = f' class="{css_class}"' if css_class else ""
    parts = [" ".join(block.split()) for block in text.strip().split("\n\n")]
    escaped = [html.escape(part) for part in parts if part]
    if page is not None:
        escaped = [link_terms(part, page) for part in escaped]
    return "\n".join(f"<p{attr}>{part}</p>" for part in escaped)
