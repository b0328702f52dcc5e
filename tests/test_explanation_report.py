"""The explain stage's library on the hand-built model (tests/ground_truth.py) in memory, written to disk with the
stage's writer and shown by the report: the page says first which ladder level program.py is and why, prints the
algorithm level whole, draws the ladder and tabulates it, shows where the mechanism says the model breaks and the
graded interventions, one heatmap per pair with its takeaway, and the interchange table; a family with no template
is a page that says so, not a failure; a corrupt or missing constants.json or algorithm level is an error naming
the file."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from ground_truth import ALPHABET, LENGTH, planted_classifier
from hand_worlds import explain_params_and_splits

from palindrome_lens.attribution.adversarial import adversarial_search, choose_palindromes
from palindrome_lens.attribution.per_example import FOUND, MISCLASSIFIED, failure_views
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation import explain, write_explanation
from palindrome_lens.report.code import Code
from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.explanation_inputs import load_explanation
from palindrome_lens.report.explorer import explorer_payload
from palindrome_lens.report.formatting import num
from palindrome_lens.report.html import build_report, render_page
from palindrome_lens.report.inputs import load_inputs
from palindrome_lens.report.pages import report_pages
from palindrome_lens.report.pages.explanation import explanation_page, graded_section, label_sides, lead_text
from palindrome_lens.report.pages.explorer import explorer_page
from tests.report_outputs import write_all

CIRCUIT = {"scrubbing": [{"name": "pair_flags", "after_layer": 0, "keep": {"chars": "pair_match"},
                          "verdict": "supported"}],
           "nodes": [{"name": "0_mlp_out@chars", "component": "0_mlp_out", "layer": 0, "positions": "chars",
                      "role": "circuit"}]}


def params_and_data() -> tuple:
    params, splits = explain_params_and_splits(n_interchange=200)
    tokenizer = Tokenizer(ALPHABET, LENGTH, add_eos=True)
    return params, splits, planted_classifier(tokenizer)


@pytest.fixture(scope="module")
def explained() -> tuple:
    torch.set_num_threads(1)
    params, splits, clf = params_and_data()
    edits = adversarial_search(clf.model, clf.tokenizer, choose_palindromes(splits["test"], 10, 0), 256)
    return clf, explain(clf, CIRCUIT, splits["train"], splits["test"], edits, params.explain, seed=0)


@pytest.fixture(scope="module")
def written(explained: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explained") / "explanation"
    write_explanation(out, explained[1])
    return out


def test_in_memory_the_planted_model_runs_its_program_and_every_variable_aligns(written: Path) -> None:
    summary = json.loads((written / "summary.json").read_text())
    assert summary["runs_program"] and summary["agreement"]["test"]["agreement"] == 1.0
    iia = pd.DataFrame(summary["interchange"])
    aligned, control = iia[iia["kind"] == "aligned"], iia[iia["kind"] == "control"]
    assert (aligned["iia_changed"] == 1.0).all() and (aligned["n_changed"] > 0).all()
    assert (control["iia_changed"] <= 0.5).all() and len(control) == len(aligned) == 2 * (LENGTH // 2)


def section(page, start: str):
    (found,) = [s for s in page.sections if s.heading == start] or [
        s for s in page.sections if s.heading.startswith(start)]
    return found.content


def test_the_page_says_which_level_and_why_then_prints_the_algorithm_whole(written: Path) -> None:
    page = explanation_page(load_explanation(written), n_examples=5)
    assert page.sections[0].heading == "Which program, and why"
    lead = section(page, "Which program, and why")
    assert isinstance(lead, Text) and lead.text.startswith(
        "program.py is the algorithm level of the ladder: the smallest of its 7 levels that passes every gate. It "
        "reads 72 numbers from the model and fits 15, 0.86% of the model's 10,162 parameters.\n\nThe model runs this "
        "program.")
    code = section(page, "The algorithm, as a program")
    assert isinstance(code, Code) and code.source == (written / "programs" / "algorithm.py").read_text()
    assert "def logit_diff(text, pairs=None):" in code.source and "TABLES = {" in code.source  # whole, numbers too
    html = render_page(page, [page])
    assert '<span style="color: #008000; font-weight: bold">def</span>' in html  # highlighted, inline styles
    assert "<pre" in html and len(html.encode()) < 300_000
    heatmaps = section(page, "Mismatch evidence per pair")
    assert isinstance(heatmaps, Figure) and len(heatmaps.fig.data) == LENGTH // 2  # one panel per mirrored pair
    caption = next(s.caption for s in page.sections if s.heading == "Mismatch evidence per pair")
    assert "Matched pairs (the diagonal) average 0 and broken ones 16;" in caption  # the planted evidence
    iia = section(page, "Interchange interventions")
    assert isinstance(iia, Table) and set(iia.df["node"]) == {"blocks.0.hook_resid_post", "0_mlp_out"}
    ladder = section(page, "The ladder, level by level").df.set_index("level")  # the agreement table now
    assert ladder.loc["algorithm", "decisions alike, test / edits"].startswith("100.00% / ")


def test_the_ladder_is_a_figure_on_a_log_axis_and_a_table(written: Path) -> None:
    summary = json.loads((written / "summary.json").read_text())
    page = explanation_page(load_explanation(written), n_examples=5)
    fig = section(page, "The ladder").fig
    sizes = [r["n_read"] + r["n_fitted"] for r in summary["levels"]]
    assert fig.layout.xaxis.type == "log" and all(list(t.x) == sizes for t in fig.data)
    assert len(fig.data) == 5  # three scores, then the graded Spearman of broken and of matched pairs
    assert list(fig.data[1].y) == [r["spearman_edits"] for r in summary["levels"]]
    lines = [(sh.x0, sh.y0) for sh in fig.layout.shapes]
    assert lines.count((summary["n_model"], 0)) == 4  # the model's parameter count, in every panel
    targets = summary["targets"]
    assert {y for _, y in lines} >= {targets["agreement_target"], targets["spearman_target"], targets["r2_target"]}
    table = section(page, "The ladder, level by level").df.set_index("level")
    assert list(table.index) == ["exact", "algorithm", "characters", "combination", "context", "full", "layer_zero"]
    assert table.loc["exact", "gates"] == "fails: the within-class fit"
    assert table.loc["algorithm", "gates"] == "passes" and table.loc["algorithm", "read + fitted"] == "72 + 15"
    assert table.loc["algorithm", "what it adds"] == summary["levels"][1]["adds"]


def test_where_it_breaks_lists_the_search_and_the_strings_that_fool_the_model(written: Path, tmp_path: Path) -> None:
    page = explanation_page(load_explanation(written), n_examples=5)
    search = next(s for s in page.sections if s.heading == "Where it breaks: the failure search")
    assert search.caption.endswith("None of the proposals fools the model.")
    assert list(search.content.df["level"]) == ["algorithm", "characters", "combination", "context", "full",
                                                "layer_zero"]
    assert not any(s.heading.startswith("Where it breaks: the model's worst") for s in page.sections)
    copy = tmp_path / "explanation"
    shutil.copytree(written, copy)
    failures = pd.read_parquet(copy / "failures.parquet")
    wrong = [3, 130, 500]  # two patterns, one string proposed by two levels
    failures.loc[wrong, "model_wrong"] = True
    failures.loc[wrong, "model_logit_diff"] = [1.0, 3.0, 2.0]
    failures.to_parquet(copy / "failures.parquet")
    page = explanation_page(load_explanation(copy), n_examples=5)
    search = next(s for s in page.sections if s.heading == "Where it breaks: the failure search")
    texts = failures.loc[wrong, "text"].tolist()
    assert f"The model misclassifies {len(set(texts))} distinct proposed strings: " in search.caption
    summary = json.loads((copy / "summary.json").read_text())
    assert sum(r["predicted_wrong"] for r in summary["failures"]) == 0 and "No program predicts" in search.caption
    assert "What they lack" not in search.caption  # the planted model leans no way within a class: nothing to measure
    def caption(ceiling: tuple[float, float], levels: dict[str, tuple[float, float]]) -> str:
        summary["ceiling"]["model"]["edits"].update(spearman=ceiling[0], r2=ceiling[1])
        for row in summary["levels"]:
            row.update(dict(zip(("spearman_edits", "r2_edits"), levels.get(row["name"], (0.1, 0.0)))))
        (copy / "summary.json").write_text(json.dumps(summary))
        return next(s for s in explanation_page(load_explanation(copy), n_examples=5).sections
                    if s.heading == "Where it breaks: the failure search").caption

    # the ceiling against the level that follows the model best, not the top one
    text = caption((0.91, 0.75), {"context": (0.89, 0.67), summary["levels"][-1]["name"]: (0.85, 0.6)})
    assert ("What they lack, measured: fed the model's own features" in text
            and "0.91 / 0.75 on the edits, the best level (context) 0.89 / 0.67: the tables average" in text)
    assert "What they lack" not in caption((0.91, 0.75), {"context": (0.92, 0.5)})  # a level as good: nothing lacks
    short = caption((0.75, 0.95), {"context": (0.7, 0.8)})  # the model's own features miss the gate too
    assert "0.75 / 0.95 on the edits, the best level (context) 0.7 / 0.8: the model's own features miss" in short
    top = section(page, "Where it breaks: the model's worst misclassified proposals").df
    assert top["text"].tolist()[0] == texts[1] and set(top["text"]) == set(texts)
    assert top.columns.tolist() == ["text", "true class", "model's logit diff", "program's logit diff", "proposed by",
                                    "pattern"]


def test_the_explorer_opens_on_a_failure_found_from_the_mechanism(explained: tuple, written: Path,
                                                                 tmp_path: Path) -> None:
    """The explain stage's failure views (the planted model run on its misclassified proposals), written and read
    back: the explorer opens on the most confidently wrong one; with none it opens on a misclassified test string."""
    clf, result = explained
    failures = result.failures.copy()
    wrong = [3, 130, 500]  # two patterns, one string proposed by two levels
    failures.loc[wrong, "model_wrong"] = True
    failures.loc[wrong, "model_logit_diff"] = [1.0, 3.0, 2.0]  # non-palindromes: the larger, the more wrong
    circuit = {"search": {"candidates": ["L0H0@chars", "0_mlp_out@chars", "L1H0@bos"], "node_positions": "chars"}}
    views = failure_views(clf, failures, circuit, batch_size=64)
    expected = failures.loc[wrong].sort_values("model_logit_diff", ascending=False).drop_duplicates("text")["text"]
    assert views["example_strings"]["text"].tolist() == expected.tolist()
    assert set(views["example_patching"]["node"]) == set(circuit["search"]["candidates"])
    copy = tmp_path / "explanation"
    write_explanation(copy, dataclasses.replace(result, failures=failures, views=views))
    loaded = load_explanation(copy).views
    assert loaded["example_strings"]["text"].tolist() == expected.tolist()
    attribution = load_inputs(write_all(tmp_path / "synthetic")).attribution
    payload, _, strings = explorer_payload(attribution, loaded)
    start = payload["start"]
    assert payload["sources"][payload["source"][start]] == FOUND and payload["text"][start] == expected.iloc[0]
    assert len(strings) == len(attribution["example_strings"]) + len(expected)
    assert "It opens on the failure found from the mechanism" in explorer_page(attribution, loaded).intro
    assert load_explanation(written).views == {}  # the planted model gets none of its proposals wrong
    for none in ({}, None):
        payload, _, _ = explorer_payload(attribution, none)
        assert payload["sources"][payload["source"][payload["start"]]] == MISCLASSIFIED
        assert FOUND not in payload["sources"]
    assert failure_views(clf, result.failures, circuit, batch_size=64) == {}


def test_graded_interventions_say_which_level_follows_the_model(written: Path) -> None:
    page = explanation_page(load_explanation(written), n_examples=5)
    assert next(s for s in page.sections if s.heading == "Graded interventions").caption.startswith(
        "No level can be scored")  # the planted model ignores which characters a pair holds
    rows = [{"level": level, "kind": kind, "n": 100, "n_above_noise": 40, "noise": 0.1, "spearman": rho,
             "sign_agreement": sign, "control_spearman": 0.02}
            for level, rho, sign in (("exact", 0.0, 0.0), ("characters", 0.5, 0.8), ("full", 0.9, 0.95))
            for kind in ("broken", "matched")]
    (graded,) = graded_section(rows)
    assert "The exact level scores 0 by construction" in graded.caption
    assert ("The full level follows the model best: broken pairs Spearman 0.9, the same sign on 95.0% of the 40 "
            "changes above noise") in graded.caption
    assert len(graded.content.df) == 6


def test_the_index_ends_its_paragraph_with_the_explain_stage_headline(written: Path, tmp_path: Path) -> None:
    sources = dataclasses.replace(write_all(tmp_path), explanation=written)
    pages = report_pages(load_inputs(sources), n_examples=5, hist_bins=10)
    paragraph = section(pages[0], "Every finding, in sentences").text
    headline = json.loads((written / "summary.json").read_text())["headline"]
    assert headline[0].startswith("The model runs this program.") and paragraph.endswith(headline[-1])
    *lines, breaks = section(pages[0], "Verdicts").steps
    assert lines[-1].sentence == "Program: the model runs the compiled program."
    program = json.loads((written / "summary.json").read_text())["program"]
    assert f"it is the ladder's {program['level']} level, {program['n_read'] + program['n_fitted']:,} numbers" \
        in lines[-1].evidence
    assert lines[-1].href == "explanation.html" and "of test strings (the exact palindrome check:" in lines[-1].evidence
    assert breaks.sentence.startswith("Where it breaks:") and breaks.href == "explanation.html#breaks"
    edits, targets = json.loads((written / "summary.json").read_text())["agreement"]["edits"], \
        json.loads((written / "summary.json").read_text())["targets"]
    assert (f"with Spearman {num(edits['spearman'], 3)} and R^2 {num(edits['r2'], 3)} (gates "
            f"{targets['spearman_target']:.3g} and {targets['r2_target']:.3g})") in lines[-1].evidence  # beside the gates
    ladder = next(v for v in lines if v.link_text == "the explanation ladder")  # straight to the algorithm's section
    assert ladder.href == "explanation.html#algorithm" and ladder.sentence.startswith("The algorithm: Each character")
    assert "explanation.html" not in [s.href for s in section(report_pages(load_inputs(write_all(
        tmp_path / "without")), 5, 10)[0], "Verdicts").steps]


def test_a_family_without_template_is_a_page_not_a_failure(tmp_path: Path) -> None:
    params, splits, clf = params_and_data()
    circuit = {"scrubbing": [{"name": "chars", "after_layer": 0, "keep": {"chars": "char"}, "verdict": "supported"}]}
    result = explain(clf, circuit, splits["train"], splits["test"], pd.DataFrame(), params.explain, seed=0)
    write_explanation(tmp_path / "explanation", result)
    assert sorted(p.name for p in (tmp_path / "explanation").iterdir()) == ["summary.json"]
    page = explanation_page(load_explanation(tmp_path / "explanation"), 5)
    assert section(page, "Which program, and why").text == (
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
    shutil.copy(written / "constants.json", copy / "constants.json")
    (copy / "programs" / "algorithm.py").unlink()
    with pytest.raises(DataFileError, match=r"explanation/programs/algorithm\.py: cannot read the program"):
        load_explanation(copy)


@pytest.mark.slow  # a browser
def test_the_page_with_a_program_opens_offline_with_every_figure_drawn(written: Path, tmp_path: Path, browser) -> None:
    page = explanation_page(load_explanation(written), n_examples=5)
    build_report(tmp_path, [page])
    result = browser.open_page(tmp_path / page.filename)
    assert result.problems() == [] and result.network_requests == []
    assert len(result.plots) == 4 and all(result.plots.values())  # the ladder, the scatter, two per-pair heatmaps


def test_two_levels_of_close_size_keep_their_labels_by_their_own_points() -> None:
    # layer_zero (14,513 numbers) scores above full (15,133): its label goes above, full's below, whatever the order
    sizes, scores = [2, 103, 1339, 14513, 15133], [0.0, 0.03, 0.84, 0.92, 0.90]
    assert label_sides(sizes, scores)[3:] == ["top center", "bottom center"]
    assert label_sides(sizes, [0.0, 0.03, 0.84, 0.90, 0.92])[3:] == ["bottom center", "top center"]
    assert label_sides([1, 10], [0.5, 0.5]) == ["top center", "bottom center"] and label_sides([5], [None]) == [
        "top center"]



def test_when_no_level_passes_the_page_says_why_program_py_is_the_level_it_is() -> None:
    """ARENA: no level passes; program.py is layer_zero, no larger than the model, failing as few gates as any."""
    levels = [{"name": "layer_zero", "n_read": 5426, "n_fitted": 33, "n_total": 5459, "spearman_edits": 0.75,
               "failed": ["a", "b", "c", "d"]},
              {"name": "full", "n_read": 42180, "n_fitted": 33, "n_total": 42213, "spearman_edits": 0.72,
               "failed": ["a", "b", "c", "d"]}]
    summary = {"levels": levels, "program_level": "layer_zero", "passing_level": None, "n_model": 8290,
               "sentences": ["No level of the ladder passes the gates."]}
    assert lead_text(summary).startswith(
        "program.py is the layer_zero level of the ladder: no level passes every gate; of the levels beyond the "
        "exact check (the baseline) that are no larger than the model, it fails the fewest gates (4) and, of those, "
        "follows the model best within a class (edits Spearman 0.75). It reads 5,426 numbers from the model and "
        "fits 33, 65.85% of the model's 8,290 parameters.\n\n")
    too_big = lead_text({**summary, "program_level": "full", "n_model": 1000})
    assert "(the baseline), it fails the fewest gates (4)" in too_big and "rather than compressing them" in too_big
    assert "rather than compressing" not in lead_text({**summary, "n_model": 5459})  # as many numbers: not more
