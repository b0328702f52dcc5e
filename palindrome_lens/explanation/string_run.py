"""The explain analysis for the string-level family: read layer 0, fit the small readout on the train split, build
the ladder (the exact floor, then the string-level program), score every level like the pair-comparison family
and write the same files. Interchange and graded interventions change one mirrored pair's comparison, a variable
this family's program does not have: they are reported as not applicable."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.data.strings import is_palindrome
from palindrome_lens.explanation.agreement import class_means, finite_or_none
from palindrome_lens.explanation.constants import FORMAT as CONSTANTS_FORMAT
from palindrome_lens.explanation.constants import rounded
from palindrome_lens.explanation.family import FamilyChoice
from palindrome_lens.explanation.files import (
    AGREEMENT,
    CONSTANTS,
    FAILURES,
    FORMAT,
    PROGRAM,
    PROGRAMS,
    SUMMARY,
)
from palindrome_lens.explanation.ladder import Level
from palindrome_lens.explanation.levels import BuiltLevel, build_exact
from palindrome_lens.explanation.readout import fit_readout, n_fitted
from palindrome_lens.explanation.sentences import (
    errors_text,
    gate_checks,
    ladder_sentence,
    num,
    pct,
    program_pick,
)
from palindrome_lens.explanation.string_level import (
    SpreadEmulator,
    SpreadProgram,
    SpreadTables,
    check_layer0,
    length_read,
    read_spread,
    readout_directions,
    resid_post,
    rounded_spread,
    shared_read,
)
from palindrome_lens.explanation.string_template import render_string_level
from palindrome_lens.explanation.template import level_filename, logic_lines, render_level
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.readout import readout_of
from palindrome_lens.params import ExplainParams

DIMS = 2  # readout directions: the class-mean difference and one principal direction beside it
NOT_APPLICABLE = ("interchange and graded interventions set one mirrored pair's comparison; the string-level "
                  "program has no per-pair variable, so they are not applicable to this family")
LEVELS = [
    Level("exact", "the floor: the exact palindrome check, with the model's mean logit difference per class", "none"),
    Level("string_level", "layer 0 as the model computes it: per head, each character position's attention over the "
                          "whole string and what each (position, character) contributes; MLP 0 on that average; a "
                          "readout of the mean over positions on a few directions", "string"),
]


def fit_spread(t: SpreadTables, codes: np.ndarray, logits: np.ndarray, palindrome: np.ndarray) -> SpreadProgram:
    """One length's program: the read tables (rounded), the readout directions over the fit strings and the readout
    fitted to the model's logits there."""
    t = rounded_spread(t)
    mean_post = resid_post(t, codes).mean(axis=1)
    directions = np.asarray(rounded(readout_directions(mean_post, palindrome, DIMS)))
    out_read = np.asarray(rounded(t.w_out @ directions.T)).reshape(t.w_out.shape[0], -1)
    b_out_read = np.asarray(rounded(t.b_out @ directions.T)).reshape(-1)
    k = directions.shape[0]
    blank = SpreadProgram(t, directions, out_read, b_out_read, np.zeros(k + 1), {})
    gate, sides = fit_readout(blank.features(codes), k, logits)
    return dataclasses.replace(blank, gate=np.asarray(rounded(gate)),
                               readout={s: np.asarray(rounded(c)) for s, c in sides.items()})


def constants_of(programs: Mapping[int, SpreadProgram], alphabet: str, n_model: int) -> dict[str, Any]:
    """What the string-level program holds (its template's input)."""
    first = programs[min(programs)].tables
    lengths = {}
    for n, p in programs.items():
        t = p.tables
        lengths[str(n)] = {
            "pos_embed": t.pos_embed.tolist(),
            "bos_key": t.special_key["bos"].tolist(), "bos_value": t.special_value["bos"].tolist(),
            "eos_key": t.special_key["eos"].tolist() if "eos" in t.special_key else [],
            "eos_value": t.special_value["eos"].tolist() if "eos" in t.special_value else [],
            "directions": p.directions.tolist(), "out_read": p.out_read.T.tolist(),
            "b_out_read": p.b_out_read.tolist(), "gate": p.gate.tolist(),
            "readout": {s: c.tolist() for s, c in p.readout.items()}}
    k = programs[min(programs)].directions.shape[0]
    def ln(weights: tuple | None) -> dict[str, Any] | None:
        return None if weights is None else {"weight": weights[0].tolist(), "bias": weights[1].tolist(),
                                             "eps": weights[2]}

    heads = {name: getattr(first, name).tolist() for name in ("w_q", "b_q", "w_k", "b_k", "w_v", "b_v", "w_o")}
    return {"name": "string_level", "act_fn": first.act_fn, "causal": first.causal, "b_o": first.b_o.tolist(),
            "char_embed": first.char_embed.tolist(), "ln1": ln(first.ln1), "heads": heads, "ln2": ln(first.ln2),
            "w_in": first.w_in.T.tolist(), "b_in": first.b_in.tolist(), "alphabet": [ord(c) for c in alphabet],
            "n_read": shared_read(first) + sum(length_read(p) for p in programs.values()),
            "n_fitted": len(programs) * n_fitted(k, k), "n_model": n_model, "lengths": lengths}


