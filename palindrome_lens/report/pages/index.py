"""The overview page. Its first screen: the task in plain words, the algorithm in numbered steps (each gated,
with its number and a link to its figure) and the circuit graph; then the attribute stage's own sentences, the
key numbers, the model, provenance, the glossary every caption links to, and links to every page."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from palindrome_lens.report.algorithm import algorithm_steps, program_step
from palindrome_lens.report.content import Glossary, Links, Steps, Table, Text
from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.glossary import TERMS
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import ReportInputs
from palindrome_lens.report.pages.ablation import CONSTANT, INTERVENTIONS
from palindrome_lens.report.pages.circuit import graph_section
from palindrome_lens.report.pages.patching import range_text
from palindrome_lens.report.provenance import Provenance
from palindrome_lens.report.task import task_words

FILENAME = "index.html"
TITLE = "How this transformer tells palindromes from near misses"
NAV = "Overview"
MODEL_KEYS = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "attn_only", "normalization_type", "lengths",
              "attention_dir", "readout")


def key_numbers(inputs: ReportInputs) -> pd.DataFrame:
    ev, tr = inputs.evaluation.metrics, inputs.training.metrics
    summary, circuit = inputs.attribution.summary, inputs.attribution.circuit
    d1 = ev.get("distance", {}).get("1")
    adv = summary["adversarial"]
    gates, runs = circuit["gates"], circuit["ablation"]
    nodes = [n["name"] for n in circuit["nodes"] if n["role"] == "circuit"]
    full, nothing = runs["model"]["balanced_margin"], runs["nothing"]["balanced_margin"]
    minimal = {name: m["value"] for name, m in circuit["minimality"].items()}
    smallest = min(minimal, key=minimal.__getitem__) if minimal else None
    acc = summary["circuit_accuracy"]
    rows = [
        ("test accuracy", f"{pct(ev.get('accuracy'), 2)} of {ev['n']} strings"),
        ("test accuracy, distance 1 (one pair broken)", f"{pct(d1['accuracy'], 2)} of {d1['n']}" if d1 else "n/a"),
        ("worst kind on test", _worst(ev.get("kind", {}))),
        ("final validation accuracy", pct(tr["val"]["accuracy"], 2)),
        ("circuit nodes", (names(nodes) or "none") + ("" if circuit["search"]["reached"] else
                                                      " (weak: no set found reaches the faithfulness target)")),
        ("faithfulness: margin kept by the circuit alone",
         f"{pct(circuit['faithfulness'])} (target {pct(gates['faithfulness_target'], 0)}; every node ablated "
         f"{pct(nothing / full if full else None)}; constant predictor 0%)"),
        ("completeness gap", f"{num(circuit['completeness']['value'])} (worst K "
                             f"{circuit['completeness']['worst_k'] or 'n/a'}; 0 = complete)"),
        ("minimality, smallest", f"{num(minimal[smallest])} ({smallest}; floor {num(gates['minimality_floor'])})"
         if smallest else "n/a"),
        ("balanced accuracy: whole model / circuit only / circuit ablated",
         " / ".join(pct(acc[k].get("balanced_accuracy")) for k in INTERVENTIONS) + f" ({CONSTANT} 50.0%)"),
        *((f"scrubbing '{r['name']}': loss recovered / accuracy recovered / control / {CONSTANT}",
           f"{pct(r['recovered'])} / {pct(r.get('accuracy_recovered'))} / {pct(r['control'])} / "
           f"{pct(r['constant'])}: {r['verdict']}")
          for r in circuit["scrubbing"]),
        ("single-letter edits misclassified", f"{adv['n_misclassified']} of {adv['n_edits']}"),
        ("DLA check: max |sum of components − logit diff|", num(summary["dla_max_abs_error"], 2)),
        ("patching check: full residual patch recovery", _recovery_range(summary["patching"])),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def _worst(kinds: dict) -> str:
    if not kinds:
        return "n/a"
    kind = min(kinds, key=lambda k: (kinds[k]["accuracy"], k))
    if all(cell["accuracy"] == kinds[kind]["accuracy"] for cell in kinds.values()):
        return f"none: every kind {pct(kinds[kind]['accuracy'], 2)}"
    return f"{kind}: {pct(kinds[kind]['accuracy'], 2)}"


def _recovery_range(facts: dict) -> str:
    lo, hi = facts.get("full_resid_pre_recovery_min"), facts.get("full_resid_pre_recovery_max")
    return "n/a" if lo is None else f"{range_text(lo, hi)} in every layer (1 = exact)"


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


def index_page(inputs: ReportInputs, pages: Sequence[Page], descriptions: dict[str, str]) -> Page:
    attribution = inputs.attribution
    summary, circuit = attribution.summary, attribution.circuit
    model = summary["model"]
    config = pd.DataFrame([{"setting": k, "value": str(model.get(k))} for k in MODEL_KEYS if k in model])
    links = [(p.filename, p.title, descriptions.get(p.filename, "")) for p in pages if p.filename != FILENAME]
    steps = algorithm_steps(attribution)
    program = program_step(inputs.explanation)
    steps += [program] if program else []
    return Page(FILENAME, TITLE, task_words(inputs.provenance.params, model), [
        Section("What the model does, step by step", (
            "Each step is one sentence, the number behind it with its baseline, and a link to the figure. A step "
            "appears only when its number passes the gate the attribute stage or this report applies (the glossary "
            "and the Circuit page give them); a step that is not established is left out."),
            Steps(steps, "No step of an algorithm is established for this run: the numbers behind every step "
                         "failed their gates. The Circuit page shows where the decision runs and what was tested."),
            anchor="algorithm"),
        graph_section(attribution),
        Section("In the attribute stage's words", (
            "Written by the attribute stage from the numbers in circuit.json, each claim gated by the number behind "
            "it; the last paragraph is the explain stage's: 'the model runs this program' only when its agreement, "
            "error and interchange-intervention gates pass (Explanation page)."),
            Text("\n\n".join(circuit["sentences"] + (inputs.explanation.summary["headline"] if inputs.explanation
                                                      else []))), anchor="sentences"),
        Section("Key numbers", (
            "Test figures come from the evaluate stage on the whole test split; circuit, scrubbing, edit and check "
            "figures from the attribute stage on its analysis set and edited palindromes, each beside its "
            "baseline."), Table(key_numbers(inputs)), anchor="key-numbers"),
        Section("Model", "The architecture, from summary.json.", Table(config), anchor="model"),
        Section("Provenance", (
            "Where this report comes from; each field says what it means. Every source is deterministic, so the "
            "same inputs give the same page."), Table(provenance_table(inputs.provenance)), anchor="provenance"),
        Section("Glossary", "Every term the pages use. Captions link a term's first use to its entry here.",
                Glossary(TERMS), anchor="glossary"),
        Section("Pages", "Each page explains how to read its figures.", Links(links), anchor="pages"),
    ], nav_label=NAV)
