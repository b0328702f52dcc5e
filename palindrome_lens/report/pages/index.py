"""The overview page. Its first screen: the task and the model in one line, then one verdict line each for the
test accuracy, the algorithm (the explanation ladder's, when it is there), the circuit, the scrubbing and the
program, every one gated by the number beside it and linked to its evidence. Below: the algorithm in numbered
steps, the circuit graph, every finding in sentences, the task and the model, provenance, the
glossary every caption links to, and links to every page."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from palindrome_lens.report.algorithm import Step, algorithm_steps
from palindrome_lens.report.content import Glossary, Links, Steps, Table, Text
from palindrome_lens.report.explanation_inputs import ExplanationInputs
from palindrome_lens.report.formatting import missing, num, pct
from palindrome_lens.report.glossary import TERMS
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution, ReportInputs
from palindrome_lens.report.pages.circuit import graph_section
from palindrome_lens.report.pages.scrubbing import floor_pct
from palindrome_lens.report.provenance import Provenance
from palindrome_lens.report.task import task_line, task_words

FILENAME = "index.html"
TITLE = "How this transformer tells palindromes from near misses"
NAV = "Overview"
MODEL_KEYS = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "attn_only", "normalization_type", "lengths",
              "attention_dir", "readout")


def _worst(kinds: dict) -> str:
    if not kinds:
        return "n/a"
    kind = min(kinds, key=lambda k: (kinds[k]["accuracy"], k))
    if all(cell["accuracy"] == kinds[kind]["accuracy"] for cell in kinds.values()):
        return f"none: every kind {pct(kinds[kind]['accuracy'], 2)}"
    return f"{kind}: {pct(kinds[kind]['accuracy'], 2)}"


def provenance_table(provenance: Provenance) -> pd.DataFrame:
    """Each field, its value and what it means (where it comes from)."""
    changed = provenance.changed_params()
    if provenance.committed_params is None:
        params = "not compared: no params.yaml at a git commit"
    else:
        params = "; ".join(f"{k}: {_short(v)} (committed: {_short(c)})" for k, v, c in changed) or "none"
    commit = (f"{provenance.commit[:12]} ({provenance.commit_subject})" if provenance.commit
              else "not a git checkout")
    rows = [
        ("commit", commit, "git HEAD when the report stage ran. git is not a DVC dependency: a later commit "
                           "that changes no dependency leaves this page as it is."),
        ("date", provenance.commit_date or "n/a", "the commit's own date. The time of the run is not recorded, so "
                                                  "rerunning the stage gives identical bytes."),
        ("uncommitted code", _files(provenance.uncommitted),
         "files under palindrome_lens/, stages/ and dvc.yaml that differ from the commit"),
        ("model", provenance.model_md5 or "not recorded", "md5 of data/model as dvc.lock records it (train's output)"),
        ("seed", str(provenance.params.get("seed", "not recorded")), "params.yaml seed: every draw of the run"),
        ("params changed", params, "this run's params.yaml against params.yaml at the commit (dvc exp run -S ...)"),
        ("machine", provenance.machine, "where the report stage ran; training's bytes depend on the processor"),
    ]
    return pd.DataFrame(rows, columns=["field", "value", "meaning"])


def _files(paths: Sequence[str], shown: int = 5) -> str:
    if not paths:
        return "none"
    more = len(paths) - shown
    return ", ".join(paths[:shown]) + (f" and {more} more" if more > 0 else "")


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def accuracy_verdict(inputs: ReportInputs) -> Step | None:
    m = inputs.evaluation.metrics
    if not m["n"]:
        return None
    wrong = round((1 - m["accuracy"]) * m["n"])
    evidence = (f"{wrong} of {m['n']:,} held-out strings are misclassified (worst kind: {_worst(m.get('kind', {}))})"
                if wrong else f"none of the {m['n']:,} held-out strings is misclassified")
    return Step(f"Test accuracy {pct(m['accuracy'], 2)}.", evidence, "evaluation.html", "the errors")


def ladder_algorithm(explanation: ExplanationInputs | None) -> Step | None:
    """HOOK for the explanation ladder (issue 21): the algorithm in plain words, with its numbers, from the
    ladder's algorithm level in the explain stage's summary.json ('algorithm': {'text', 'evidence'}). Nothing is
    shown until the explain stage writes it."""
    level = (explanation.summary.get("algorithm") or {}) if explanation is not None else {}
    if not level.get("text"):
        return None
    evidence = (level.get("evidence") or "the explanation ladder's algorithm level").rstrip(".")  # Steps adds one
    return Step(f"The algorithm: {level['text']}", evidence,
                "explanation.html#algorithm", "the explanation ladder")


def circuit_verdict(attribution: Attribution) -> Step:
    """Gated as the attribute stage's 'carried by': faithfulness at the target and every node needed; 'nothing else
    is needed' only where the circuit alone also keeps the whole model's balanced accuracy."""
    circuit, accuracy = attribution.circuit, attribution.summary["circuit_accuracy"]
    gates, faithfulness = circuit["gates"], circuit["faithfulness"]
    minimal = [m["value"] for m in circuit["minimality"].values()]
    n = sum(1 for nd in circuit["nodes"] if nd["role"] == "circuit")
    alone, whole = (accuracy[k].get("balanced_accuracy") for k in ("others_ablated", "unablated"))
    numbers = (f"alone they keep {pct(faithfulness)} of the class-balanced margin (gate ≥ "
               f"{pct(gates['faithfulness_target'], 0)}) and {pct(alone)} balanced accuracy against the whole model's "
               f"{pct(whole)}; the least needed node's minimality is {num(min(minimal, default=None), 2)} (floor "
               f"{num(gates['minimality_floor'])})")
    if not n or faithfulness is None or faithfulness < gates["faithfulness_target"]:
        return Step("Circuit: no set of nodes passes the faithfulness gate.", numbers if n else
                    "no candidate set reaches the target", "circuit.html#faithfulness", "the circuit")
    if not minimal or min(minimal) < gates["minimality_floor"]:
        return Step(f"Circuit: {n} nodes keep the decision, but not every one of them is needed.", numbers,
                    "circuit.html#faithfulness", "the circuit")
    rest = ("; nothing else is needed" if alone is not None and whole is not None and pct(alone) == pct(whole) else
            "; the rest of the model adds the accuracy they miss")
    return Step(f"Circuit: {n} nodes carry most of the decision{rest}.", numbers, "circuit.html#faithfulness",
                "the circuit")


def scrubbing_verdict(attribution: Attribution) -> Step | None:
    scrubs = attribution.circuit["scrubbing"]
    if not scrubs:
        return None
    supported = [r for r in scrubs if r["verdict"] == "supported"]
    best = supported[0] if supported else max(scrubs, key=lambda r: r.get("recovered_constant") or -1e9)
    return Step(f"Scrubbing: {len(supported)} of {len(scrubs)} hypotheses supported; "
                f"{'the first' if supported else 'the closest'}: {best['claim']}.",
                f"it keeps {pct(best.get('recovered_constant'))} of the loss from a constant predictor "
                f"({pct(best['recovered'])} from a random scrub) and {pct(best.get('accuracy_recovered'))} of the "
                f"balanced accuracy; control {floor_pct(best.get('control_constant'))}: {best['verdict']}",
                "circuit.html#scrubbing", "the scrubbing")


def program_verdict(explanation: ExplanationInputs | None) -> Step | None:
    if explanation is None:
        return None
    s = explanation.summary
    if not s.get("program"):
        return Step("Program: none was built for this run.", " ".join(s.get("sentences") or []) or "no hypothesis "
                    "the explain stage can compile is supported", "explanation.html", "the explanation")
    test, edits = s["agreement"]["test"], s["agreement"]["edits"]
    program, n_model = s["program"], s.get("n_model")
    size = ""
    if program.get("level") and n_model:  # the ladder: which level, and whether it is smaller than the model at all
        total = program["n_read"] + program["n_fitted"]
        size = (f"; it is the ladder's {program['level']} level, {total:,} numbers for a model of {n_model:,} "
                f"parameters{' (larger than the model: no smaller level passes)' if total > n_model else ''}")
    return Step("Program: the model runs the compiled program." if s.get("runs_program") else
                "Program: the compiled program does not pass its gates.",
                f"it decides like the model on {pct(test['agreement'])} of test strings (the exact palindrome check: "
                f"{pct(test['baseline_agreement'])}) and follows its logit difference within a class on single edits "
                f"with Spearman {num(edits['spearman'], 3)} and R^2 {num(edits['r2'], 3)}{fit_targets(s)} (exact check "
                f"{num(edits['baseline_spearman'], 2)} and {num(edits['baseline_r2'], 2)}){size}",
                "explanation.html", "the program")


def failures_verdict(explanation: ExplanationInputs | None) -> Step | None:
    """Where the model breaks, found from the explanation: the level whose proposals (chosen from its own numbers,
    the model never asked) fool the model on the most distinct strings, beside the model's rate on random single
    edits; and how many errors that level predicts outright, and how many of those the model makes."""
    rows = (explanation.summary.get("failures") or []) if explanation is not None else []
    if not rows:
        return None
    best = max(rows, key=lambda r: (r["distinct_wrong"], r["hit_rate"] or 0.0))
    random = (f"{best['random_wrong']:,} of {best['random_n']:,} random single edits of fresh palindromes, "
              f"{pct(best['random_rate'], 3)}")
    if not best["distinct_wrong"]:
        return Step("Where it breaks: no level's proposals fool the model.",
                    f"{sum(r['proposals'] for r in rows):,} proposals, none misclassified; the model misclassifies "
                    f"{random}", "explanation.html#breaks", "the failure search")
    if best.get("times_random") is not None:
        times = f"{best['times_random']:,.0f}× the rate on {random}"
    else:
        times = f"at least {best['times_random_at_least']:,.0f}× the rate on {random} (rule of three)"
    said, right = best.get("predicted_wrong") or 0, best.get("predicted_and_wrong")
    predicted = (f"; before the model is run it calls {said:,} of them wrong, and the model gets {right:,} of those "
                 f"wrong" if said and right is not None else "; it predicts none of them outright")
    return Step(f"Where it breaks: the {best['level']} level's proposals, chosen from its own numbers, fool the model "
                f"on {best['distinct_wrong']:,} distinct strings.",
                f"{pct(best['hit_rate'], 2)} of its {best['proposals']:,} proposals, {times}{predicted}",
                "explanation.html#breaks", "the failure search")


def fit_targets(summary: dict) -> str:
    """' (gates 0.8 and 0.3)': the within-class fit's gates beside the figures, where the summary gives them."""
    targets = summary.get("targets") or {}
    if missing(targets.get("spearman_target")) or missing(targets.get("r2_target")):
        return ""
    return f" (gates {num(targets['spearman_target'], 3)} and {num(targets['r2_target'], 3)})"


