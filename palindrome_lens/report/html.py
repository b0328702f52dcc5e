"""A small static-site builder: pages of titled sections, a shared nav bar, assets shipped once.

Pages open straight from disk (file://) with no network: plotly.js and CircuitsVis are loaded from
`assets/` next to the pages, never from a CDN. Same inputs give byte-identical files (element ids are
derived from section positions; nothing random, no timestamps).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from palindrome_lens.atomic import write_text
from palindrome_lens.report.assets import SCRIPT_ORDER, write_assets
from palindrome_lens.report.content import Content, paragraphs
from palindrome_lens.report.downloads import Download, download_links, write_downloads
from palindrome_lens.report.errors import ReportError

SITE_TITLE = "palindrome-lens"
_FILENAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.html$")
# A tag other than <a> whose src/href points off the machine (escaped text can never match: it has no '<').
_REMOTE_LOAD = re.compile(r"""<(?!a\b)[a-z]+\b[^>]*?\s(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933; }
nav.site { background: #1f2933; padding: 0.6rem 1rem; display: flex; flex-wrap: wrap; gap: 0.9rem; font-size: 0.95rem; }
nav.site a { color: #cbd2d9; text-decoration: none; }
nav.site a[aria-current="page"] { color: #fff; font-weight: 600; border-bottom: 2px solid #fff; }
nav.site .brand { color: #fff; font-weight: 700; margin-right: 0.4rem; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
.intro { font-size: 1.05rem; line-height: 1.5; }
ul.toc { columns: 2; }
section { margin-top: 2.5rem; }
p.caption { color: #52606d; background: #f5f7fa; border-left: 4px solid #9aa5b1; padding: 0.5rem 0.8rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 0.3rem 0.7rem; text-align: left; vertical-align: top; }
td { max-width: 30rem; overflow-wrap: anywhere; }
td:not(.num) { min-width: 4rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; overflow-wrap: normal; }
pre { background: #f5f7fa; padding: 0.8rem; overflow-x: auto; }
div.circuitsvis { max-width: 760px; }
ul.links li { margin: 0.3rem 0; }
a.term { color: inherit; text-decoration: underline dotted #9aa5b1; }
p.data { font-size: 0.85rem; color: #52606d; margin: 0.3rem 0 0.6rem; }
ol.steps { font-size: 1.05rem; line-height: 1.5; padding-left: 1.6rem; }
ol.steps li { margin: 0.45rem 0; }
ol.steps .evidence { color: #52606d; }
dl.glossary { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1rem; font-size: 0.92rem; }
dl.glossary dt { font-weight: 600; }
dl.glossary dd { margin: 0; }
dl.glossary dt:target, dl.glossary dt:target + dd { background: #fff3bf; }
details.more { margin-top: 0.6rem; }
details.more summary { cursor: pointer; color: #1c7ed6; }
.explorer select, .explorer input { font: inherit; max-width: 100%; padding: 0.2rem; }
.explorer .filters { display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem; margin-bottom: 0.6rem; }
.explorer-summary { margin: 0.8rem 0; line-height: 1.6; }
.explorer-summary .text { font-family: ui-monospace, monospace; font-size: 1.4rem; letter-spacing: 0.15rem; }
.explorer-summary .broken { background: #ffc9c9; border-bottom: 2px solid #c92a2a; }
""".strip()


@dataclass(frozen=True, eq=False)
class Section:
    """One titled block of a page; `caption` tells the reader how to read the content."""

    heading: str
    caption: str
    content: Content
    anchor: str | None = None  # a stable id other pages can link to ('page.html#anchor'); default from the heading
    data: Sequence[Download] = ()  # the tables behind the content, written as CSV and linked under the caption


@dataclass(frozen=True, eq=False)
class Page:
    """One HTML file in the report folder; `nav_label` (default: `title`) names it in the nav bar."""

    filename: str
    title: str
    intro: str
    sections: Sequence[Section] = field(default_factory=tuple)
    nav_label: str | None = None


def slug(text: str) -> str:
    """Lower-case ASCII words joined by '-', at most 48 characters (for element ids)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:48].strip("-") or "section"


def _check_pages(pages: Sequence[Page]) -> None:
    if not pages:
        raise ReportError("a report needs at least one page")
    seen: set[str] = set()
    for page in pages:
        if not _FILENAME.match(page.filename):
            raise ReportError(f"page filename {page.filename!r} must look like 'name.html' (a-z, 0-9, _ and -)")
        if page.filename in seen:
            raise ReportError(f"two pages are named {page.filename!r}")
        seen.add(page.filename)
        anchors = [s.anchor for s in page.sections if s.anchor]
        if len(anchors) != len(set(anchors)):
            raise ReportError(f"page {page.filename}: two sections share an anchor ({anchors})")
        if not page.title.strip():
            raise ReportError(f"page {page.filename} has an empty title")
        for section in page.sections:
            if not section.heading.strip() or not section.caption.strip():
                raise ReportError(
                    f"page {page.filename}: every section needs a heading and a caption saying how to read it "
                    f"(heading={section.heading!r})"
                )


def nav_html(current: Page, pages: Sequence[Page], site_title: str) -> str:
    links = []
    for page in pages:
        label = html.escape(page.nav_label or page.title)
        here = ' aria-current="page"' if page.filename == current.filename else ""
        links.append(f'<a href="{page.filename}"{here}>{label}</a>')
    return f'<nav class="site"><span class="brand">{html.escape(site_title)}</span>{"".join(links)}</nav>'


def section_html(section: Section, number: int, page: Page) -> tuple[str, str]:
    """(section id, HTML) for the `number`th section (1-based) of `page`."""
    section_id = section.anchor or f"s{number}-{slug(section.heading)}"
    where = f"{page.filename}, section {number} {section.heading!r}"
    body = section.content.to_html(f"{section.content.kind}-{number}", where)
    data = download_links(section.data)
    return section_id, (
        f'<section id="{section_id}">\n<h2>{html.escape(section.heading)}</h2>\n'
        f"{paragraphs(section.caption, 'caption', page.filename)}\n{data + chr(10) if data else ''}{body}\n</section>"
    )


def render_page(page: Page, pages: Sequence[Page], site_title: str = SITE_TITLE) -> str:
    """The full HTML of `page`, with a nav bar linking every page in `pages`."""
    _check_pages(pages)
    _check_pages([page])
    rendered = [section_html(section, i, page) for i, section in enumerate(page.sections, start=1)]
    needed = {src for s in page.sections for src in s.content.scripts}
    scripts = [f'<script src="{src}"></script>' for src in SCRIPT_ORDER if src in needed]
    toc = ""
    if len(rendered) > 1:
        items = "".join(
            f'<li><a href="#{sid}">{html.escape(s.heading)}</a></li>' for (sid, _), s in zip(rendered, page.sections)
        )
        toc = f'<ul class="toc">{items}</ul>\n'
    head = "\n".join(
        [
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',
            f"<title>{html.escape(page.title)} · {html.escape(site_title)}</title>",
            f"<style>\n{STYLE}\n</style>",
            *scripts,
        ]
    )
    sections = "\n".join(block for _, block in rendered)
    document = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n'
        f"{nav_html(page, pages, site_title)}\n<main>\n<h1>{html.escape(page.title)}</h1>\n"
        f"{paragraphs(page.intro, 'intro', page.filename)}\n{toc}{sections}\n</main>\n</body>\n</html>\n"
    )
    if _REMOTE_LOAD.search(document):
        raise ReportError(f"{page.filename}: rendered HTML loads something from the network (src/href=http...)")
    return document


def build_report(out_dir: str | Path, pages: Sequence[Page], site_title: str = SITE_TITLE) -> list[Path]:
    """Write every page and the shared `assets/` into `out_dir` (atomically, file by file).

    Returns the written paths, assets first, then the CSV downloads. Other files in `out_dir` are left alone.
    """
    _check_pages(pages)
    documents = [(Path(out_dir) / page.filename, render_page(page, pages, site_title)) for page in pages]
    written = write_assets(out_dir)
    written += write_downloads(out_dir, [d for page in pages for s in page.sections for d in s.data])
    files = {rel: text for page in pages for s in page.sections
             for rel, text in getattr(s.content, "files", dict)().items()}  # data a page's script loads
    for rel, text in sorted(files.items()):
        write_text(Path(out_dir) / rel, text)
        written.append(Path(out_dir) / rel)
    for path, document in documents:
        write_text(path, document)
        written.append(path)
    return written