def build_string_level(clf: Classifier, lengths: list[int], fit_texts: list[str], fit_logits: np.ndarray,
                       n_model: int, batch_size: int) -> tuple[BuiltLevel, float]:
    """The string-level level and the largest relative difference between the read layer 0 and the model's."""
    start = time.perf_counter()
    alphabet = clf.tokenizer.alphabet
    index = {c: i for i, c in enumerate(alphabet)}
    fit_lengths = np.array([len(t) for t in fit_texts])
    programs, gap = {}, 0.0
    for n in lengths:
        rows = np.flatnonzero(fit_lengths == n)
        texts = [fit_texts[i] for i in rows]
        tables = read_spread(clf.model, clf.tokenizer, n, batch_size)
        gap = max(gap, check_layer0(clf.model, clf.tokenizer, tables, texts, batch_size))
        codes = np.array([[index[c] for c in t] for t in texts], dtype=np.int64).reshape(len(texts), n)
        programs[n] = fit_spread(tables, codes, fit_logits[rows], np.array([is_palindrome(t) for t in texts]))
    constants = constants_of(programs, alphabet, n_model)
    level = LEVELS[1]
    constants["adds"] = level.adds
    source = render_string_level(constants, level_filename(level.name))
    emulator = SpreadEmulator(alphabet, programs)
    return BuiltLevel(level, constants, source, emulator.logit_diff, time.perf_counter() - start), gap


def string_checks(agreement: Mapping[str, Any], params: ExplainParams) -> dict[str, bool | None]:
    """The pair-comparison gates, with alignment and its control not applicable (None)."""
    empty = pd.DataFrame(columns=["alignment", "node", "kind", "iia_changed"])
    return {**gate_checks(agreement, empty, params), "alignment": None, "the control": None}


def string_verdict(agreement: Mapping[str, Any], checks: Mapping[str, bool | None], params: ExplainParams,
                   program: Mapping[str, Any]) -> tuple[bool, str]:
    test, edits = agreement["test"], agreement["edits"]
    what = (f"The program (data/explanation/program.py; string-level family, ladder level {program['level']}: "
            f"{program['logic_lines']} lines of logic, {program['n_read']} numbers read from the model and "
            f"{program['n_fitted']} fitted)")
    figures = (f"it decides like the model on {pct(test['agreement'], 2)} of test strings and "
               f"{pct(edits['agreement'], 2)} of {edits['n']} single edits (target {pct(params.agreement_target, 2)}; "
               f"the exact palindrome check {pct(test['baseline_agreement'], 2)} and "
               f"{pct(edits['baseline_agreement'], 2)}); within a class its logit difference follows the model's with "
               f"Spearman {num(edits['spearman'])} and R^2 {num(edits['r2'])} on the edits (targets "
               f"{num(params.spearman_target)} and {num(params.r2_target)}) and {num(test['spearman'])} and "
               f"{num(test['r2'])} on test; on the edits {errors_text(edits, params.min_errors)}")
    if all(ok is not False for ok in checks.values()):
        return True, f"The model runs this program. {what}: {figures}; {NOT_APPLICABLE}."
    failed = ", ".join(name for name, ok in checks.items() if ok is False)
    return False, (f"{what} does not pass as the model's algorithm ({failed} below target). What it reproduces: "
                   f"{figures}; {NOT_APPLICABLE}.")


def provenance(n_fit: int) -> list[dict[str, str]]:
    return [
        {"constant": "char_embed, lengths[].pos_embed", "how": "read",
         "component": "blocks.0.hook_resid_pre as a character part plus a position part (checked to sum to it)",
         "inputs": "strings of one repeated character"},
        {"constant": "lengths[].bos_*, eos_*", "how": "read",
         "component": "layer 0: blocks.0.attn.hook_k (divided by the attention scale) and hook_v through W_O at [BOS] "
                      "and [EOS]", "inputs": "strings of one repeated character (the same at every string)"},
        {"constant": "ln1, heads (w_q, b_q, w_k, b_k, w_v, b_v, w_o), b_o, ln2, w_in, b_in", "how": "read",
         "component": "layer 0's LayerNorm, W_Q, b_Q, W_K and b_K (divided by the attention scale), W_V, b_V, W_O, "
                      "b_O, MLP 0's LayerNorm and W_in", "inputs": "the weights"},
        {"constant": "lengths[].directions, out_read, b_out_read", "how": "read",
         "component": "the class-mean difference of the mean layer-0 output over the character positions, then its "
                      "principal directions orthogonal to it; MLP 0's W_out and b_out through them",
         "inputs": f"the program's own layer 0 on {n_fit} fit strings (labels, no logits)"},
        {"constant": "lengths[].gate, readout", "how": "fitted",
         "component": "a logistic gate in the features (the model's decisions) and one quadratic per side (its logits)",
         "inputs": "the fit strings of the train split"},
    ]


