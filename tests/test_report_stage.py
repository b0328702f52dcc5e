"""The report pages on small synthetic pipeline outputs written in the real formats (tests/report_outputs.py):
each figure and table is checked against the file it comes from. The circuit page has its own tests
(test_report_circuit.py); the real pipeline and a real browser are in test_pipeline_report.py.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plotly.colors import get_colorscale

from palindrome_lens.attribution.nodes import Node
from palindrome_lens.attribution.schemas import SCHEMAS
from palindrome_lens.data.parquet import write_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.report import (
    Figure,
    Links,
    Page,
    ReportError,
    Section,
    Table,
    Text,
    build_report,
    render_page,
)
from palindrome_lens.report.inputs import ReportInputs, load_attribution, load_inputs
from palindrome_lens.report.pages import PAGE_FILES, report_pages, write_report
from palindrome_lens.report.pages.adversarial import by_position_figure
from palindrome_lens.report.pages.evaluation import evaluation_page
from palindrome_lens.report.plots import position_labels
from tests.conftest import run
from tests.report_outputs import (
    BASE_LEAN,
    COMPONENTS,
    HEADS,
    KNOWN_ATTENTION,
    KNOWN_RECOVERY,
    MIRROR_SCORES,
    MODES,
    N_HEADS,
    N_LAYERS,
    N_STRINGS,
    WIDTH,
    built_page,
    figure,
    loss,
    mirror_frame,
    node_loss,
    page,
    save,
    section,
    sources,
    write_activations,
    write_all,
    write_attribution,
    write_evaluation,
    write_training,
    z_of,
)

# --- the pages ----------------------------------------------------------------------------------------


def test_every_page_is_built_with_captions_and_labelled_figures(synthetic_pages, tmp_path: Path) -> None:
    pages = synthetic_pages(n_examples=3, hist_bins=7)  # report_pages(synthetic, 3, 7), shared (conftest.py)
    assert tuple(p.filename for p in pages) == PAGE_FILES
    written = build_report(tmp_path, pages)  # what write_report(tmp_path, synthetic, 3, 7) writes
    assert sorted(path.name for path in written if path.suffix == ".html") == sorted(PAGE_FILES)
    for p in pages:
        assert p.sections, p.filename
        text = GLOSSARY_LINK.sub(r"\1", (tmp_path / p.filename).read_text())  # the caption text, links aside
        assert 'src="http' not in text and "cdn." not in text, p.filename
        for s in p.sections:  # the reader sees each caption right under its own heading
            first = " ".join(s.caption.split("\n\n")[0].split())
            assert f'<h2>{html.escape(s.heading)}</h2>\n<p class="caption">{html.escape(first)}</p>' in text, s.heading
        # Sections share a caption only when their headings differ by a length, a count or an example string:
        # a caption copied onto another kind of figure would say how to read the wrong thing.
        headings_by_caption: dict[str, set[str]] = {}
        for s in p.sections:
            headings_by_caption.setdefault(s.caption, set()).add(re.sub(r"\d+|'[^']*'|\([^)]*\)", "#", s.heading))
        assert all(len(h) == 1 for h in headings_by_caption.values()), (p.filename, headings_by_caption)
        for s in p.sections:  # a heatmap's caption explains red and blue exactly when its colours diverge
            if isinstance(s.content, Figure) and any(isinstance(t, go.Heatmap) for t in s.content.fig.data):
                colours = [colour for _, colour in s.content.fig.layout.coloraxis.colorscale]
                diverging = any(colours == [c for _, c in get_colorscale(name)] for name in ("RdBu_r", "RdYlGn"))
                explains = re.search(r"\bred\b", s.caption, re.IGNORECASE) is not None
                assert explains == diverging, (p.filename, s.heading)
    assert (tmp_path / "assets/plotly.min.js").is_file() and (tmp_path / "assets/circuitsvis.js").is_file()


GLOSSARY_LINK = re.compile(r'<a class="term" href="[^"]*">([^<]*)</a>')


def test_same_inputs_give_byte_identical_pages(synthetic_pages, tmp_path: Path) -> None:
    build_report(tmp_path / "a", synthetic_pages(n_examples=3, hist_bins=7))  # report_pages(synthetic, 3, 7)
    again = load_inputs(write_all(tmp_path / "inputs"))  # rewritten from scratch
    write_report(tmp_path / "b", again, n_examples=3, hist_bins=7)
    for name in PAGE_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def index_html(inputs: ReportInputs) -> str:
    pages = report_pages(inputs, n_examples=3, hist_bins=7)
    return render_page(page(pages, "index.html"), pages)


def test_index_links_every_page_and_the_figures_it_no_longer_repeats_stay_on_their_pages(
        synthetic: ReportInputs, synthetic_pages) -> None:
    pages = synthetic_pages(n_examples=3, hist_bins=7)
    index = page(pages, "index.html")
    links = section(index, "Pages").content
    assert isinstance(links, Links)
    assert [href for href, _, _ in links.items] == list(PAGE_FILES[1:])
    assert not any(s.heading == "Key numbers" for s in index.sections)  # it repeated the verdicts and these pages
    m = synthetic.evaluation.metrics
    d1 = m["distance"]["1"]
    assert f"{100 * d1['accuracy']:.2f}% on the {d1['n']} that differ" in page(pages, "evaluation.html").intro
    assert "within 3e-07" in page(pages, "attribution.html").intro  # the DLA check
    assert "recovers 1 in every layer (1 = exact)" in page(pages, "patching.html").intro  # the patching check
    adv = synthetic.attribution.summary["adversarial"]
    assert f"{adv['n_misclassified']} edits are misclassified" in page(pages, "adversarial.html").intro
    gates = section(page(pages, "circuit.html"), "Faithfulness, completeness and minimality").content.df
    assert "minimality, smallest (1_mlp_out@bos)" in set(gates["quantity"])


def test_index_shows_the_circuit_in_circuit_jsons_own_sentences(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    circuit = json.loads((src.attribution / "circuit.json").read_text())
    before = index_html(load_inputs(src))
    for sentence in circuit["sentences"]:
        assert f"<p>{html.escape(sentence)}</p>" in before
    # Other sentences and nodes in circuit.json: the page follows the file, escaped, and drops the old ones.
    circuit["sentences"] = ["L1H1@bos compares the outer pair <first> & passes it to BOS.", "Nothing else matters."]
    circuit["nodes"] = [n for n in circuit["nodes"] if n["name"] != "L0H0@chars"]
    circuit["edges"] = [e for e in circuit["edges"] if "L0H0@chars" not in (e["from"], e["to"])]
    circuit["search"]["reached"] = False
    (src.attribution / "circuit.json").write_text(json.dumps(circuit))
    after = index_html(load_inputs(src))
    shown = ("<p>L1H1@bos compares the outer pair &lt;first&gt; &amp; passes it to BOS.</p>\n"
             "<p>Nothing else matters.</p>")
    assert shown in after
    assert "The decision is carried by" in before and "The decision is carried by" not in after
    circuit_page = page(report_pages(load_inputs(src), n_examples=3, hist_bins=7), "circuit.html")
    assert "found 0_mlp_out@chars, L1H0@bos and 1_mlp_out@bos, which keeps" in circuit_page.intro  # the weak search
    assert "; the target was not reached, so no circuit is claimed." in circuit_page.intro


def test_training_curves_come_from_the_dvclive_files(synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "evaluation.html")
    loss = figure(p, "Training loss")
    assert list(loss.data[0].x) == list(range(10, 110, 10)) and loss.layout.yaxis.type == "log"
    assert loss.data[0].y[1] == pytest.approx(0.7 * 0.7)
    acc = figure(p, "Validation accuracy")
    assert acc.data[0].y[-1] == 1.0
    assert "validation first reached 100% at step 60." in p.intro


def test_evaluation_tables_obey_n_examples_and_order_by_margin(synthetic: ReportInputs) -> None:
    inputs = synthetic  # write_all's defaults: 5 misclassified strings
    for n in (1, 3, 50):
        p = built_page(inputs, "evaluation.html", n_examples=n, hist_bins=7)
        wrong = section(p, "Misclassified test strings").content.df
        assert len(wrong) == min(n, 5)
        assert (wrong["margin"] < 0).all() and wrong["margin"].is_monotonic_increasing
        close = section(p, "Closest calls").content.df
        assert len(close) == min(n, N_STRINGS - 5) and (close["margin"] > 0).all() and close["margin"].is_monotonic_increasing
    by_kind = section(p, "Errors by kind").content.df  # 5 errors: a table of counts, not full-height bars
    m = inputs.evaluation.metrics["kind"]
    kinds = ("palindrome", "near1", "near2", "random")
    wrong = inputs.evaluation.predictions.groupby("kind")["correct"].apply(lambda c: int((~c).sum()))
    assert list(by_kind["kind"]) == list(kinds) and list(by_kind["n"]) == [m[k]["n"] for k in kinds]
    assert list(by_kind["misclassified"]) == [wrong[k] for k in kinds] and by_kind["misclassified"].sum() == 5
    assert "Errors by broken pair" in [s.heading for s in p.sections]
    assert "Errors by length" in [s.heading for s in p.sections]  # two lengths in the synthetic run
    one = dataclasses.replace(inputs.evaluation, metrics={**inputs.evaluation.metrics, "length": {"5": {"n": 1, "accuracy": 1.0}}})
    one_length = evaluation_page(one, 3, 7, inputs.training)
    assert "Errors by length" not in [s.heading for s in one_length.sections]
    confusion = z_of(figure(p, "Confusion matrix").data[0])
    c = inputs.evaluation.metrics["confusion"]
    assert confusion.tolist() == [[c["true_palindrome"], c["false_not_palindrome"]],
                                  [c["false_palindrome"], c["true_not_palindrome"]]]
    assert confusion.sum() == N_STRINGS


def test_a_perfect_model_says_so_instead_of_an_empty_table(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, n_wrong=0, n_adv_wrong=0))
    content = section(built_page(inputs, "evaluation.html"), "Misclassified test strings").content
    assert isinstance(content, Text) and f"all {N_STRINGS} test strings are classified correctly" in content.text
    content = section(built_page(inputs, "adversarial.html"), "Misclassified edits").content
    assert isinstance(content, Text) and "None" in content.text


def test_histograms_use_hist_bins_and_show_each_class_as_shares(synthetic: ReportInputs) -> None:
    for bins in (5, 13):
        pages = [built_page(synthetic, name, 3, bins) for name in ("attribution.html", "evaluation.html")]
        s = section(page(pages, "attribution.html"), "Distributions by class")
        assert f"({bins} bins" in s.caption and all(len(trace.x) == bins for trace in s.content.fig.data)
        s = section(page(pages, "evaluation.html"), "Logit difference by kind")
        steps = [t for t in s.content.fig.data if t.mode == "lines"]  # one step line per kind: 2 points per bin
        assert f"of {bins} bins" in s.caption and all(len(t.x) == 2 * bins for t in steps) and len(steps) == 4
        fig = figure(page(pages, "attribution.html"), "Distributions by class")
        assert len(fig.data) == 2 * len(COMPONENTS)  # palindrome + not_palindrome per component
        for trace in fig.data:
            assert len(trace.x) == bins
            assert sum(trace.y) == pytest.approx(1.0)  # every sample of the class lands in a bin
        names_shown = [t.name for t in fig.data if t.showlegend]
        assert names_shown == ["palindrome", "not_palindrome"]
        titles = [a.text for a in fig.layout.annotations][: len(COMPONENTS)]
        assert titles == COMPONENTS


def test_dla_means_are_per_kind_and_sum_to_the_logit_difference(synthetic: ReportInputs, synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "attribution.html")
    means = section(p, "Mean contribution per component").data[0].frame.set_index("component \\ kind")  # the CSV
    dla = synthetic.attribution["dla"]
    expected = dla[(dla["kind"] == "near1") & (dla["component"] == "L1H0")]["value"].mean()
    assert means.loc["L1H0", "near1"] == pytest.approx(expected)
    sums = means.drop(index="logit_diff (sum)").sum()
    assert sums.to_numpy() == pytest.approx(means.loc["logit_diff (sum)"].to_numpy())
    fig = figure(p, "Mean contribution per component")
    assert list(fig.data[0].x) == COMPONENTS


def test_patching_heatmaps_put_each_recovery_in_its_cell(synthetic: ReportInputs, synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "patching.html")
    fig = figure(p, "Residual stream by layer and position, length 5")
    assert len(fig.data) == 5 // 2  # one panel per mismatch pair
    panel = fig.data[1]  # pair 1
    z = z_of(panel)
    assert list(panel.x) == ["BOS", "1", "2", "3", "4", "5", "EOS"]
    assert list(panel.y) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    assert z[1, 2] == KNOWN_RECOVERY
    rows = synthetic.attribution["patching"]
    cell = rows[(rows["length"] == 5) & (rows["activation"] == "resid_pre") & (rows["layer"] == 0)
                & (rows["pos"] == 4) & (rows["mismatch_pos"] == 1)]
    assert z[0, 4] == pytest.approx(float(cell["recovery"].iloc[0]))
    assert fig.layout.annotations[1].text == "pair 1: positions 2↔4 (n=3)"
    heads = figure(p, "Heads by position, length 4")
    assert list(heads.data[0].y) == HEADS and len(heads.data) == 2
    every = figure(p, "Heads, every position at once")
    assert list(every.data[0].x) == ["every broken pair", "pair 0", "pair 1"]
    assert figure(p, "MLPs by position, length 4").data[0].y == ("0_mlp_out", "1_mlp_out")


def test_attention_page_places_patterns_and_shows_example_views(synthetic: ReportInputs, synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "attention.html")
    fig = figure(p, "Mean attention, length 4")
    assert [a.text for a in fig.layout.annotations][:4] == [f"{h} (n=8)" for h in HEADS]
    z = z_of(fig.data[2])  # L1H0
    assert z.shape == (6, 6) and z[1, 4] == KNOWN_ATTENTION
    assert np.allclose(z.sum(axis=1), 1.0)
    mirror = figure(p, "Mirror scores")
    assert [t.name for t in mirror.data] == ["all", "palindrome", "near1", "near2", "random"]
    assert list(mirror.data[0].y) == pytest.approx([MIRROR_SCORES[h] for h in HEADS])
    views = [s for s in p.sections if s.heading.startswith("Example:")]
    assert [s.heading for s in views] == ["Example: 'abcba' (palindrome)", "Example: 'abcbd' (near1)",
                                          "Example: 'abdca' (near2)", "Example: 'cadbb' (random)"]
    view = views[0].content
    assert view.tokens == ["[BOS]", "a", "b", "c", "b", "a", "[EOS]"] and list(view.head_names) == HEADS
    assert view.pattern.shape == (4, 7, 7)
    qk_section = section(p, "Positional QK per head")
    qk = qk_section.content.fig
    assert len(qk.data) == 4 and list(qk.data[0].x) == position_labels(5, 7)  # the longest length, 5
    assert "length 5 (the longest)" in qk.layout.title.text and "longest length, 5" in qk_section.caption
    stored = synthetic.attribution["pos_qk"]
    l1h0 = stored[(stored["length"] == 5) & (stored["component"] == "L1H0")]
    assert z_of(qk.data[2])[3, 1] == l1h0[(l1h0["query_pos"] == 3) & (l1h0["key_pos"] == 1)]["pattern"].item()
    assert z_of(figure(p, "Positional similarity").data[0]).diagonal() == pytest.approx(np.ones(WIDTH))


def test_example_views_match_the_stored_patterns(tmp_path: Path) -> None:
    write_training(tmp_path)
    write_evaluation(tmp_path, 1)
    write_attribution(tmp_path, 1)
    patterns = write_activations(tmp_path)
    inputs = load_inputs(sources(tmp_path))
    assert len(inputs.examples) == 4
    for example in inputs.examples:
        n = len(example.text) + 2  # BOS, characters, EOS; the PAD columns are left out
        stored = patterns[example.example_id].reshape(N_LAYERS * N_HEADS, WIDTH, WIDTH)[:, :n, :n]
        assert np.array_equal(example.pattern, stored.astype(np.float64))
        assert np.allclose(example.pattern.sum(axis=-1), 1.0, atol=1e-5)


def test_missing_patterns_give_a_note_not_a_crash(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, with_patterns=False))
    assert inputs.examples == []
    p = built_page(inputs, "attention.html")
    assert isinstance(section(p, "Example strings").content, Text)


def test_attention_only_model_has_no_mlp_rows(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, attn_only=True))
    assert not [s for s in built_page(inputs, "patching.html").sections if s.heading.startswith("MLPs")]
    acc = figure(built_page(inputs, "ablation.html"), "Accuracy under ablation")
    assert list(acc.data[0].y) == ["none (unablated)", *HEADS]


def test_ablation_page_shows_margin_lost_and_lean_under_each_mode(synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "ablation.html")
    components = ["L0H0", "L0H1", "0_mlp_out", "L1H0", "L1H1", "1_mlp_out"]
    lost = figure(p, "Margin lost per component")
    assert [t.name for t in lost.data] == ["resample", "mean (label-balanced)", "zero (contrast only)"]
    for trace, mode in zip(lost.data, MODES):
        assert list(trace.x) == components
        assert list(trace.y) == pytest.approx([loss(c, mode, False) for c in components])  # -margin_change / base
    assert [shape.y0 for shape in lost.layout.shapes] == [1]  # the constant predictor: all of the margin lost
    lean = figure(p, "Lean per component")
    assert list(lean.data[0].y) == pytest.approx([-0.5 * (i + 1) for i in range(6)])
    assert [shape.y0 for shape in lean.layout.shapes] == [BASE_LEAN]  # the unablated model's lean


def test_ablation_page_shows_every_node_and_the_circuit_against_the_rest(synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "ablation.html")
    nodes = figure(p, "Margin lost per node")
    cells = nodes.data[0]
    assert list(cells.x) == ["bos", "chars", "eos"]
    assert list(cells.y) == ["L0H0 ●", "L0H1", "0_mlp_out ●", "L1H0 ●", "L1H1", "1_mlp_out ●"]
    z = z_of(cells)
    assert z[0, 1] == pytest.approx(0.5) and z[1, 0] == pytest.approx(node_loss(Node(0, "L0H1", "bos")))
    assert np.isnan(z[3, 1])  # a last-layer head has a node only at the readout
    bars = figure(p, "Circuit versus the rest")
    assert list(bars.data[0].x) == ["whole model", "circuit only (every other node ablated)",
                                    "circuit ablated (its nodes ablated)"]
    assert bars.data[0].name == "balanced" and list(bars.data[0].y) == [0.98, 0.95, 0.51]
    assert [shape.y0 for shape in bars.layout.shapes] == [0.5]  # a constant predictor's balanced accuracy
    acc = figure(p, "Accuracy under ablation")
    assert [a.text for a in acc.layout.annotations][:3] == [
        "resample ablation", "mean (label-balanced) ablation", "zero (contrast only) ablation"]
    assert list(acc.data[0].x) == ["all", "palindrome", "near1", "near2", "random", "distance_1", "balanced"]
    z = z_of(acc.data[1])
    assert z[0].tolist() == [1.0] * 7  # unablated row
    assert z[1, 2] == pytest.approx(0.6)  # L0H0 mean-ablated, near1


def test_adversarial_page_lists_wrong_edits_worst_first(synthetic: ReportInputs) -> None:
    p = built_page(synthetic, "adversarial.html", n_examples=2, hist_bins=7)
    wrong = section(p, "Misclassified edits").content.df
    assert wrong["margin"].tolist() == pytest.approx([-0.4, -0.3])
    close = section(p, "Closest calls").content.df
    assert len(close) == 2 and (close["margin"] > 0).all()
    few = section(p, "Fooling edits by broken pair").content.df  # a handful of fooling edits: a table, not bars
    assert few.equals(synthetic.attribution["adversarial_by_position"])
    fooled = by_position_figure(synthetic.attribution["adversarial_by_position"], "n_wrong", "t", "y", False).fig
    assert [t.name for t in fooled.data] == ["length 4", "length 5"] and fooled.layout.showlegend
    assert list(fooled.data[0].x) == ["0", "1"]  # a centre edit of length 5 stays a palindrome: no pair 2
    by_pos = synthetic.attribution["adversarial_by_position"].set_index(["length", "pair_pos"])
    assert list(fooled.data[1].y) == [by_pos.loc[(5, 0), "n_wrong"], by_pos.loc[(5, 1), "n_wrong"]]
    assert by_pos.loc[(4, 0), "n_wrong"] > 0 and math.isclose(fooled.data[0].y[0], by_pos.loc[(4, 0), "n_wrong"])
    hover = fooled.data[0].hovertext[0]
    assert f"{by_pos.loc[(4, 0), 'n_wrong']} wrong of {by_pos.loc[(4, 0), 'n']}" in hover


# --- bad inputs ---------------------------------------------------------------------------------------


def test_missing_or_malformed_inputs_name_the_file_and_the_problem(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    (src.attribution / "mirror.parquet").unlink()
    with pytest.raises(DataFileError, match=r"mirror\.parquet: file not found"):
        load_inputs(src)
    write_table(pa.Table.from_pandas(mirror_frame().drop(columns="mirror_score")), src.attribution / "mirror.parquet")
    with pytest.raises(DataFileError, match=r"mirror\.parquet: column 'mirror_score' is missing"):
        load_inputs(src)
    save(mirror_frame(), src.attribution / "mirror.parquet")
    original = (src.attribution / "summary.json").read_text()
    summary = json.loads(original)
    del summary["circuit_accuracy"]["others_ablated"]["balanced_accuracy"]
    (src.attribution / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DataFileError,
                       match=r"summary\.json: key 'circuit_accuracy\.others_ablated\.balanced_accuracy' is missing"):
        load_inputs(src)
    (src.attribution / "summary.json").write_text(original)
    src.train_loss.write_text("step\tloss\n10\t0.5\n20\tnan\n")
    with pytest.raises(DataFileError, match=r"loss\.tsv: row 3 is not a pair of finite numbers"):
        load_inputs(src)
    src.train_loss.write_text("step\tvalue\n10\t0.5\n")
    with pytest.raises(DataFileError, match=r"loss\.tsv: column 'loss' is missing"):
        load_inputs(src)
    src.train_loss.write_text("step\tloss\n10\t0.5\n")
    src.eval_metrics.write_text("[1, 2]")
    with pytest.raises(DataFileError, match=r"metrics\.json: expected a JSON object"):
        load_inputs(src)
    src.eval_metrics.write_text("{not json")
    with pytest.raises(DataFileError, match=r"metrics\.json: not valid JSON"):
        load_inputs(src)


@pytest.fixture(scope="module")
def attribution_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attribution")
    write_attribution(root, 4)
    return root / "data/attribution"


def broken_copy(directory: Path, tmp_path: Path) -> Path:
    out = tmp_path / "attribution"
    shutil.copytree(directory, out)
    return out


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_attribution_table_is_read_with_its_one_schema(name: str, attribution_dir: Path,
                                                             tmp_path: Path) -> None:
    directory = broken_copy(attribution_dir, tmp_path)
    path = directory / f"{name}.parquet"
    full = pq.read_table(path)
    assert load_attribution(directory)[name].columns.tolist() == SCHEMAS[name].names  # every column, in order
    last = SCHEMAS[name].names[-1]  # the stage's schema, not a list of the columns some page happens to read
    write_table(full.drop_columns([last]), path)
    with pytest.raises(DataFileError, match=rf"{name}\.parquet: column '{last}' is missing"):
        load_attribution(directory)
    first = SCHEMAS[name].names[0]
    wrong = pa.array(["x"] * len(full)) if not pa.types.is_string(full.schema.field(first).type) else pa.array(
        [1.5] * len(full))
    write_table(full.set_column(0, first, wrong), path)
    with pytest.raises(DataFileError, match=rf"{name}\.parquet: column '{first}' has type"):
        load_attribution(directory)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.pop("gates"), r"key 'gates\.faithfulness_target' is missing"),
    (lambda c: c["gates"].pop("edge_floor"), r"key 'gates\.edge_floor' is missing"),
    (lambda c: c["ablation"]["constant_predictor"].pop("balanced_accuracy"),
     r"key 'ablation\.constant_predictor\.balanced_accuracy' is missing"),
    (lambda c: c["edges"][1].pop("via"), r"key 'edges\[1\]\.via' is missing"),
    (lambda c: c["scrubbing"][1]["runs"]["control"].pop("loss_palindrome"),
     r"key 'scrubbing\[1\]\.runs\.control\.loss_palindrome' is missing"),
    (lambda c: c["minimality"]["L1H0@bos"].pop("k"), r"key 'minimality\.L1H0@bos\.k' is missing"),
    (lambda c: c.update(nodes={}), r"key 'nodes' must be a list"),
    (lambda c: c["edges"][0].update({"to": "L9H9@bos"}), r"edges\[0\]\.to is 'L9H9@bos', which is not one of its nodes"),
    (lambda c: c.update(format="palindrome-lens/circuit/v0"), r"format 'palindrome-lens/circuit/v0', expected"),
])
def test_circuit_json_is_checked_and_errors_name_the_key(edit, message: str, attribution_dir: Path,
                                                         tmp_path: Path) -> None:
    directory = broken_copy(attribution_dir, tmp_path)
    circuit = json.loads((directory / "circuit.json").read_text())
    assert load_attribution(directory).circuit == circuit
    edit(circuit)
    (directory / "circuit.json").write_text(json.dumps(circuit))
    with pytest.raises(DataFileError, match=r"circuit\.json: " + message):
        load_attribution(directory)


def test_a_missing_circuit_json_is_named(attribution_dir: Path, tmp_path: Path) -> None:
    directory = broken_copy(attribution_dir, tmp_path)
    (directory / "circuit.json").unlink()
    with pytest.raises(DataFileError, match=r"circuit\.json: file not found"):
        load_attribution(directory)


def test_links_refuse_anything_but_a_local_page(tmp_path: Path) -> None:
    bad = [Page("index.html", "T", "", [Section("Pages", "Links to pages.", Links([("https://x.org/a.html", "x", "")]))])]
    with pytest.raises(ReportError, match="must name a page of this report"):
        build_report(tmp_path, bad)
    assert not any(tmp_path.iterdir())
    good = [Page("index.html", "T", "", [Section("Pages", "Links to pages.", Links([("b.html", "B <b>", "d & e")]))]),
            Page("b.html", "B", "", [Section("Table", "A table.", Table(pd.DataFrame({"a": [1]})))])]
    build_report(tmp_path, good)
    assert '<li><a href="b.html">B &lt;b&gt;</a>: d &amp; e</li>' in (tmp_path / "index.html").read_text()


def test_stage_fails_cleanly_without_its_inputs(repo_copy: Path) -> None:
    proc = run(["python", "-m", "stages.report"], repo_copy, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error in stage report: data/attribution/summary.json: file not found")
    assert not (repo_copy / "reports" / "index.html").exists()


def test_patching_sits_beside_ablation_with_a_measured_cause_per_disagreement(synthetic: ReportInputs, synthetic_pages) -> None:
    p = page(synthetic_pages(3, 7), "patching.html")
    assert p.sections[0].anchor == "account"  # the account comes first, before any heatmap
    table = section(p, "Patching beside ablation, per component").content.df.set_index("component")
    assert table.loc["L1H0", "margin lost, ablated (resample)"] == "40.0%"  # the sentences' rounding rule
    assert table.loc["L1H0", "patched at every position: recovery"] == "10.0%"
    assert table.loc["L1H1", "median per pair"] == "1.0%" and table.loc["layer 1 heads", "at both"] == "n/a"
    assert table.loc["L1H0", "at one position of the broken pair"] == "4.0%"
    text = section(p, "Why patching and ablation differ").content.text
    said = {block.split(":")[0]: block for block in text.split("\n\n")}
    assert set(said) == {"L0H0", "L1H0", "L1H1"}  # 0_mlp_out, L0H1 and 1_mlp_out agree within the gap
    assert "the heads of layer 1 patched together restore 90.0%" in said["L1H0"]
    assert "at one position of the broken pair it restores 4.0% and at both 10.0%" in said["L1H0"]
    assert "the median pair recovers only 1.0%" in said["L1H1"] and "one position" not in said["L1H1"]
    assert "restores 60.0% of the clean answer, yet ablating it loses only 10.0%" in said["L0H0"]
    assert "carry the decision" not in section(p, "Heads, every position at once").caption
    bare = dataclasses.replace(synthetic, attribution=dataclasses.replace(
        synthetic.attribution, summary={**synthetic.attribution.summary, "patching": {
            k: v for k, v in synthetic.attribution.summary["patching"].items() if k != "sets"}}))
    assert "account" not in [s.anchor for s in built_page(bare, "patching.html").sections]
