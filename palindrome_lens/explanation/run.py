"""The whole explain analysis: choose the template from circuit.json, read the tables from the model, fit
the readout on the train split, write the program, measure it against the model (agreement, the model's own
errors, interchange interventions) and write everything into data/explanation/ atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.atomic import atomic_dir, write_json, write_text
from palindrome_lens.attribution.adversarial import single_edits
from palindrome_lens.attribution.common import forward_logit_diff, save_table
from palindrome_lens.data.strings import is_palindrome
from palindrome_lens.errors import AnalysisError
from palindrome_lens.explanation.agreement import (
    agreement_table,
    by_kind,
    class_means,
    figures,
    finite_or_none,
)
from palindrome_lens.explanation.constants import FORMAT as CONSTANTS_FORMAT
from palindrome_lens.explanation.constants import counts, length_entry, provenance
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.family import FamilyChoice, choose_family
from palindrome_lens.explanation.files import AGREEMENT, AGREEMENT_SCHEMA, CONSTANTS, FORMAT, PROGRAM, SUMMARY
from palindrome_lens.explanation.interchange import interchange
from palindrome_lens.explanation.program import run_program
from palindrome_lens.explanation.readout import fit_readout, quadratic_terms
from palindrome_lens.explanation.sentences import (
    forced_sentence,
    pair_constants,
    verdict,
    weakest_pair,
    weakest_sentence,
)
from palindrome_lens.explanation.tables import read_tables
from palindrome_lens.explanation.template import logic_lines, render_program
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.readout import readout_of
from palindrome_lens.params import ExplainParams

CHECK_ROWS = 200  # strings per set on which the written program.py must give the measured numbers
CHECK_TOLERANCE = 1e-6
_STREAM = 19


@dataclass
class Explanation:
    """What the stage writes (empty program and tables when the family has no template)."""

    summary: dict[str, Any]
    program: str | None = None
    constants: dict[str, Any] | None = None
    agreement: pd.DataFrame | None = None
    interchange: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per part, printed by the stage, never written

    def lap(self, part: str, since: float) -> float:
        """Book the time since `since` to `part`; returns now (the next part's start)."""
        now = time.perf_counter()
        self.seconds[part] = now - since
        return now


def no_program(choice: FamilyChoice, reason: str) -> Explanation:
    sentence = f"No program: {reason}."
    return Explanation({"format": FORMAT, "family": family_facts(choice), "program": None, "sentences": [sentence],
                        "headline": [sentence], "runs_program": False})


def family_facts(choice: FamilyChoice) -> dict[str, Any]:
    return {"name": choice.name, "source": choice.source, "hypothesis": choice.hypothesis,
            "after_layer": choice.after_layer, "keep": choice.keep, "has_template": choice.has_template,
            "reason": choice.reason, "verdict": choice.verdict, "forced": choice.forced}


def fit_strings(train: pd.DataFrame, params: ExplainParams, lengths: list[int], alphabet: str, seed: int) -> list[str]:
    """n_fit train strings and every single edit of n_fit_edits train palindromes, drawn with the seed."""
    rng = np.random.default_rng([seed, _STREAM])
    texts = train["text"].astype(str)
    texts = texts[texts.str.len().isin(lengths)]
    chosen = texts.iloc[np.sort(rng.choice(len(texts), size=min(params.n_fit, len(texts)), replace=False))].tolist()
    if params.n_fit_edits:
        palindromes = texts[texts.map(is_palindrome)].drop_duplicates()
        picks = np.sort(rng.choice(len(palindromes), size=min(params.n_fit_edits, len(palindromes)), replace=False))
        chosen += single_edits(palindromes.iloc[picks].tolist(), alphabet)["text"].tolist()
    return chosen


def document(clf: Classifier, choice: FamilyChoice, tables: dict[int, Any], fits: dict[int, Any],
             params: ExplainParams) -> dict[str, Any]:
    readout = readout_of(clf.model).kind
    lengths = {str(n): length_entry(tables[n], *fits[n]) for n in sorted(tables)}
    return {"format": CONSTANTS_FORMAT, "family": choice.name, "hypothesis": choice.hypothesis,
            "after_layer": choice.after_layer, "alphabet": [ord(c) for c in clf.tokenizer.alphabet],
            "readout": readout, "lengths": lengths, "counts": counts(lengths),
            "provenance": provenance(readout, int(choice.after_layer), params.n_contexts, params.n_fit,
                                     params.n_fit_edits)}


def check_program(source: str, texts: list[str], measured: np.ndarray) -> float:
    """The written program, run on its own, must give the measured numbers: the largest difference on a sample."""
    gap = float(np.abs(run_program(source, texts) - measured).max()) if texts else 0.0
    if gap > CHECK_TOLERANCE * max(1.0, float(np.abs(measured).max(initial=0.0))):
        raise AnalysisError(f"program.py and its measured figures differ by {gap:.3g} on a sample; the template and "
                            "palindrome_lens/explanation/emulate.py must do the same arithmetic")
    return gap


def fit_program(clf: Classifier, choice: FamilyChoice, tables: dict[int, Any], train: pd.DataFrame,
                params: ExplainParams, seed: int) -> tuple[dict[str, Any], list[str], np.ndarray]:
    """The constants document with its readout fitted on the train split, the fit strings and the model's
    logit differences on them."""
    lengths = sorted(tables)
    fit_texts = fit_strings(train, params, lengths, clf.tokenizer.alphabet, seed)
    fit_logits = forward_logit_diff(clf.model, clf.encode(fit_texts), params.batch_size).cpu().numpy()
    blank = {}
    for n, t in tables.items():  # the features do not use the readout: compute them with a blank one
        width = quadratic_terms(np.zeros((1, len(t.heads) + t.context_directions.shape[0]))).shape[1]
        blank[n] = (np.zeros(len(t.heads) + 1), {"palindrome": np.zeros(width), "not_palindrome": np.zeros(width)})
    features = Emulator(document(clf, choice, tables, blank, params))
    fit_lengths = np.array([len(t) for t in fit_texts])
    fits = {}
    for n in lengths:
        rows = np.flatnonzero(fit_lengths == n)
        f = features.features([fit_texts[i] for i in rows]).reshape(len(rows), -1)
        fits[n] = fit_readout(f, len(tables[n].heads), fit_logits[rows].astype(np.float64))
    return document(clf, choice, tables, fits, params), fit_texts, fit_logits.astype(np.float64)


def measure(clf: Classifier, source: str, emulator: Emulator, test: pd.DataFrame, edits: pd.DataFrame,
            baseline: dict[bool, float], batch_size: int) -> tuple[pd.DataFrame, dict[str, Any], list, float]:
    """agreement.parquet's rows, the figures per set, per kind, and the check that program.py gives them."""
    test_model = forward_logit_diff(clf.model, clf.encode(test["text"].tolist()), batch_size).cpu().numpy()
    test_program, edits_program = emulator.logit_diff(test["text"].tolist()), emulator.logit_diff(edits["text"].tolist())
    sample = test["text"].tolist()[:CHECK_ROWS] + edits["text"].tolist()[:CHECK_ROWS]
    gap = check_program(source, sample, np.concatenate([test_program[:CHECK_ROWS], edits_program[:CHECK_ROWS]]))
    table = agreement_table(test, test_model.astype(np.float64), test_program, edits, edits_program)
    agreement = {name: figures(table[table["set"] == name], baseline) for name in ("test", "edits")}
    return table, agreement, by_kind(table[table["set"] == "test"], baseline), gap


def explain(clf: Classifier, circuit: Mapping[str, Any], train: pd.DataFrame, test: pd.DataFrame,
            edits: pd.DataFrame, params: ExplainParams, seed: int) -> Explanation:
    """Everything in memory. `edits` is the attribute stage's adversarial.parquet (with the model's logits)."""
    model = clf.model
    model.eval()
    choice = choose_family(circuit, params.family)
    if not choice.has_template:
        return no_program(choice, choice.reason)
    if choice.after_layer >= model.cfg.n_layers - 1:
        return no_program(choice, f"the hypothesis puts the comparison after layer {choice.after_layer}, the last "
                                  "layer; the pair-comparison template needs a later layer to read it")
    lengths = sorted(int(n) for n in (clf.lengths or test["length"].unique()))
    out, start = Explanation({}), time.perf_counter()
    tables = {n: read_tables(model, clf.tokenizer, n, params.n_contexts, params.context_dims, params.batch_size, seed)
              for n in lengths}
    start = out.lap("tables", start)
    doc, fit_texts, fit_logits = fit_program(clf, choice, tables, train, params, seed)
    source, emulator = render_program(doc), Emulator(doc)
    start = out.lap("fit", start)
    baseline = class_means(fit_logits, np.array([is_palindrome(t) for t in fit_texts]))
    table, agreement, kinds, gap = measure(clf, source, emulator, test, edits, baseline, params.batch_size)
    start = out.lap("agreement", start)
    iia = interchange(model, clf.tokenizer, emulator, test, circuit, int(choice.after_layer), lengths,
                      params.n_interchange, seed, params.batch_size)
    out.lap("interchange", start)
    first = tables[lengths[0]]
    program_facts = {"logic_lines": logic_lines(source), "bytes": len(source.encode()), "n_read": doc["counts"]["read"],
                     "n_fitted": doc["counts"]["fitted"], "readout_heads": [h.name for h in first.heads],
                     "context_heads": [c.name for c in first.context],
                     "context_dims": int(first.context_directions.shape[0]), "lengths": lengths,
                     "checked_rows": min(CHECK_ROWS, len(test)) + min(CHECK_ROWS, len(edits)), "check_max_difference": gap, "fit_strings": len(fit_texts)}
    runs, sentence = verdict(agreement, iia, params, program_facts)
    weakest = weakest_pair(table[table["set"] == "edits"], pd.concat([pair_constants(doc, n) for n in lengths]))
    headline = [*forced_sentence(choice), sentence]  # what the index says
    sentences = [*headline, *([s] if (s := weakest_sentence(weakest)) else [])]
    out.summary = finite_or_none({
        "format": FORMAT, "family": family_facts(choice), "program": program_facts, "agreement": agreement,
        "by_kind": kinds, "interchange": iia.to_dict(orient="records"), "weakest_pair": weakest,
        "baseline": {"name": "exact palindrome check", "logit_by_class": {"palindrome": baseline[True],
                                                                          "not_palindrome": baseline[False]}},
        "targets": {k: getattr(params, k) for k in ("agreement_target", "error_recall_target",
                                                    "error_precision_target", "iia_target", "iia_control_max")},
        "runs_program": runs, "sentences": sentences, "headline": headline,
        "files": [PROGRAM, CONSTANTS, AGREEMENT, SUMMARY]})
    out.program, out.constants, out.agreement, out.interchange = source, doc, table, iia
    return out


def write_explanation(out_dir: str | os.PathLike[str], result: Explanation) -> None:
    """data/explanation/: summary.json always; program.py, constants.json and agreement.parquet with a program."""
    with atomic_dir(out_dir) as tmp:
        if result.program is not None:
            write_text(Path(tmp) / PROGRAM, result.program)
            write_json(Path(tmp) / CONSTANTS, result.constants)
            save_table(result.agreement, Path(tmp) / AGREEMENT, AGREEMENT_SCHEMA)
        write_json(Path(tmp) / SUMMARY, result.summary)
