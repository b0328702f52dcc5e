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
from palindrome_lens.attribution.schemas import SCHEMAS
from palindrome_lens.data.strings import is_palindrome
from palindrome_lens.errors import AnalysisError
from palindrome_lens.explanation.agreement import (
    agreement_table,
    by_kind,
    class_means,
    figures,
    finite_or_none,
)
from palindrome_lens.explanation.ceiling import feature_ceiling
from palindrome_lens.explanation.constants import FORMAT as CONSTANTS_FORMAT
from palindrome_lens.explanation.constants import counts, length_entry, provenance
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.failures import propose, random_edits, scores
from palindrome_lens.explanation.family import STRING_LEVEL_FAMILY, FamilyChoice, choose_family
from palindrome_lens.explanation.files import (
    AGREEMENT,
    AGREEMENT_SCHEMA,
    CONSTANTS,
    FAILURES,
    FAILURES_SCHEMA,
    FORMAT,
    PROGRAM,
    PROGRAMS,
    SUMMARY,
    VIEWS,
)
from palindrome_lens.explanation.graded import graded_changes, score
from palindrome_lens.explanation.interchange import interchange
from palindrome_lens.explanation.ladder import ladder
from palindrome_lens.explanation.layer_zero import check_reading, read_zero, zero_applies
from palindrome_lens.explanation.levels import BuiltLevel, build_ladder
from palindrome_lens.explanation.program import run_program
from palindrome_lens.explanation.readout import fit_readout, quadratic_terms
from palindrome_lens.explanation.sentences import (
    ceiling_sentence,
    forced_sentence,
    gate_checks,
    iia_facts,
    ladder_sentence,
    pair_constants,
    program_pick,
    verdict,
    weakest_pair,
    weakest_sentence,
)
from palindrome_lens.explanation.tables import read_tables, reader_layers
from palindrome_lens.explanation.template import head_name, logic_lines, render_level
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.readout import readout_of
from palindrome_lens.params import ExplainParams

CHECK_ROWS = 200  # strings per set on which the written program.py must give the measured numbers
CHECK_ROWS_LAYER0 = 10  # the same for a level that runs layer 0 in pure Python (about 20 ms a string)
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
    levels: dict[str, str] = field(default_factory=dict)  # programs/<level>.py sources
    failures: pd.DataFrame | None = None
    views: dict[str, pd.DataFrame] = field(default_factory=dict)  # failure_views/: per_example.failure_views
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


def model_size(clf: Classifier) -> int:
    """The model's number of parameters as its weights file holds them (every tensor of the state dict)."""
    return int(sum(t.numel() for t in clf.model.state_dict().values()))


def measure(built: BuiltLevel, test: pd.DataFrame, test_model: np.ndarray, edits: pd.DataFrame,
            baseline: dict[bool, float]) -> tuple[pd.DataFrame, dict[str, Any], list, float]:
    """A level's agreement.parquet rows, its figures per set and per kind, and the check that its program file
    gives them."""
    test_program, edits_program = built.logit_diff(test["text"].tolist()), built.logit_diff(edits["text"].tolist())
    rows = CHECK_ROWS_LAYER0 if built.level.layer_zero else CHECK_ROWS
    sample = test["text"].tolist()[:rows] + edits["text"].tolist()[:rows]
    gap = check_program(built.source, sample, np.concatenate([test_program[:rows], edits_program[:rows]]))
    table = agreement_table(test, test_model, test_program, edits, edits_program)
    agreement = {name: figures(table[table["set"] == name], baseline) for name in ("test", "edits")}
    kinds = [{"set": name, **row} for name in ("test", "edits") for row in by_kind(table[table["set"] == name], baseline)]
    return table, agreement, kinds, gap