def verdict_lines(inputs: ReportInputs) -> list[Step]:
    """The first screen's lines: test accuracy, the algorithm (the ladder's hook), circuit, scrubbing, program, and
    where it breaks (the failure search)."""
    lines = (accuracy_verdict(inputs), ladder_algorithm(inputs.explanation), circuit_verdict(inputs.attribution),
             scrubbing_verdict(inputs.attribution), program_verdict(inputs.explanation),
             failures_verdict(inputs.explanation))
    return [line for line in lines if line is not None]


def index_page(inputs: ReportInputs, pages: Sequence[Page], descriptions: dict[str, str]) -> Page:
    attribution = inputs.attribution
    circuit, model = attribution.circuit, attribution.summary["model"]
    config = pd.DataFrame([{"setting": k, "value": str(model.get(k))} for k in MODEL_KEYS if k in model])
    links = [(p.filename, p.title, descriptions.get(p.filename, "")) for p in pages if p.filename != FILENAME]
    return Page(FILENAME, TITLE, task_line(inputs.provenance.params, model), [
        Section("Verdicts", (
            "One line each, with the number that decides it and its gate or baseline, and a link to the evidence."),
            Steps(verdict_lines(inputs), "No verdict: the run has no test strings."), anchor="verdicts"),
        Section("What the model does, step by step", (
            "Each step is one sentence, the number behind it with its baseline, and a link to the figure. A step "
            "appears only when its number passes its gate (the glossary and the Circuit page give them)."),
            Steps(algorithm_steps(attribution), "No step of an algorithm is established for this run: the numbers "
                  "behind every step failed their gates. The Circuit page shows where the decision runs."),
            anchor="algorithm"),
        graph_section(attribution),
        Section("Every finding, in sentences", (
            "Written from the numbers in circuit.json, each claim gated by the number behind it; the last paragraph "
            "is the explanation's: 'the model runs this program' only when its agreement, error and "
            "interchange-intervention gates pass (Explanation page)."),
            Text("\n\n".join(circuit["sentences"] + (inputs.explanation.summary["headline"] if inputs.explanation
                                                      else []))), anchor="sentences"),
        Section("The task and the model", task_words(inputs.provenance.params, model), Table(config),
                anchor="model"),
        Section("Provenance", (
            "Where this report comes from; each field says what it means. Every source is deterministic, so the "
            "same inputs give the same page."), Table(provenance_table(inputs.provenance)), anchor="provenance"),
        Section("Glossary", "Every term the pages use. Captions link a term's first use to its entry here.",
                Glossary(TERMS), anchor="glossary"),
        Section("Pages", "Each page explains how to read its figures.", Links(links), anchor="pages"),
    ], nav_label=NAV)
