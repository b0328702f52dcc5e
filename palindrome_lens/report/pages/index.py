"""The overview page: the circuit in the attribute stage's own sentences, the key numbers, links."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from palindrome_lens.report.content import Links, Table, Text
from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import ReportInputs
from palindrome_lens.report.pages.ablation import CONSTANT, INTERVENTIONS

FILENAME = "index.html"
TITLE = "palindrome-lens: how the classifier works"
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
    return "n/a" if lo is None else f"{num(lo, 4)} to {num(hi, 4)} (1 = exact)"


def index_page(inputs: ReportInputs, pages: Sequence[Page], descriptions: dict[str, str]) -> Page:
    summary = inputs.attribution.summary
    model = summary["model"]
    config = pd.DataFrame([{"setting": k, "value": str(model.get(k))} for k in MODEL_KEYS if k in model])
    links = [(p.filename, p.title, descriptions.get(p.filename, "")) for p in pages if p.filename != FILENAME]
    intro = (
        f"A small {model.get('attention_dir', 'bidirectional')} TransformerLens model reads a string as [BOS] "
        f"characters [EOS] and classifies it at {str(model['readout']).upper()} as palindrome or not. These pages "
        "show how well it does and which nodes, edges, positions and weights do the work. Every number comes from "
        "this pipeline run (dvc repro); the pages open offline.")
    return Page(FILENAME, TITLE, intro, [
        Section("The circuit in one paragraph", (
            "Written by the attribute stage from the numbers in circuit.json, each claim gated by the number behind "
            "it: 'carried by' only when the circuit keeps the target share of the margin and every node is needed "
            "(minimality at least the floor); a hypothesis is 'supported' only when its scrub keeps the target share "
            "of the loss and of the balanced accuracy, beats a constant predictor, and its control does worse than a "
            "constant predictor. The numbers are on the Circuit page. The last paragraph is the explain stage's: 'the "
            "model runs this program' only when its agreement, error and interchange-intervention gates pass "
            "(Explanation page)."),
            Text("\n\n".join(inputs.attribution.circuit["sentences"]
                              + (inputs.explanation.summary["headline"] if inputs.explanation else [])))),
        Section("Key numbers", (
            "Test figures come from the evaluate stage on the whole test split; circuit, scrubbing, edit and check "
            "figures from the attribute stage on its analysis set and edited palindromes, each beside its "
            "baseline. Margins and accuracies of the circuit are class-balanced (a constant predictor scores a "
            "balanced accuracy of 50% and a margin of 0); % recovered is on the scale from a random scrub (0%) to "
            "the model (100%)."), Table(key_numbers(inputs))),
        Section("Model", "The architecture (from summary.json).", Table(config)),
        Section("Pages", "Each page explains how to read its figures.", Links(links)),
    ], nav_label=NAV)
