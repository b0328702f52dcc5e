"""The explain stage's library on the hand-built model (tests/ground_truth.py) in memory, written to disk with the
stage's writer and shown by the report: the page carries the gated sentence, the program, one heatmap per pair
and the interchange table; a family with no template is a page that says so, not a failure; a corrupt or
missing constants.json is an error naming the file."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from ground_truth import ALPHABET, LENGTH, planted_classifier

from palindrome_lens.attribution.adversarial import adversarial_search, choose_palindromes
from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation import explain, write_explanation
from palindrome_lens.params import validate
from palindrome_lens.report.code import Code
from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.explanation_inputs import load_explanation
from palindrome_lens.report.html import build_report, render_page
from palindrome_lens.report.inputs import load_inputs
from palindrome_lens.report.pages import report_pages
from palindrome_lens.report.pages.explanation import explanation_page
from tests.conftest import tiny_params
from tests.report_outputs import write_all

CIRCUIT = {"scrubbing": [{"name": "pair_flags", "after_layer": 0, "keep": {"chars": "pair_match"},
                          "verdict": "supported"}],
           "nodes": [{"name": "0_mlp_out@chars", "component": "0_mlp_out", "layer": 0, "positions": "chars",
                      "role": "circuit"}]}


def params_and_data() -> tuple:
    raw = tiny_params()
    raw["data"].update({"alphabet": ALPHABET, "lengths": [LENGTH], "n_train": 300, "n_val": 20, "n_test": 200})
    raw["explain"].update({"n_fit": 300, "n_interchange": 200, "n_contexts": 2})
    params = validate(raw)
    splits = {name: t.to_pandas() for name, t in generate_splits(params.data, seed=0).items()}
    tokenizer = Tokenizer(ALPHABET, LENGTH, add_eos=True)
    return params, splits, planted_classifier(tokenizer)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    params, splits, clf = params_and_data()
    edits = adversarial_search(clf.model, clf.tokenizer, choose_palindromes(splits["test"], 10, 0), 256)
    result = explain(clf, CIRCUIT, splits["train"], splits["test"], edits, params.explain, seed=0)
    out = tmp_path_factory.mktemp("explained") / "explanation"
    write_explanation(out, result)
    return out


def test_in_memory_the_planted_model_runs_its_program_and_every_variable_aligns(written: Path) -> None:
    summary = json.loads((written / "summary.json").read_text())
    assert summary["runs_program"] and summary["agreement"]["test"]["agreement"] == 1.0
    iia = pd.DataFrame(summary["interchange"])
    aligned, control = iia[iia["kind"] == "aligned"], iia[iia["kind"] == "control"]
    assert (aligned["iia_changed"] == 1.0).all() and (aligned["n_changed"] > 0).all()
    assert (control["iia_changed"] <= 0.5).all() and len(control) == len(aligned) == 2 * (LENGTH // 2)


def section(page, start: str):
    (found,) = [s for s in page.sections if s.heading.startswith(start)]
    return found.content


def test_the_page_shows_the_gated_sentence_the_program_and_its_tables(written: Path) -> None:
    page = explanation_page(load_explanation(written), n_examples=5)
    lead = section(page, "The explanation in one paragraph")
    assert isinstance(lead, Text) and lead.text.startswith("The model runs this program.")
    code = section(page, "The program")
    assert isinstance(code, Code) and "def logit_diff(text, pairs=None):" in code.source
    assert "TABLES = {" not in code.source  # the tables are shown as heatmaps, not as numbers
    heatmaps = section(page, "Mismatch evidence per pair")
    assert isinstance(heatmaps, Figure) and len(heatmaps.fig.data) == LENGTH // 2  # one panel per mirrored pair
    iia = section(page, "Interchange interventions")
    assert isinstance(iia, Table) and set(iia.df["node"]) == {"blocks.0.hook_resid_post", "0_mlp_out"}
    figures = section(page, "Agreement with the model").df.set_index("figure")
    assert figures.loc["decisions alike", "test: program"] == "100.0%"
    html = render_page(page, [page])
    assert '<span style="color: #008000; font-weight: bold">def</span>' in html  # highlighted, inline styles


def test_the_index_ends_its_paragraph_with_the_explain_stage_headline(written: Path, tmp_path: Path) -> None:
    sources = dataclasses.replace(write_all(tmp_path), explanation=written)
    pages = report_pages(load_inputs(sources), n_examples=5, hist_bins=10)
    paragraph = section(pages[0], "Every finding, in sentences").text
    headline = json.loads((written / "summary.json").read_text())["headline"]
    assert headline[0].startswith("The model runs this program.") and paragraph.endswith(headline[-1])
    lines = section(pages[0], "Verdicts").steps
    assert lines[-1].sentence == "Program: the model runs the compiled program."
    assert lines[-1].href == "explanation.html" and "of test strings (the exact palindrome check:" in lines[-1].evidence
    assert "explanation.html" not in [s.href for s in section(report_pages(load_inputs(write_all(
        tmp_path / "without")), 5, 10)[0], "Verdicts").steps]


def test_a_family_without_template_is_a_page_not_a_failure(tmp_path: Path) -> None:
    params, splits, clf = params_and_data()
    circuit = {"scrubbing": [{"name": "chars", "after_layer": 0, "keep": {"chars": "char"}, "verdict": "supported"}]}
    result = explain(clf, circuit, splits["train"], splits["test"], pd.DataFrame(), params.explain, seed=0)
    write_explanation(tmp_path / "explanation", result)
    assert sorted(p.name for p in (tmp_path / "explanation").iterdir()) == ["summary.json"]
    page = explanation_page(load_explanation(tmp_path / "explanation"), 5)
    assert section(page, "The explanation in one paragraph").text == (
        "No program: no program template for the characters family yet.")
    render_page(page, [page])


def test_corrupt_or_missing_constants_name_the_file(written: Path, tmp_path: Path) -> None:
    copy = tmp_path / "explanation"
    shutil.copytree(written, copy)
    (copy / "constants.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataFileError, match=r"explanation/constants\.json: key 'family' is missing"):
        load_explanation(copy)
    (copy / "constants.json").unlink()
    with pytest.raises(DataFileError, match=r"explanation/constants\.json: the explanation's constants .*not found"):
        load_explanation(copy)


@pytest.mark.slow  # a browser
def test_the_page_with_a_program_opens_offline_with_every_figure_drawn(written: Path, tmp_path: Path, browser) -> None:
    page = explanation_page(load_explanation(written), n_examples=5)
    build_report(tmp_path, [page])
    result = browser.open_page(tmp_path / page.filename)
    assert result.problems() == [] and result.network_requests == []
    assert len(result.plots) == 3 and all(result.plots.values())  # the scatter and the two per-pair heatmaps