def explain_string_level(clf: Classifier, choice: FamilyChoice, train: pd.DataFrame, test: pd.DataFrame,
                         edits: pd.DataFrame, params: ExplainParams, seed: int) -> Any:
    """The string-level family's Explanation (run.py's types; imported here to keep run.py the entry point)."""
    from palindrome_lens.explanation.run import (
        Explanation,
        family_facts,
        find_failures,
        fit_strings,
        level_row,
        measure,
        model_size,
    )

    model = clf.model
    # The template reads layer 0 only. Where the search puts the feature after a later layer, layer 0 is still
    # compiled and scored: how far it falls short is the measured reason there is no passing program.
    later = (f"The search puts the string-level feature after layer {choice.after_layer}, and this template reads "
             "layer 0 only: the program below is layer 0 with a fitted readout, so what it misses is what the later "
             "layers add." if choice.after_layer else None)
    lengths = sorted(int(n) for n in (clf.lengths or test["length"].unique()))
    out, start = Explanation({}), time.perf_counter()
    fit_texts = fit_strings(train, params, lengths, clf.tokenizer.alphabet, seed)
    fit_logits = forward_logit_diff(model, clf.encode(fit_texts), params.batch_size).cpu().numpy().astype(np.float64)
    baseline = class_means(fit_logits, np.array([is_palindrome(t) for t in fit_texts]))
    n_model = model_size(clf)
    spread, layer0_gap = build_string_level(clf, lengths, fit_texts, fit_logits, n_model, params.batch_size)
    built = [build_exact(LEVELS[0], clf.tokenizer.alphabet, baseline), spread]
    start = out.lap("ladder", start)
    test_model = forward_logit_diff(model, clf.encode(test["text"].tolist()), params.batch_size).cpu().numpy()
    measured = [measure(b, test, test_model.astype(np.float64), edits, baseline) for b in built]
    start = out.lap("agreement", start)
    failures, failure_scores = find_failures(clf, built, lengths, params, seed)
    start = out.lap("failures", start)
    empty_iia = pd.DataFrame(columns=["alignment", "node", "kind", "iia_changed"])
    rows = [level_row(b, agreement, kinds, empty_iia, string_checks(agreement, params), n_model)
            for b, (_, agreement, kinds, _) in zip(built, measured)]
    chosen = next((i for i, r in enumerate(rows) if r["passes"]), None)
    pick = program_pick(rows, n_model)
    program_level, (table, agreement, kinds, _) = built[pick], measured[pick]
    source = (render_string_level(program_level.constants) if program_level.name == "string_level"
              else render_level(program_level.constants))  # the same program, named program.py
    program_facts = {"level": program_level.name, "logic_lines": logic_lines(source), "bytes": len(source.encode()),
                     "n_read": program_level.n_read, "n_fitted": program_level.n_fitted, "n_model": n_model,
                     "lengths": lengths, "directions": DIMS, "layer0_check_max_difference": layer0_gap,
                     "checked_rows": min(200, len(test)) + min(200, len(edits)),
                     "check_max_difference": max(m[3] for m in measured), "fit_strings": len(fit_texts)}
    runs, sentence = string_verdict(agreement, rows[pick]["gates"], params, program_facts)
    ladder_text = ladder_sentence(rows, None if chosen is None else program_level.name, n_model, program_level.name)
    headline = [*([later] if later else []), sentence, ladder_text]
    doc = {"format": CONSTANTS_FORMAT, "family": choice.name, "hypothesis": choice.hypothesis,
           "after_layer": choice.after_layer, "alphabet": [ord(c) for c in clf.tokenizer.alphabet],
           "readout": readout_of(model).kind, "string_level": spread.constants,
           "counts": {"read": spread.n_read, "fitted": spread.n_fitted},
           "provenance": provenance(len(fit_texts))}
    out.summary = finite_or_none({
        "format": FORMAT, "family": family_facts(choice), "program": program_facts, "agreement": agreement,
        "by_kind": kinds, "interchange": [], "weakest_pair": None, "levels": rows,
        "program_level": program_level.name, "passing_level": None if chosen is None else program_level.name,
        "n_model": n_model, "graded": None, "failures": failure_scores, "algorithm": None,
        "not_applicable": {"interchange": NOT_APPLICABLE, "graded": NOT_APPLICABLE},
        "baseline": {"name": "exact palindrome check", "logit_by_class": {"palindrome": baseline[True],
                                                                          "not_palindrome": baseline[False]}},
        "targets": {k: getattr(params, k) for k in ("agreement_target", "error_recall_target", "error_precision_target",
                                                    "min_errors", "spearman_target", "r2_target")},
        "runs_program": runs, "sentences": [*headline, f"Not applicable: {NOT_APPLICABLE}."], "headline": headline,
        "files": [PROGRAM, CONSTANTS, AGREEMENT, SUMMARY, FAILURES, *(f"{PROGRAMS}/{b.filename}" for b in built)]})
    out.program, out.constants, out.agreement = source, doc, table
    out.interchange = empty_iia
    out.levels = {b.filename: b.source for b in built}
    out.failures = failures
    return out
