"""The report pages of the synthetic outputs opened in headless Chromium with the network cut (tests/browser.py):
the circuit graph draws exactly the circuit's nodes and above-floor edges with one label per edge and no two
node labels overlapping on the page, every CSV link resolves to a file that parses, the explorer's picker
changes its plots, the provenance names the commit, every glossary link lands on an entry, and every page is
a few MB at most."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pandas as pd
import pytest

from palindrome_lens.report.inputs import load_inputs
from palindrome_lens.report.pages import PAGE_FILES, write_report
from tests.browser import Browser
from tests.report_outputs import CIRCUIT, COMMIT, write_all
from tests.test_report_circuit import DRAWN, DRAWN_INPUTS

pytestmark = pytest.mark.slow
MAX_PAGE_BYTES = 300_000
# Edges like the default run's: four nearly parallel edges from 0_mlp_out@chars into two reader heads stacked in one
# cell, both heads into the logits and the layer-1 MLP (added to the crowded fixture).
CROWDING = [("0_mlp_out@chars", "L1H1@bos", "k", 0.12), ("L1H1@bos", "logits", "logits", 0.11),
            ("L1H1@bos", "1_mlp_out@bos", "mlp_in", 0.1), ("embed@chars", "0_mlp_out@chars", "mlp_in", 0.19)]

_GRAPH_JS = """
const div = document.querySelector(arguments[0] + ' .plotly-graph-div');
const named = Array.from(div.querySelectorAll('g.annotation')).map(g => {
  const a = div.layout.annotations[Number(g.getAttribute('data-index'))];
  const r = g.querySelector('.annotation-text-g').getBoundingClientRect();
  return {name: a.name || '', box: [r.left, r.top, r.right, r.bottom]};
});
return {nodes: div.data.filter(t => t.meta && t.meta.node).flatMap(t => t.meta.node),
        edges: div.data.filter(t => t.meta && t.meta.edge).map(t => t.meta.edge),
        hidden: div.data.filter(t => t.meta && t.meta.below && t.visible === 'legendonly').length,
        labels: named};