def level_row(built: BuiltLevel, agreement: Mapping[str, Any], kinds: list, iia: pd.DataFrame,
              checks: Mapping[str, bool | None], n_model: int) -> dict[str, Any]:
    test, edits = agreement["test"], agreement["edits"]
    resid = iia_facts(iia, "resid")
    return {"name": built.name, "adds": built.level.adds, "file": f"{PROGRAMS}/{built.filename}",
            "n_read": built.n_read, "n_fitted": built.n_fitted, "n_total": built.n_read + built.n_fitted,
            "n_model": n_model, "bytes": len(built.source.encode()), "logic_lines": logic_lines(built.source),
            "agreement_test": test["agreement"], "agreement_edits": edits["agreement"],
            "model_errors": edits["model_errors"], "program_errors": edits["program_errors"],
            "errors_reproduced": edits["errors_reproduced"], "error_recall": edits["error_recall"],
            "error_precision": edits["error_precision"], "r2_edits": edits["r2"], "spearman_edits": edits["spearman"],
            "r2_test": test["r2"], "spearman_test": test["spearman"], "by_kind": kinds,
            "iia_min": resid["min"], "iia_control_max": resid["control_max"],
            "gates": dict(checks), "failed": [name for name, ok in checks.items() if ok is False],
            "passes": all(ok is not False for ok in checks.values())}


