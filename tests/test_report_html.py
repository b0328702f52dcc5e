"""Offline HTML: the report page builder (palindrome_lens.report) and DVC's plots template.

The browser tests open pages from disk in headless Chromium with the network cut (tests/browser.py)
and fail on any console error or any figure that did not draw. They skip only when chromium or
chromedriver cannot be found (`make browser` installs both on Debian).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from palindrome_lens.report import (
    CIRCUITSVIS_JS,
    PLOTLY_JS,
    AttentionView,
    Figure,
    Page,
    ReportError,
    Section,
    Table,
    Text,
    build_report,
    label_figure,
    missing_labels,
    render_page,
)
from tests.browser import Browser
from tests.conftest import ROOT, run

EVIL = '<script>alert("x")</script> & <b>bold</b>'
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def sample_pages() -> list[Page]:
    """A small three-page report using every kind of content."""
    rng = np.random.default_rng(0)
    bars = label_figure(go.Figure(go.Bar(x=["palindrome", "near1", "near2", "random"], y=[0.99, 0.9, 0.95, 1.0])),
                        "Accuracy by kind", "example kind", "accuracy")
    grid = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("layer 0", "layer 1"))
    for col in (1, 2):
        grid.add_trace(go.Heatmap(z=rng.normal(size=(2, 12)), coloraxis="coloraxis"), row=1, col=col)
    label_figure(grid, "Logit attribution per head and position", "position", "head", color_title="logit diff")
    table = pd.DataFrame({"kind": ["palindrome", "near1", EVIL], "n": [500, 300, 1],
                          "accuracy": [0.998765, 0.91, float("nan")]})
    pattern = rng.dirichlet(np.ones(7), size=(2, 7))  # (heads, dest, src), rows sum to 1
    tokens = ["[BOS]", "a", "b", "c", "b", "a", "[EOS]"]
    return [
        Page("index.html", "Overview", f"What the model does.\n\nEscaped: {EVIL}", [
            Section("Results", "One row per example kind; accuracy on the test set.", Table(table)),
            Section("Notes", "Free text.", Text(f"line one\n  indented {EVIL}", preformatted=True)),
        ], nav_label="Home"),
        Page("figures.html", "Figures", "Plots.", [
            Section("Accuracy", "Taller bars are better; 1.0 is perfect.", Figure(bars)),
            Section(f"Heads {EVIL}", "Red pushes towards 'palindrome', blue away.", Figure(grid)),
        ]),
        Page("attention.html", "Attention", "Attention patterns for one input.", [
            Section("Layer 0", "Rows are query positions, columns key positions; darker is more attention.",
                    AttentionView(pattern, tokens, head_names=["L0H0", "L0H1"])),
        ]),
    ]


def html_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.html"))


def all_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    build_report(out, sample_pages())
    return out


# --- the builder, without a browser ---------------------------------------------------------------


def test_build_writes_pages_and_assets_once(report_dir: Path) -> None:
    assert sorted(all_bytes(report_dir)) == [
        "assets/circuitsvis.js", "assets/explorer.js", "assets/plotly.min.js", "attention.html", "figures.html",
        "index.html"]
    figures = (report_dir / "figures.html").read_text()
    assert figures.count(f'<script src="{PLOTLY_JS}"></script>') == 1
    assert "Plotly.newPlot" in figures and len(figures) < 200_000  # plotly.js is not inlined
    assert CIRCUITSVIS_JS not in figures and PLOTLY_JS not in (report_dir / "attention.html").read_text()


def test_no_page_loads_anything_from_the_network(report_dir: Path) -> None:
    for page in html_files(report_dir):
        text = page.read_text()
        assert 'src="http' not in text and REMOTE.search(text) is None, page.name


def test_building_twice_is_byte_identical(tmp_path: Path, report_dir: Path) -> None:
    build_report(tmp_path / "again", sample_pages())
    assert all_bytes(tmp_path / "again") == all_bytes(report_dir)
    build_report(tmp_path / "again", sample_pages())  # over an existing build
    assert all_bytes(tmp_path / "again") == all_bytes(report_dir)
    # A fresh interpreter with another hash seed (as a DVC stage would be) gives the same bytes too.
    code = f"from tests.test_report_html import *; build_report({str(tmp_path / 'other')!r}, sample_pages())"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert all_bytes(tmp_path / "other") == all_bytes(report_dir)


def test_user_text_is_escaped_everywhere(report_dir: Path) -> None:
    for page in html_files(report_dir):
        assert "<script>alert" not in page.read_text(), page.name
    index = (report_dir / "index.html").read_text()
    evil = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
    assert evil in index
    cells = [(text, "num" in classes.split())
             for classes, text in re.findall(r'<td class="([^"]*)"\s*>([^<]*)</td>', index)]
    # Numbers to 4 significant digits and marked `num` (aligned right); text and the NaN cell (blank) are not.
    assert cells == [("palindrome", False), ("500", True), ("0.9988", True), ("near1", False), ("300", True),
                     ("0.91", True), (evil, False), ("1", True), ("", False)]


def test_nav_links_every_page_and_marks_the_current_one(report_dir: Path) -> None:
    for page in html_files(report_dir):
        nav = re.search(r'<nav class="site">.*?</nav>', page.read_text()).group(0)
        assert re.findall(r'href="([^"]+)"', nav) == ["index.html", "figures.html", "attention.html"]
        assert re.findall(r'<a href="([^"]+)" aria-current="page">', nav) == [page.name]
    assert '<a href="index.html" aria-current="page">Home</a>' in (report_dir / "index.html").read_text()


def test_attention_view_is_unmasked_and_has_fixed_ids(report_dir: Path) -> None:
    text = (report_dir / "attention.html").read_text()
    assert '<div id="attn-1" class="circuitsvis"></div>' in text
    assert 'CircuitsVis.render("attn-1", CircuitsVis.AttentionHeads, {' in text
    assert '"maskUpperTri":false' in text and "circuits-vis-" not in text


def test_figures_must_have_a_title_and_axis_labels() -> None:
    bare = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    assert missing_labels(bare) == ["title", "xaxis title", "yaxis title"]
    with pytest.raises(ReportError, match="missing title, xaxis title, yaxis title"):
        Figure(bare)
    bare.update_layout(title_text="t")
    bare.update_xaxes(title_text="x")
    with pytest.raises(ReportError, match="yaxis title"):
        Figure(bare)
    assert missing_labels(label_figure(bare, "t", y_title="y")) == []
    pie = go.Figure(go.Pie(values=[1, 2]))
    assert missing_labels(label_figure(pie, "share")) == []  # no cartesian axes to label


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ([Page("../x.html", "T", "")], "must look like"),
        ([Page("a.html", "T", ""), Page("a.html", "U", "")], "two pages"),
        ([Page("a.html", "T", "", [Section("H", " ", Text("t"))])], "caption"),
        ([Page("a.html", "T", "", [Section("H", "c", AttentionView(np.ones((2, 3, 3)), ["a", "b"]))])],
         r"\(heads, 2, 2\)"),
        ([Page("a.html", "T", "", [Section("H", "c", AttentionView(np.full((3, 3), np.nan), list("abc")))])],
         "NaN"),
    ],
)
def test_bad_pages_are_refused_with_a_clear_message(tmp_path: Path, pages: list[Page], message: str) -> None:
    with pytest.raises(ReportError, match=message):
        build_report(tmp_path, pages)
    assert not any(tmp_path.iterdir())  # nothing written


def test_render_page_is_a_pure_function() -> None:
    pages = sample_pages()
    assert render_page(pages[1], pages) == render_page(sample_pages()[1], sample_pages())


# --- the builder's pages in a real browser --------------------------------------------------------


@pytest.mark.slow
def test_every_page_renders_offline_without_console_errors(browser: Browser, report_dir: Path) -> None:
    expected = {"index.html": (0, 0), "figures.html": (2, 0), "attention.html": (0, 1)}
    for name, (n_plots, n_views) in expected.items():
        result = browser.open_page(report_dir / name)
        assert result.problems() == [], name
        assert (len(result.plots), len(result.attention_views)) == (n_plots, n_views), name
        assert all(not src.startswith(("http:", "https:", "//")) for src in result.script_srcs), name


@pytest.mark.slow
def test_harness_catches_network_use_js_errors_and_undrawn_plots(browser: Browser, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,">'
        '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script></head><body>'
        '<div id="p" class="plotly-graph-div"></div><div id="c" class="circuitsvis"></div>'
        '<script>throw new Error("boom")</script></body></html>'
    )
    result = browser.open_page(page, timeout=3)
    assert result.network_requests == ["https://cdn.jsdelivr.net/npm/vega@5"]
    assert any("cdn.jsdelivr.net" in message for message in result.console_errors), result.console_errors
    assert any("boom" in message for message in result.console_errors), result.console_errors
    assert result.plots == {"p": False} and result.attention_views == {"c": False}
    # fetch() fails too: the network really is cut, not merely slow.
    outcome = browser.driver.execute_async_script(
        "const done = arguments[0]; fetch('http://example.com/').then(() => done('loaded'), e => done('failed'));"
    )
    assert outcome == "failed"


# --- `dvc plots show` with the vendored Vega template ---------------------------------------------

TEMPLATE = ROOT / ".dvc" / "plots_template.html"


def test_plots_template_is_configured_and_self_contained() -> None:
    text = TEMPLATE.read_text()
    assert "{plot_divs}" in text and "{scripts}" not in text  # DVC's CDN tags go into {scripts}
    assert 'src="http' not in text and "sourceMappingURL" not in text
    for name in ("vega@5", "vega-lite@5", "vega-embed@6"):
        assert f"/* {name}." in text
    assert "html_template = plots_template.html" in (ROOT / ".dvc" / "config").read_text()


def make_plots_repo(repo: Path, with_template: bool) -> Path:
    repo.mkdir()
    (repo / "loss.tsv").write_text("step\tloss\n0\t1.0\n1\t0.5\n2\t0.25\n3\t0.2\n")
    pairs = [("true", "true"), ("true", "false"), ("false", "false"), ("false", "false")]
    (repo / "confusion.json").write_text(json.dumps([{"actual": a, "predicted": p} for a, p in pairs]))
    (repo / "by_kind.json").write_text(json.dumps([{"kind": "near1", "accuracy": 0.9}, {"kind": "random", "accuracy": 1}]))
    (repo / "dvc.yaml").write_text(  # the three templates this project's dvc.yaml uses
        "plots:\n  - loss.tsv:\n      x: step\n      y: loss\n"
        "  - confusion.json:\n      template: confusion\n      x: predicted\n      y: actual\n"
        "  - by_kind.json:\n      template: bar_horizontal\n      x: accuracy\n      y: kind\n"
    )
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    if with_template:
        shutil.copy(TEMPLATE, repo / ".dvc" / "plots_template.html")
        run(["dvc", "config", "plots.html_template", "plots_template.html"], repo)
    run(["dvc", "plots", "show", "-o", "out"], repo)
    return repo / "out" / "index.html"


def test_dvc_default_template_would_need_the_network(tmp_path: Path) -> None:
    assert 'src="https://cdn.jsdelivr.net' in make_plots_repo(tmp_path / "repo", with_template=False).read_text()


@pytest.mark.slow
def test_dvc_plots_show_renders_offline(browser: Browser, tmp_path: Path) -> None:
    html = make_plots_repo(tmp_path / "repo", with_template=True)
    text = html.read_text()
    assert 'src="http' not in text and "vegaEmbed('#loss_tsv'" in text
    result = browser.open_page(html)
    assert result.problems() == []
    assert result.vega_views == {"loss_tsv": True, "confusion_json": True, "by_kind_json": True}