"""
# Every edge's drawn points and every node marker, in page pixels (plotly's own axis mapping), beside the labels.
_GEOMETRY_JS = """
const div = document.querySelector(arguments[0] + ' .plotly-graph-div');
const box = div.getBoundingClientRect(), L = div._fullLayout, xa = L.xaxis, ya = L.yaxis;
const px = (x, y) => [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
const edges = div.data.filter(t => t.meta && t.meta.edge).map(t => ({
  key: t.meta.edge, points: Array.from(t.x).map((x, i) => px(x, t.y[i]))}));
const nodes = div.data.filter(t => t.meta && t.meta.node).flatMap(t => Array.from(t.x).map((x, i) => px(x, t.y[i])));
return {edges: edges, nodes: nodes, radius: div.data.find(t => t.meta && t.meta.node).marker.size / 2};
"""
_EXPLORER_JS = """
const plot = document.querySelector('[data-view="dla"]'), patch = document.querySelector('[data-view="patching"]');
return {value: document.getElementById('explorer-pick').value, title: plot.layout.title.text,
        dla: Array.from(plot.data[0].y), patching: Array.from(patch.data[0].y),
        summary: document.querySelector('[data-view="summary"]').innerText,
        heads: document.querySelectorAll('[data-view="attention"] > div').length};
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(out, load_inputs(write_all(tmp_path_factory.mktemp("inputs"))), n_examples=3, hist_bins=7)
    return out


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic circuit plus L0H1@chars and L1H1@bos, so two heads share a cell of the graph twice."""
    src = write_all(tmp_path_factory.mktemp("crowded"))
    circuit = json.loads((src.attribution / "circuit.json").read_text())
    circuit["nodes"] += [{"name": "L0H1@chars", "component": "L0H1", "layer": 0, "positions": "chars",
                          "role": "circuit"},
                         {"name": "L1H1@bos", "component": "L1H1", "layer": 1, "positions": "bos", "role": "circuit"}]
    circuit["edges"] += [{"from": "L0H1@chars", "to": "L1H0@bos", "via": "v", "effect": 0.4, "n_pairs": 6,
                          "pair_median": 0.2},
                         {"from": "0_mlp_out@chars", "to": "L1H1@bos", "via": "v", "effect": 0.3, "n_pairs": 6,
                          "pair_median": 0.15}]
    circuit["edges"] += [{"from": a, "to": b, "via": via, "effect": e, "n_pairs": 6, "pair_median": e / 2}
                         for a, b, via, e in CROWDING]
    (src.attribution / "circuit.json").write_text(json.dumps(circuit))
    out = tmp_path_factory.mktemp("crowded-report")
    write_report(out, load_inputs(src), n_examples=3, hist_bins=7)
    return out


def overlapping(boxes: dict[str, list[float]]) -> list[tuple[str, str]]:
    names = sorted(boxes)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if boxes[a][0] < boxes[b][2] and boxes[b][0] < boxes[a][2]
            and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]]


def test_every_page_opens_offline_and_stays_small(browser: Browser, report: Path) -> None:
    for name in PAGE_FILES:
        result = browser.open_page(report / name)
        assert result.problems() == [] and result.network_requests == [], (name, result.problems())
        assert all(result.plots.values()) and all(result.attention_views.values()), name
        assert (report / name).stat().st_size < MAX_PAGE_BYTES, name


@pytest.mark.parametrize("name", ["index.html", "circuit.html"])
def test_the_graph_draws_the_circuit_with_one_label_per_edge_and_no_overlapping_node_labels(
        browser: Browser, report: Path, name: str) -> None:
    assert browser.open_page(report / name).problems() == []
    drawn = browser.driver.execute_script(_GRAPH_JS, "#graph")
    assert sorted(drawn["nodes"]) == sorted([*DRAWN_INPUTS, *CIRCUIT, "logits"])
    assert set(drawn["edges"]) == DRAWN and drawn["hidden"] > 0
    edge_labels = [label["name"][5:] for label in drawn["labels"] if label["name"].startswith("edge:")]
    assert sorted(edge_labels) == sorted(DRAWN)  # one label per drawn edge, none for the hidden ones
    nodes = {label["name"][5:]: label["box"] for label in drawn["labels"] if label["name"].startswith("node:")}
    assert set(nodes) == {*DRAWN_INPUTS, *CIRCUIT, "logits"}
    assert all(box[2] - box[0] > 10 and box[3] - box[1] > 10 for box in nodes.values())  # drawn, measured
    assert overlapping(nodes) == []


def covers(box: list[float], point: list[float], pad: float = 0.0) -> bool:
    return box[0] - pad < point[0] < box[2] + pad and box[1] - pad < point[1] < box[3] + pad


def label_crossings(drawn: dict, geometry: dict) -> list[tuple[str, str]]:
    """(label, what it covers) for every edge label that covers a node marker or a point of another edge."""
    out = []
    for label in drawn["labels"]:
        if label["name"].startswith("edge:"):
            box = label["box"]
            out += [(label["name"], "a node") for p in geometry["nodes"] if covers(box, p, geometry["radius"])]
            out += [(label["name"], e["key"]) for e in geometry["edges"] if e["key"] != label["name"][5:]
                    and any(covers(box, p) for p in e["points"])]
    return out


@pytest.mark.parametrize("which", ["report", "crowded"])
def test_no_edge_label_covers_a_node_or_another_edge(browser: Browser, which: str,
                                                     request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(which)
    assert browser.open_page(folder / "circuit.html").problems() == []
    drawn = browser.driver.execute_script(_GRAPH_JS, "#graph")
    geometry = browser.driver.execute_script(_GEOMETRY_JS, "#graph")
    assert len(geometry["edges"]) == len(drawn["edges"]) > 0 and len(geometry["nodes"]) > 0
    assert label_crossings(drawn, geometry) == []


def test_node_labels_do_not_overlap_when_nodes_share_a_cell(browser: Browser, crowded: Path) -> None:
    assert browser.open_page(crowded / "circuit.html").problems() == []
    drawn = browser.driver.execute_script(_GRAPH_JS, "#graph")
    nodes = {label["name"][5:]: label["box"] for label in drawn["labels"] if label["name"].startswith("node:")}
    assert {"L0H0@chars", "L0H1@chars", "L1H0@bos", "L1H1@bos"} <= set(nodes)
    assert overlapping(nodes) == []
    edges = [label["name"][5:] for label in drawn["labels"] if label["name"].startswith("edge:")]
    assert sorted(edges) == sorted(drawn["edges"]) and len(edges) == len(DRAWN) + 2 + len(CROWDING)


def test_every_csv_link_resolves_to_a_file_that_parses(browser: Browser, report: Path) -> None:
    checked = set()
    for name in PAGE_FILES:
        browser.open_page(report / name)
        hrefs = browser.driver.execute_script(
            "return Array.from(document.querySelectorAll('a[download]')).map(a => a.href)")
        for href in hrefs:
            assert href.startswith("file://") and href.endswith(".csv"), (name, href)
            frame = pd.read_csv(Path(href.removeprefix("file://")))
            assert len(frame.columns) >= 2 and len(frame) >= 1, href
            checked.add(Path(href).name)
    assert len(checked) >= 20


def test_the_explorer_opens_on_a_misclassified_string_and_its_picker_changes_the_plots(
        browser: Browser, report: Path) -> None:
    assert browser.open_page(report / "explorer.html").problems() == []
    driver = browser.driver
    first = driver.execute_script(_EXPLORER_JS)
    assert first["value"] == "0" and "misclassified test string" in first["summary"] and "wrong" in first["summary"]
    assert first["heads"] == 1 and len(first["dla"]) == 9 and len(first["patching"]) > 0
    option = driver.execute_script(  # filter to one kind: the list and the figures follow
        "const g = document.getElementById('explorer-group');"
        "g.value = Array.from(g.options).find(o => o.text === 'kind near2').value;"
        "g.dispatchEvent(new Event('change'));"
        "return document.getElementById('explorer-pick').value;")
    driver.execute_script("return new Promise(r => setTimeout(r, 300))")
    after = driver.execute_script(_EXPLORER_JS)
    assert after["value"] == option and after["title"] != first["title"] and after["dla"] != first["dla"]
    assert after["patching"] != first["patching"] and "kind near2" in after["summary"]
    assert after["heads"] == 1  # the attention view was drawn again, in a fresh element
    counts = driver.execute_script(  # a broken pair and a margin range narrow the list; every listed string fits
        "const set = (id, v) => { const e = document.getElementById(id); e.value = v;"
        " e.dispatchEvent(new Event('change')); };"
        "set('explorer-group', ''); const all = document.getElementById('explorer-pick').options.length;"
        "set('explorer-pair', '0'); const pair = Array.from(document.getElementById('explorer-pick').options);"
        "set('explorer-pair', ''); set('explorer-max', '0');"
        "const wrong = Array.from(document.getElementById('explorer-pick').options).map(o => o.text);"
        "return {all: all, pair: pair.map(o => o.text.split(' ')[0]), wrong: wrong};")
    assert 0 < len(counts["pair"]) < counts["all"] and all(t[0] != t[-1] for t in counts["pair"])
    assert 0 < len(counts["wrong"]) < counts["all"] and all("WRONG" in t for t in counts["wrong"])
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_the_provenance_names_the_commit_and_every_glossary_link_lands(browser: Browser, report: Path) -> None:
    browser.open_page(report / "index.html")
    text = browser.driver.execute_script("return document.getElementById('provenance').innerText")
    assert COMMIT[:12] in text and "a <b>test</b> commit" in text  # shown as text, not markup
    entries = set(browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('dl.glossary dt')).map(d => d.id)"))
    linked = 0
    for name in PAGE_FILES:
        browser.open_page(report / name)
        targets = browser.driver.execute_script(
            "return Array.from(document.querySelectorAll('a.term')).map(a => a.getAttribute('href'))")
        assert all(re.sub(r"^(index\.html)?#", "", t) in entries for t in targets), name
        linked += len(targets)
    assert linked > 50


def test_the_screenshot_script_writes_a_full_page_png_1400_px_wide(browser: Browser, report: Path,
                                                                    tmp_path: Path) -> None:
    from scripts.screenshots import capture

    target = tmp_path / "index.png"
    assert capture(browser, report / "index.html", target, 1400) == []
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    page_height = browser.driver.execute_script("return document.documentElement.scrollHeight")
    assert width == 1400 and height == page_height > 2000  # the whole page, not one screen
