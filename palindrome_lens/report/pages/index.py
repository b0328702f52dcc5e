"""The overview page: the circuit in the attribute stage's own sentences, the key numbers, links."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from palindrome_lens.report.content import Links, Table, Text
from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import ReportInputs
from palindrome_lens.report.pages.ablation import INTERVENTIONS

FILENAME = "index.html"
TITLE = "palindrome-lens: how the classifier works"
NAV = "Overview"
MODEL_KEYS = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "attn_only", "normalization_type", "lengths")


def key_numbers(inputs: ReportInputs) -> pd.DataFrame:
    ev, tr, summary = inputs.evaluation.metrics, inputs.training.metrics, inputs.attribution.summary
    acc = summary["circuit_accuracy"]
    d1 = ev.get("distance", {}).get("1")
    adv = summary["adversarial"]
    rows = [
        ("test accuracy", f"{pct(ev.get('accuracy'), 2)} of {ev['n']} strings"),
        ("test accuracy, distance 1 (one pair broken)", f"{pct(d1['accuracy'], 2)} of {d1['n']}" if d1 else "n/a"),
        ("worst kind on test", _worst(ev.get("kind", {}))),
        ("final validation accuracy", pct(tr["val"]["accuracy"], 2)),
        ("circuit heads", names(list(summary["circuit_heads"])) + (" (weak: no head passes the threshold)"
                                                                    if summary.get("weak") else "")),
        ("distance-1 accuracy, unablated (analysis set)", pct(acc["unablated"].get("distance_1_accuracy"))),
        ("distance-1 accuracy, circuit heads mean-ablated", pct(acc["circuit_ablated"].get("distance_1_accuracy"))),
        ("distance-1 accuracy, all other heads mean-ablated", pct(acc["others_ablated"].get("distance_1_accuracy"))),
        # a model that falls back to "not a palindrome" keeps distance-1 accuracy; palindromes show the loss
        ("palindrome accuracy: unablated / circuit ablated / others ablated",
         " / ".join(pct(acc[k].get("palindrome_accuracy")) for k in INTERVENTIONS)),
        ("accuracy on every analysis string: unablated / circuit ablated / others ablated",
         " / ".join(pct(acc[k].get("accuracy")) for k in INTERVENTIONS)),
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
        "A small bidirectional TransformerLens model reads a string as [BOS] characters [EOS] and classifies it at "
        "BOS as palindrome or not. These pages show how well it does and which heads, positions and weights do the "
        "work. Every number comes from this pipeline run (dvc repro); the pages open offline.")
    return Page(FILENAME, TITLE, intro, [
        Section("The circuit in one paragraph", (
            "Written by the attribute stage from ablation and patching results (see Ablation & circuit)."),
            Text("\n\n".join(summary["sentences"]))),
        Section("Key numbers", (
            "Test figures come from the evaluate stage on the whole test split; circuit, edit and check figures from "
            "the attribute stage on its analysis set and edited palindromes."), Table(key_numbers(inputs))),
        Section("Model", "The architecture (from summary.json).", Table(config)),
        Section("Pages", "Each page explains how to read its figures.", Links(links)),
    ], nav_label=NAV)
