"""The index's first screen and what every page shares, on the synthetic outputs (tests/report_outputs.py): the
algorithm steps and their gates, the task in plain words, provenance (also collected from a real git checkout),
the glossary and the captions that link to it, the CSV downloads, and the wording rules (each definition said
once, percentages that differ read differently, the pattern in the failures named)."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from palindrome_lens.report import Page, build_report, render_page
from palindrome_lens.report.algorithm import STEPS, algorithm_steps
from palindrome_lens.report.content import Steps
from palindrome_lens.report.explanation_inputs import ExplanationInputs
from palindrome_lens.report.failures import failure_pattern
from palindrome_lens.report.formatting import pct, pcts
from palindrome_lens.report.glossary import TERMS, link_terms
from palindrome_lens.report.inputs import ReportInputs, load_inputs
from palindrome_lens.report.pages import PAGE_FILES, report_pages
from palindrome_lens.report.pages.index import failures_verdict, ladder_algorithm, verdict_lines
from palindrome_lens.report.provenance import collect_provenance, flatten_params
from tests.conftest import ROOT, commit_all, run
from tests.report_outputs import COMMIT, PARAMS, built_page, page, section, write_all

# Words a reader meets on the pages that need a definition (independent of the glossary's own list): if a page
# uses one, the glossary must define it.
JARGON = {
    "logit difference": "logit difference", "margin": "margin", "lean": "lean", "readout": "readout",
    "class-balanced": "class-balanced", "balanced accuracy": "class-balanced", "mirrored pair": "mirrored pair",
    "mirror score": "mirror score", "recovery": "recovery", "path patching": "path patching",
    "edge floor": "edge floor", "resample": "resample ablation", "faithfulness": "faithfulness",
    "completeness gap": "completeness gap", "minimality": "minimality", "causal scrubbing": "causal scrubbing",
    "control scrub": "control scrub", "constant predictor": "constant predictor", "composition score":
    "composition score", "positional QK": "positional QK", "DLA": "direct logit attribution",
    "counterpart": "counterpart", "@chars": "node", "example pair": "example pair", "distance": "distance",
    "fooling edit": "single edit", "loss recovered": "loss recovered", "zero ablation": "zero ablation",
}
LINK = re.compile(r'<a class="term" href="(index\.html)?#(g-[a-z0-9-]+)">')


@pytest.fixture(scope="module")
def written(synthetic_pages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    build_report(out, synthetic_pages(n_examples=3, hist_bins=7))  # write_report(out, synthetic, 3, 7)
    return out


def steps_of(inputs: ReportInputs) -> dict[str, object]:
    return {step.link_text: step for step in algorithm_steps(inputs.attribution)}


def rewrite(src, name: str, edit) -> None:  # noqa: ANN001
    path = src.attribution / name
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --- the algorithm in numbered steps ---------------------------------------------------------------------


def test_each_established_step_says_its_number_and_links_its_figure(synthetic: ReportInputs, synthetic_pages) -> None:
    steps = algorithm_steps(synthetic.attribution)
    assert [s.href for s in steps] == ["attention.html#mirror-head", "circuit.html#scrubbing",
                                       "discovery.html#after-layer-0", "attention.html#reader", "circuit.html#graph"]
    mirror, flag, discovered, reader, writer = steps
    assert discovered.sentence == ("After layer 0, each character position carries only whether its mirrored pair "
                                   "matches and, if not, which two characters differ (pair_diff); BOS and EOS carry "
                                   "nothing the output needs.")
    assert discovered.evidence == (
        "the coarsest hypothesis a search by causal scrubbing finds: scrubbing down to it keeps 98.7% of the loss from "
        "a constant predictor (99.8% from a random scrub), 99.5% of the balanced accuracy and 97.3% with each pair "
        "alone; control -7.1%; coarser features fail: label 84.0%, pair_match 80.7%")
    assert mirror.sentence.startswith("L0H0 at each character attends to its mirror")
    assert mirror.evidence == "mirror score L0H0 0.9 (uniform attention: 0.14)"  # 1/(5+2), the longest length
    assert "0_mlp_out@chars compares each character with its mirror" in flag.sentence
    assert flag.evidence == ("scrubbing everything but the flag keeps 95.0% of the loss and 91.0% of the balanced "
                             "accuracy (control -20.0%; constant predictor 80.0%): supported")
    assert reader.sentence.startswith("At BOS, L1H0 attends to the characters whose pair is broken")
    assert reader.evidence == "attention per broken character against per matching one: L1H0 0.3 against 0.01 (30×)"
    assert writer.evidence == "path patching into the logits: 1_mlp_out@bos 0.5 and L1H0@bos 0.15 of the logit difference"
    # Every link lands on a section of the page it names.
    pages = {p.filename: p for p in synthetic_pages(3, 7)}
    for step in steps:
        filename, anchor = step.href.split("#")
        assert anchor in {s.anchor for s in pages[filename].sections}, step.href


def test_a_step_whose_gate_fails_is_not_written(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    rewrite(src, "summary.json", lambda s: s["mirror_scores"].update(L0H0=0.49))  # under the mirror gate
    rewrite(src, "circuit.json", lambda c: c["scrubbing"][0].update(verdict="fails"))  # no supported flag
    rewrite(src, "circuit.json", lambda c: c["discovered"]["boundaries"][0]["result"].update(verdict="fails"))
    by_position = pd.read_parquet(src.attribution / "readout_by_position.parquet")
    by_position.loc[(by_position["component"] == "L1H0") & (by_position["status"] == "matched"), "attention"] = 0.16
    by_position.to_parquet(src.attribution / "readout_by_position.parquet", index=False)  # ratio 1.9 < 2
    left = steps_of(load_inputs(src))
    assert set(left) == {"the circuit graph"}


# --- the verdicts on the first screen ----------------------------------------------------------------------


def verdicts(inputs: ReportInputs) -> list:
    return section(page(report_pages(inputs, 3, 7), "index.html"), "Verdicts").content.steps


def test_the_first_screen_gives_one_gated_verdict_line_each(tmp_path: Path) -> None:
    src = write_all(tmp_path, n_wrong=2)
    lines = verdicts(load_inputs(src))
    assert [v.href for v in lines] == ["evaluation.html", "circuit.html#faithfulness", "circuit.html#scrubbing"]
    accuracy, circuit, scrubbing = lines
    assert accuracy.sentence == "Test accuracy 87.50%." and accuracy.evidence.startswith("2 of 16 held-out strings")
    # minimality 0.04 < the floor 0.05: the circuit keeps the decision but is not claimed as carrying it
    assert circuit.sentence == "Circuit: 4 nodes keep the decision, but not every one of them is needed."
    assert "keep 93.0% of the class-balanced margin (gate ≥ 90%)" in circuit.evidence
    assert "95.0% balanced accuracy against the whole model's 98.0%" in circuit.evidence
    rewrite(src, "circuit.json", lambda c: c["minimality"]["1_mlp_out@bos"].update(value=0.3))
    circuit = verdicts(load_inputs(src))[1]  # every node needed, but the circuit alone is less accurate
    assert circuit.sentence == ("Circuit: 4 nodes carry most of the decision; the rest of the model adds the accuracy "
                                "they miss.") and "nothing else is needed" not in circuit.sentence
    rewrite(src, "summary.json", lambda s: s["circuit_accuracy"]["others_ablated"].update(balanced_accuracy=0.98))
    assert verdicts(load_inputs(src))[1].sentence.endswith("; nothing else is needed.")
    rewrite(src, "circuit.json", lambda c: c.update(faithfulness=0.5))
    assert verdicts(load_inputs(src))[1].sentence == "Circuit: no set of nodes passes the faithfulness gate."
    assert scrubbing.sentence.startswith("Scrubbing: 1 of 2 hypotheses supported; the first: after layer 0 each")
    assert "93.6% of the loss from a constant predictor (95.0% from a random scrub)" in scrubbing.evidence
    assert scrubbing.evidence.endswith("control below −100% (worse than a constant): supported")


def test_the_algorithm_hook_shows_the_ladders_text_only_when_there_is_one(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path))
    assert ladder_algorithm(None) is None
    assert ladder_algorithm(ExplanationInputs({"program": None})) is None
    step = ladder_algorithm(ExplanationInputs({"algorithm": {"text": "compare each pair", "evidence": "R^2 0.9."}}))
    assert step.sentence == "The algorithm: compare each pair" and step.evidence == "R^2 0.9"  # the list adds the stop
    with_ladder = dataclasses.replace(inputs, explanation=ExplanationInputs({
        "program": None, "sentences": ["No hypothesis is supported."], "headline": [], "runs_program": False,
        "algorithm": {"text": "compare each pair", "evidence": "R^2 0.9"}}))
    lines = verdict_lines(with_ladder)
    assert [v.link_text for v in lines] == ["the errors", "the explanation ladder", "the circuit", "the scrubbing",
                                            "the explanation"]
    assert lines[-1].sentence == "Program: none was built for this run."


def failure_row(level: str, distinct: int, hit: float, said: int, right: int, random_wrong: int = 15) -> dict:
    return {"level": level, "proposals": 5000, "model_wrong": distinct, "distinct_wrong": distinct, "hit_rate": hit,
            "predicted_wrong": said, "predicted_and_wrong": right, "random_rate": random_wrong / 200000,
            "random_n": 200000, "random_wrong": random_wrong,
            "times_random": hit / (random_wrong / 200000) if random_wrong else None,
            "times_random_at_least": None if random_wrong else hit / (3 / 200000), "patterns": {}}


def test_where_it_breaks_names_the_level_that_finds_most_beside_random_edits_and_its_predictions() -> None:
    assert failures_verdict(None) is None and failures_verdict(ExplanationInputs({"failures": []})) is None
    rows = [failure_row("context", 57, 0.0114, 0, 0), failure_row("layer_zero", 404, 0.0808, 351, 321),
            failure_row("full", 53, 0.0106, 0, 0)]
    step = failures_verdict(ExplanationInputs({"failures": rows}))
    assert step.sentence == ("Where it breaks: the layer_zero level's proposals, chosen from its own numbers, fool the "
                             "model on 404 distinct strings.")
    assert step.evidence == ("8.08% of its 5,000 proposals, 1,077× the rate on 15 of 200,000 random single edits of "
                             "fresh palindromes, 0.007%; before the model is run it calls 351 of them wrong, and the "
                             "model gets 321 of those wrong")
    assert step.href == "explanation.html#breaks"
    quiet = failures_verdict(ExplanationInputs({"failures": [failure_row("full", 7, 0.0014, 0, 0, random_wrong=0)]}))
    assert "at least 93× the rate on 0 of 200,000" in quiet.evidence and quiet.evidence.endswith("outright")
    none = failures_verdict(ExplanationInputs({"failures": [failure_row("full", 0, 0.0, 0, 0)]}))
    assert none.sentence == "Where it breaks: no level's proposals fool the model."


def test_no_established_step_is_said_plainly(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    rewrite(src, "circuit.json", lambda c: (c.update(edges=[]), c["scrubbing"][0].update(verdict="fails")))
    rewrite(src, "circuit.json", lambda c: c["discovered"]["boundaries"][0]["keep"].update(chars="all", bos="all",
                                                                                            eos="all"))
    rewrite(src, "summary.json", lambda s: s["mirror_scores"].update(L0H0=0.1))
    rewrite(src, "circuit.json", lambda c: c["nodes"].__setitem__(slice(None), [n for n in c["nodes"]
                                                                                  if n["name"] != "L1H0@bos"]))
    inputs = load_inputs(src)
    assert algorithm_steps(inputs.attribution) == []
    content = section(page(report_pages(inputs, 3, 7), "index.html"), "What the model does").content
    assert isinstance(content, Steps) and "No step of an algorithm is established" in content.to_html("x", "here")


def test_steps_are_a_list_of_builders_that_can_grow(synthetic_pages) -> None:
    assert len(STEPS) == 5 and all(callable(build) for build in STEPS)
    text = index_html(synthetic_pages(3, 7))
    ol = re.search(r'<ol id="steps-2" class="steps">(.*?)</ol>', text, re.S).group(1)
    assert ol.count("<li>") == 5 and 'href="attention.html#reader"' in ol and 'href="discovery.html#after-layer-0"' in ol
    first = re.search(r'<ol id="steps-1" class="steps">(.*?)</ol>', text, re.S).group(1)
    assert 'class="term"' in first  # the verdicts' terms link to the glossary


def index_html(pages: list[Page]) -> str:
    return render_page(page(pages, "index.html"), pages)


# --- the task, provenance --------------------------------------------------------------------------------


def test_the_first_screen_says_the_task_and_the_model_in_plain_words(synthetic_pages) -> None:
    index = page(synthetic_pages(3, 7), "index.html")
    assert index.intro == ("A 2-layer transformer (2 attention heads per layer and an MLP, residual width 8) tells "
                           "whether a string of 4 and 5 characters from the 4 characters a b c d is a palindrome.")
    words = section(index, "The task and the model").caption
    assert "Each string has 4 and 5 characters from the 4 characters a b c d" in words
    assert ("50% of every split are palindromes; of the rest, 60% break exactly one mirrored pair, 20% break two "
            "and 20% are random letters.") in words
    assert "It trains on 640 strings and is tested on 32 held-out ones" in words
    assert "2 layers of 2 attention heads, an MLP of width 16 after each layer's heads, residual width 8" in words
    assert "answers at BOS" in words


def test_provenance_names_the_commit_and_what_each_field_means(synthetic_pages) -> None:
    table = section(page(synthetic_pages(3, 7), "index.html"), "Provenance").content.df.set_index("field")
    assert table.loc["commit", "value"] == f"{COMMIT[:12]} (a <b>test</b> commit)"
    assert table.loc["date", "value"] == "2026-01-02T03:04:05+00:00" and "identical bytes" in table.loc["date", "meaning"]
    assert table.loc["model", "value"] == "feedc0de" * 4 and "dvc.lock" in table.loc["model", "meaning"]
    assert table.loc["seed", "value"] == str(PARAMS["seed"])
    assert table.loc["params changed", "value"] == "train.lr: 0.003 (committed: 0.002)"
    assert all(table["meaning"].str.len() > 20)
    assert "a &lt;b&gt;test&lt;/b&gt; commit" in index_html(synthetic_pages(3, 7))  # escaped


def test_provenance_is_collected_from_a_real_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {"outs": [
        {"path": "data/model", "md5": "abc123.dir", "size": 1}]}}}))
    (repo / "stages").mkdir()
    (repo / "stages" / "x.py").write_text("x = 1\n")
    run(["git", "init", "-q"], repo)
    commit_all(repo, "a commit")
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    params = flatten_params(yaml.safe_load((repo / "params.yaml").read_text()))
    found = collect_provenance(repo, {**params, "train.lr": 0.5})
    assert found.commit == head and found.commit_subject == "a commit" and found.commit_date.startswith("2026-01-01")
    assert found.model_md5 == "abc123.dir" and found.uncommitted == ()
    assert found.changed_params() == [("train.lr", 0.5, params["train.lr"])]
    (repo / "stages" / "x.py").write_text("x = 2\n")
    assert collect_provenance(repo, params).uncommitted == ("stages/x.py",)
    shutil.rmtree(repo / ".git")
    outside = collect_provenance(repo, params)
    assert outside.commit is None and outside.committed_params is None and outside.changed_params() == []


# --- the glossary and the captions -----------------------------------------------------------------------


def test_every_glossary_link_lands_on_an_entry_and_every_term_used_is_defined(written: Path) -> None:
    index = (written / "index.html").read_text()
    entries = dict(re.findall(r'<dt id="(g-[a-z0-9-]+)">([^<]+)</dt>', index))
    assert set(entries) == {t.id for t in TERMS} and len(entries) == len(TERMS)
    defined = {term.lower() for term in entries.values()}
    linked = set()
    for name in PAGE_FILES:
        text = (written / name).read_text()
        targets = LINK.findall(text)
        assert all(anchor in entries for _, anchor in targets), name
        assert all(bool(prefix) == (name != "index.html") for prefix, _ in targets), name  # index links in place
        linked |= {anchor for _, anchor in targets}
        visible = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", " ", text, flags=re.S)))
        for word, term in JARGON.items():
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", visible, re.IGNORECASE):
                assert term.lower() in defined, (name, word)
    assert len(linked) >= 20  # the captions do link their terms


def test_terms_link_once_per_caption_and_never_inside_names() -> None:
    text = link_terms("the margin, the margin again, circuit.json, edges.parquet, L0H0@chars and @chars", "a.html")
    assert text.count('href="index.html#g-margin"') == 1
    assert "circuit.json" in text and "edges.parquet" in text and "L0H0@chars" in text
    assert '<a class="term" href="index.html#g-node">@chars</a>' in text
    assert 'href="#g-margin"' in link_terms("margin", "index.html")


def test_a_page_says_each_definition_once(synthetic_pages) -> None:
    """No sentence of 12 words or more comes twice on a page, except in the captions of one figure drawn again
    for another length (headings that differ only by a number)."""
    for p in synthetic_pages(3, 7):
        seen: dict[str, str] = {}
        for where, text in [("intro", p.intro), *((s.heading, s.caption) for s in p.sections)]:
            kind = re.sub(r"\d+", "#", where)
            for sentence in re.split(r"(?<=[.;:])\s+", " ".join(text.split())):
                if len(sentence.split()) >= 12:
                    assert seen.get(sentence, kind) == kind, (p.filename, sentence, seen.get(sentence), where)
                    seen[sentence] = kind


def test_wording_fits_a_run_with_one_length(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    predictions = pd.read_parquet(src.predictions)
    by_pos = pd.read_parquet(src.attribution / "adversarial_by_position.parquet")
    assert predictions["length"].nunique() == 2  # the synthetic run has two lengths
    two = built_page(load_inputs(src), "adversarial.html")
    assert "one bar colour per string length" in section(two, "Fooling edits").caption
    by_pos[by_pos["length"] == 5].to_parquet(src.attribution / "adversarial_by_position.parquet", index=False)
    one = built_page(load_inputs(src), "adversarial.html")
    assert "one bar colour" not in section(one, "Fooling edits").caption


# --- downloads -------------------------------------------------------------------------------------------


def test_every_csv_link_resolves_to_the_table_it_names(written: Path, synthetic: ReportInputs) -> None:
    seen = set()
    for name in PAGE_FILES:
        text = (written / name).read_text()
        for href, source in re.findall(r'<a href="(data/[a-z0-9_-]+\.csv)" download>[^<]+</a> \(from ([^)]+)\)', text):
            frame = pd.read_csv(written / href)
            seen.add(href)
            if re.fullmatch(r"data/attribution/\w+\.parquet", source):  # the whole table
                stored = synthetic.attribution[Path(source).stem]
                assert list(frame.columns) == list(stored.columns) and len(frame) == len(stored), href
    assert {"data/edges.csv", "data/dla_means.csv", "data/predictions.csv", "data/readout_by_position.csv",
            "data/scrubbing_losses.csv", "data/train_loss.csv"} <= seen
    tables = {href: (written / href).read_text() for href in seen}
    assert len(set(tables.values())) == len(tables)  # no table written twice under two names
    shown = pd.read_csv(written / "data/predictions.csv")  # only the rows the page shows, not the whole split
    assert 0 < len(shown) < len(synthetic.evaluation.predictions)
    csvs = sorted(p.name for p in (written / "data").iterdir() if p.suffix == ".csv")
    assert csvs == sorted(Path(h).name for h in seen)


# --- precision and patterns ------------------------------------------------------------------------------


def test_percentages_never_round_to_a_value_they_are_not() -> None:
    assert pct(0.99976) == "99.98%" and pct(0.0001) == "0.01%" and pct(1.0) == "100.0%" and pct(0.0) == "0.0%"
    assert pct(0.9999999) == ">99.99%" and pct(1e-9) == "<0.01%" and pct(0.985) == "98.5%"
    assert pcts([1.0, 0.9997, 0.9995]) == ["100.00%", "99.97%", "99.95%"]


def test_the_pattern_in_the_failures_is_named() -> None:
    wrong = ["abcnefecba", "abanefecba", "xycnefecyx"]  # all break pair 3 (characters 4 and 7) with e/n
    assert failure_pattern(wrong, [False] * 3) == ("All 3 misclassified non-palindrome strings break mirrored pair 3 "
                                                   "(characters 4 and 7), with e/n (3×).")
    mixed = ["abca", "abcb", "abba"]  # two break pair 0 (a/a? no: a/a matches) -> pairs 0 and 1
    assert failure_pattern(mixed, [False, False, True]).startswith("1 palindrome called not a palindrome. Both")
    assert failure_pattern([], []) == ""


def test_the_synthetic_outputs_give_distinct_values_to_distinct_keys(synthetic: ReportInputs) -> None:
    """A page that prints one number where another belongs can only pass its tests if the two are distinct."""
    def numbers(d: dict) -> dict[str, float]:
        return {k: v for k, v in d.items() if isinstance(v, float | int) and not isinstance(v, bool)}

    for result in synthetic.attribution.circuit["scrubbing"]:
        top = numbers(result)
        top.pop("after_layer"), top.pop("n_draws")
        assert len(set(top.values())) == len(top), top
        for run_ in result["runs"].values():
            assert len(set(numbers(run_).values())) == len(numbers(run_)), run_
    for key in ("unablated", "others_ablated", "circuit_ablated"):
        values = numbers(synthetic.attribution.summary["circuit_accuracy"][key])
        assert len(set(values.values())) == len(values), (key, values)