def find_failures(clf: Classifier, built: list[BuiltLevel], lengths: list[int], params: ExplainParams,
                  seed: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every level's proposals shown to the model, and the scores against `explain.failure_random_edits` single
    edits of fresh random palindromes, drawn uniformly (failures.random_edits)."""
    proposals = propose([(b.name, b.logit_diff) for b in built if b.level.pairs != "none"], clf.tokenizer.alphabet,
                        lengths, params.failure_chars, params.failure_proposals)
    if proposals.empty:
        return proposals, []
    model = forward_logit_diff(clf.model, clf.encode(proposals["text"].tolist()), params.batch_size).cpu().numpy()
    proposals["model_logit_diff"] = model.astype(np.float64)
    proposals["model_wrong"] = (model > 0) != proposals["label"].to_numpy()
    drawn = random_edits(clf.tokenizer.alphabet, lengths, params.failure_random_edits, seed)
    drawn_logits = forward_logit_diff(clf.model, clf.encode(drawn), params.batch_size).cpu().numpy()
    drawn_labels = np.array([t == t[::-1] for t in drawn])  # an odd length's centre edited stays a palindrome
    random_wrong = int(((drawn_logits > 0) != drawn_labels).sum())
    table = proposals[["text", "length", "label", "level", "pattern", "model_logit_diff", "program_logit_diff",
                       "model_wrong"]].reset_index(drop=True)
    return table, scores(proposals, random_wrong, len(drawn))


def ceiling_facts(ceiling: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """summary.json's ceiling: per variant and set, decisions alike and the within-class fit."""
    return {variant: {name: {k: sets[name][k] for k in ("agreement", "spearman", "r2")} for name in ("test", "edits")}
            for variant, sets in ceiling.items()}


def algorithm_facts(built: BuiltLevel, row: Mapping[str, Any], n_model: int) -> dict[str, Any]:
    """The algorithm level in words, with its numbers: what the index's first screen states."""
    first = built.constants["lengths"][min(built.constants["lengths"], key=int)]
    parts = []
    for head in first["heads"]:
        sal, ev = head["salience"], head["evidence"]
        parts.append(f"{head_name(head['name'])} attends to a broken pair with salience {np.mean(sal['broken']):+.2f} "
                     f"against {np.mean(sal['match']):+.2f} for a matched one and reads evidence "
                     f"{np.mean(ev['broken']):+.2f} from it against {np.mean(ev['match']):+.2f} (means over positions)")
    text = ("Each character position compares its own character with its mirror's; the readout heads weigh the "
            "positions by salience and average their evidence, which a broken pair moves: " + "; ".join(parts) +
            f". {built.n_read} numbers read and {built.n_fitted} fitted ({(built.n_read + built.n_fitted) / n_model:.2%} "
            f"of the model's {n_model:,} parameters).")
    evidence = (f"It decides like the model on {row['agreement_test']:.2%} of test strings and {row['agreement_edits']:.2%} "
                f"of single edits; within a class its logit difference follows the model's with Spearman "
                f"{row['spearman_edits'] or 0:.2f} on the edits (the exact check: 0).")
    return {"level": built.name, "text": text, "evidence": evidence, "file": f"{PROGRAMS}/{built.filename}"}


def explain(clf: Classifier, circuit: Mapping[str, Any], train: pd.DataFrame, test: pd.DataFrame,
            edits: pd.DataFrame, params: ExplainParams, seed: int) -> Explanation:
    """Everything in memory. `edits` is the attribute stage's adversarial.parquet (with the model's logits)."""
    model = clf.model
    model.eval()
    choice = choose_family(circuit, params.family)
    if not choice.has_template:
        return no_program(choice, choice.reason)
    if choice.name == STRING_LEVEL_FAMILY:
        from palindrome_lens.explanation.string_run import (
            explain_string_level,  # it imports this module's parts
        )
        return explain_string_level(clf, choice, train, test, edits, params, seed)
    if choice.after_layer >= model.cfg.n_layers - 1:
        return no_program(choice, f"the hypothesis puts the comparison after layer {choice.after_layer}, the last "
                                  "layer; the pair-comparison template needs a later layer to read it")
    lengths = sorted(int(n) for n in (clf.lengths or test["length"].unique()))
    out, start = Explanation({}), time.perf_counter()
    readers = reader_layers(int(choice.after_layer), model.cfg.n_layers)
    tables = {n: read_tables(model, clf.tokenizer, n, params.n_contexts, params.context_dims, params.batch_size, seed,
                             readers) for n in lengths}
    readings = None
    if zero_applies(model, readers):
        readings = {n: read_zero(model, clf.tokenizer, tables[n], params.batch_size) for n in lengths}
    start = out.lap("tables", start)
    doc, fit_texts, fit_logits = fit_program(clf, choice, tables, train, params, seed)
    for reading in (readings or {}).values():
        check_reading(model, clf.tokenizer, reading, fit_texts, params.batch_size)
    baseline = class_means(fit_logits, np.array([is_palindrome(t) for t in fit_texts]))
    n_model = model_size(clf)
    built = build_ladder(ladder(params.rank, params.context_dims, readings is not None), tables, doc, n_model,
                         fit_texts, fit_logits, baseline, readings)
    start = out.lap("ladder", start)
    out.seconds.update({f"level {b.name}": b.seconds for b in built})  # printed, never written: outputs stay identical
    test_model = forward_logit_diff(model, clf.encode(test["text"].tolist()), params.batch_size).cpu().numpy()
    measured = [measure(b, test, test_model.astype(np.float64), edits, baseline) for b in built]
    start = out.lap("agreement", start)
    programs = {b.name: b.logit_diff for b in built}
    iia_all = interchange(model, clf.tokenizer, programs, test, circuit, int(choice.after_layer), lengths,
                          params.n_interchange, seed, params.batch_size)
    start = out.lap("interchange", start)
    changes = graded_changes(model, clf.tokenizer, test, int(choice.after_layer), lengths, params.n_graded, seed,
                             params.batch_size)
    graded = score(changes, programs)
    start = out.lap("graded", start)
    failures, failure_scores = find_failures(clf, built, lengths, params, seed)
    start = out.lap("failures", start)
    ceiling = feature_ceiling(model, clf.encode, tables, Emulator(doc), fit_texts, fit_logits, test,
                              test_model.astype(np.float64), edits, baseline, params.batch_size)
    start = out.lap("ceiling", start)
    rows = []
    for b, (_, agreement, kinds, _) in zip(built, measured):
        iia = iia_all[iia_all["level"] == b.name]
        rows.append(level_row(b, agreement, kinds, iia, gate_checks(agreement, iia, params), n_model))
    chosen = next((i for i, r in enumerate(rows) if r["passes"]), None)
    pick = program_pick(rows, n_model)
    program_level, (table, agreement, kinds, _) = built[pick], measured[pick]
    source = render_level(program_level.constants)  # the same program, named program.py
    iia = iia_all[iia_all["level"] == program_level.name].drop(columns="level").reset_index(drop=True)
    first = tables[lengths[0]]
    checked = CHECK_ROWS_LAYER0 if program_level.level.layer_zero else CHECK_ROWS
    program_facts = {"level": program_level.name, "logic_lines": logic_lines(source), "bytes": len(source.encode()),
                     "n_read": program_level.n_read, "n_fitted": program_level.n_fitted, "n_model": n_model,
                     "readout_heads": [h.name for h in first.heads], "context_heads": [c.name for c in first.context],
                     "context_dims": int(first.context_directions.shape[0]), "lengths": lengths,
                     "checked_rows": min(checked, len(test)) + min(checked, len(edits)),
                     "check_max_difference": max(m[3] for m in measured), "fit_strings": len(fit_texts)}
    runs, sentence = verdict(agreement, iia, params, program_facts)
    ladder_text = ladder_sentence(rows, None if chosen is None else program_level.name, n_model, program_level.name)
    weakest = weakest_pair(table[table["set"] == "edits"], pd.concat([pair_constants(doc, n) for n in lengths]))
    headline = [*forced_sentence(choice), sentence, ladder_text]  # what the index says
    ceiling_text = ceiling_sentence(ceiling, rows[-1], params)
    sentences = [*headline, *([ceiling_text] if ceiling_text else []),
                 *([s] if (s := weakest_sentence(weakest)) else [])]
    algorithm = next((b for b in built if b.name == "algorithm"), None)
    out.summary = finite_or_none({
        "format": FORMAT, "family": family_facts(choice), "program": program_facts, "agreement": agreement,
        "by_kind": kinds,
        "interchange": iia.to_dict(orient="records"), "weakest_pair": weakest,
        "levels": rows, "ceiling": ceiling_facts(ceiling), "program_level": program_level.name,
        "passing_level": None if chosen is None else program_level.name, "n_model": n_model, "graded": graded, "failures": failure_scores,
        "algorithm": None if algorithm is None else algorithm_facts(algorithm, rows[built.index(algorithm)], n_model),
        "baseline": {"name": "exact palindrome check", "logit_by_class": {"palindrome": baseline[True],
                                                                          "not_palindrome": baseline[False]}},
        "targets": {k: getattr(params, k) for k in ("agreement_target", "error_recall_target", "error_precision_target",
                                                    "min_errors", "spearman_target", "r2_target", "iia_target",
                                                    "iia_control_max")},
        "runs_program": runs, "sentences": sentences, "headline": headline,
        "files": [PROGRAM, CONSTANTS, AGREEMENT, SUMMARY, FAILURES, *(f"{PROGRAMS}/{b.filename}" for b in built)]})
    out.program, out.constants, out.agreement, out.interchange = source, doc, table, iia
    out.levels = {b.filename: b.source for b in built}
    out.failures = failures
    return out


def write_explanation(out_dir: str | os.PathLike[str], result: Explanation) -> None:
    """data/explanation/: summary.json always; program.py, constants.json and agreement.parquet with a program;
    failures.parquet and failure_views/ when the failure search proposed strings / the model got some wrong."""
    with atomic_dir(out_dir) as tmp:
        if result.program is not None:
            write_text(Path(tmp) / PROGRAM, result.program)
            write_json(Path(tmp) / CONSTANTS, result.constants)
            save_table(result.agreement, Path(tmp) / AGREEMENT, AGREEMENT_SCHEMA)
            (Path(tmp) / PROGRAMS).mkdir()
            for filename, source in result.levels.items():
                write_text(Path(tmp) / PROGRAMS / filename, source)
            if result.failures is not None and len(result.failures):
                save_table(result.failures, Path(tmp) / FAILURES, FAILURES_SCHEMA)
            if result.views:
                (Path(tmp) / VIEWS).mkdir()
            for name, frame in result.views.items():
                save_table(frame, Path(tmp) / VIEWS / f"{name}.parquet", SCHEMAS[name])
        write_json(Path(tmp) / SUMMARY, result.summary)
