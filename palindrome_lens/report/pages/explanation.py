"""The explanation page: the program compiled from the model (data/explanation/program.py), its constants as
heatmaps, how much of the model it reproduces (decisions, the model's own errors, the logit difference within
each class) beside the exact palindrome check, and the interchange interventions that align its variables
with the model's nodes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from palindrome_lens.explanation.sentences import pair_constants
from palindrome_lens.explanation.template import CONSTANTS_MARKER
from palindrome_lens.report.code import Code
from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.explanation_inputs import ExplanationInputs
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.plots import SERIES, Panel, heatmap_grid, subplot_grid, symmetric_limit

FILENAME = "explanation.html"
TITLE = "The explanation as a program"
NAV = "Explanation"
SUMMARY = ("the mechanism compiled into a short program, how much of the model it reproduces (its errors "
           "included), and interchange interventions that align the program with the model")
SCATTER_POINTS = 3000
FIGURE_ROWS = (("agreement", "decisions alike"), ("model_errors", "the model's errors"),
               ("errors_reproduced", "of them reproduced"), ("error_recall", "error recall"),
               ("error_precision", "error precision"), ("r2", "R^2 within a class (mean over classes)"),
               ("spearman", "Spearman within a class (mean over classes)"))
ERROR_COLUMNS = ["set", "text", "kind", "pair_pos", "old", "new", "label", "model_logit_diff", "program_logit_diff"]


def figures_table(agreement: dict[str, Any]) -> pd.DataFrame:
    """One row per figure: the program and the exact palindrome check, on test and on the single edits."""
    rows = []
    for key, name in FIGURE_ROWS:
        row: dict[str, Any] = {"figure": name}
        for part in ("test", "edits"):
            f = agreement[part]
            program = f.get(key)
            baseline = {"agreement": f["baseline_agreement"], "model_errors": f["model_errors"],
                        "errors_reproduced": 0 if f["model_errors"] else None,
                        "error_recall": f["baseline_error_recall"], "error_precision": None,
                        "r2": f["baseline_r2"], "spearman": f["baseline_spearman"]}[key]
            shown = pct if key in ("agreement", "error_recall", "error_precision") else (
                lambda v: "n/a" if v is None else (str(v) if isinstance(v, int) else num(v)))
            row[f"{part}: program"] = shown(program)
            row[f"{part}: exact check"] = shown(baseline)
        rows.append(row)
    return pd.DataFrame(rows)


def class_table(agreement: dict[str, Any]) -> pd.DataFrame:
    rows = [{"set": part, "class": cls, "n": c["n"], "model's std": c["model_std"], "R^2": c["r2"],
             "Spearman": c["spearman"], "exact check R^2": c["baseline_r2"], "exact check Spearman": c["baseline_spearman"]}
            for part in ("test", "edits") for cls, c in agreement[part]["by_class"].items()]
    return pd.DataFrame(rows)


def scatter_figure(agreement: pd.DataFrame) -> go.Figure:
    """Program against model logit difference, single edits and test palindromes (a deterministic sample)."""
    panels = [("single edits (not palindromes)", agreement[(agreement["set"] == "edits") & ~agreement["label"]]),
              ("test palindromes", agreement[(agreement["set"] == "test") & agreement["label"]]),
              ("test non-palindromes", agreement[(agreement["set"] == "test") & ~agreement["label"]])]
    panels = [(t, p) for t, p in panels if len(p)]
    fig = subplot_grid(len(panels), 3, [t for t, _ in panels], 320)
    for i, (title, part) in enumerate(panels):
        step = max(1, len(part) // SCATTER_POINTS)
        shown = part.iloc[::step]
        fig.add_trace(go.Scattergl(x=shown["model_logit_diff"], y=shown["program_logit_diff"], mode="markers",
                                   marker={"size": 4, "color": SERIES[i], "opacity": 0.5}, name=title,
                                   text=shown["text"], hovertemplate="%{text}<br>model %{x:.3f}, program %{y:.3f}"
                                                                     "<extra></extra>"), row=1, col=i + 1)
    fig.update_layout(showlegend=False)
    return label_figure(fig, "Program against model: logit difference within each class", "model's logit difference",
                        "program's logit difference")


def reader_head(pairs: pd.DataFrame) -> str:
    """The readout head whose evidence separates broken from matched pairs most."""
    return str(pairs[pairs["table"] == "evidence"].groupby("head")["gap"].mean().abs().idxmax())


def pair_heatmaps(constants: dict[str, Any], length: int, head: str, table: str) -> go.Figure:
    """Per mirrored pair, the head's `table` (salience or evidence) for each (left, right) character pair: the
    mean of the left position's entry (own=left, mirror=right) and the right position's (own=right, mirror=left)."""
    entry = next(h for h in constants["lengths"][str(length)]["heads"] if h["name"] == head)
    values = np.asarray(entry[table], dtype=np.float64)
    alphabet = ["".join(chr(c)) for c in constants["alphabet"]]
    panels = []
    for pair in range(length // 2):
        strength = (values[pair] + values[length - 1 - pair].T) / 2
        panels.append(Panel(f"pair {pair}: positions {pair + 1}↔{length - pair}", strength, alphabet, alphabet))
    limit = symmetric_limit(np.stack([p.z for p in panels]) - np.median(np.stack([p.z for p in panels])))
    middle = float(np.median(np.stack([p.z for p in panels])))
    return heatmap_grid(panels, f"{head}'s {table} per pair (strings of length {length})", "right character",
                        "left character", table, cols=min(3, len(panels)), zmin=middle - limit, zmax=middle + limit,
                        zmid=middle)


def error_tables(agreement: pd.DataFrame, n: int) -> list[Section]:
    wrong = agreement[~agreement["model_correct"]]
    predicted, missed = wrong[~wrong["program_correct"]], wrong[wrong["program_correct"]]
    invented = agreement[agreement["model_correct"] & ~agreement["program_correct"]]
    caption = ("Both logit differences (logit[palindrome] − logit[not], > 0 = palindrome); set is test or the single "
               "edits, pair_pos the broken pair, old → new the edit. ")
    out = []
    for title, part, what in (("The model's errors the program predicts", predicted, "the program errs the same way"),
                              ("The model's errors the program misses", missed, "the program decides right"),
                              ("Errors the program invents", invented, "the model decides right")):
        body = (Table(part[ERROR_COLUMNS].head(n).reset_index(drop=True)) if len(part)
                else Text(f"None ({len(wrong)} model errors in all)."))
        out.append(Section(f"{title} ({min(n, len(part))} of {len(part)})", caption + f"Rows where {what}.", body))
    return out


def iia_table(interchange: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(interchange)
    if frame.empty:
        return frame
    return frame[["length", "variable", "alignment", "node", "kind", "positions", "n", "n_changed", "iia_changed",
                  "iia_all"]].rename(columns={"iia_changed": "IIA (decision-changing)", "iia_all": "IIA (all pairs)",
                                              "n_changed": "decision-changing pairs", "positions": "patched positions"})


def weakest_table(weakest: dict[str, Any] | None, pairs: pd.DataFrame) -> pd.DataFrame:
    if not weakest:
        return pd.DataFrame()
    gaps = pairs[(pairs["length"] == weakest["length"]) & (pairs["head"] == weakest["reader"])].pivot(
        index="pair", columns="table", values="gap")
    rows = []
    for r in weakest["per_pair"]:
        rows.append({"pair": r["pair"], "edits": r["n"], "model wrong": r["model_wrong"],
                     "program wrong": r["program_wrong"], "model's mean margin": r["mean_margin"],
                     **{f"{weakest['reader']} {t} gap": gaps.loc[r["pair"], t] for t in gaps.columns}})
    return pd.DataFrame(rows)


def logic_part(source: str) -> str:
    return source[:source.index(CONSTANTS_MARKER)].rstrip() + "\n"


def explanation_page(explanation: ExplanationInputs | None, n_examples: int) -> Page:
    if explanation is None:
        return Page(FILENAME, TITLE, "No explanation to show.", [Section(
            "No explanation", "The explain stage writes data/explanation/; this report was built without it.",
            Text("The explain stage's output was not given to the report."))], nav_label=NAV)
    summary = explanation.summary
    lead = Section("The explanation in one paragraph", (
        "Written by the explain stage, each claim gated: 'the model runs this program' only when decision agreement "
        "(test and single edits), the recall and precision of the model's own errors, and every program variable's "
        "interchange-intervention accuracy pass their targets, with every wrong-position control at or below its "
        "maximum."), Text("\n\n".join(summary["sentences"])))
    family = summary["family"]
    if not explanation.has_program:
        facts = pd.DataFrame([{"fact": k, "value": str(v)} for k, v in family.items()])
        return Page(FILENAME, TITLE, "No program was compiled for this run.", [
            lead, Section("Hypothesis family", "What circuit.json supports and why no template applies.", Table(facts))],
            nav_label=NAV)
    if family["name"] == "string_level":
        return string_level_page(explanation, lead, n_examples)
    program, agreement = summary["program"], summary["agreement"]
    constants, table = explanation.constants, explanation.agreement
    length = max(program["lengths"])
    pairs = pair_constants(constants, length)
    head = reader_head(pairs)
    intro = (f"The attribute stage's supported hypothesis '{family['hypothesis']}' ({family['source']}) is the "
             f"pair-comparison family, so the explain stage compiled it into data/explanation/program.py: "
             f"{program['logic_lines']} lines of logic, {program['n_read']} numbers read from the model's own components "
             f"on controlled strings and {program['n_fitted']} fitted on the train split. Run it with `python "
             "data/explanation/program.py TEXT`.")
    provenance = pd.DataFrame(constants["provenance"])
    sections = [
        lead,
        Section("The program", (
            "The logic of program.py, up to its constants (the tables are shown as heatmaps below; the whole file, "
            "numbers included, is data/explanation/program.py). Every figure on this page is this program's: the "
            f"stage checks that the file gives the measured numbers on {program['checked_rows']} strings (largest "
            f"difference {num(program['check_max_difference'], 2)})."), Code(logic_part(explanation.source)),
            anchor="program"),
        Section("Agreement with the model", (
            "On the test split and on every single edit of the attribute stage's test palindromes. Beside the program, "
            "the exact palindrome check: it decides by the label (so it never reproduces an error) and outputs one "
            "logit difference per class. R^2 and Spearman compare the logit differences within each class (the logit "
            "difference is bimodal: across classes any right answer scores ~1), averaged over the classes present."),
            Table(figures_table(agreement))),
        Section("Within each class", "R^2 and Spearman of the program's logit difference against the model's, per "
                "class; the model's standard deviation says how much there is to explain.", Table(class_table(agreement))),
        Section("By kind (test split)", "The same figures per kind of string and class.",
                Table(pd.DataFrame(summary["by_kind"]))),
        Section("Program against model", (
            f"Each point is a string (every {max(1, len(table) // SCATTER_POINTS)}th at most of each set): on the "
            "diagonal the program predicts the model's logit difference exactly."), Figure(scatter_figure(table))),
        Section("Mismatch evidence per pair", (
            f"The evidence table of {head} (the readout head whose evidence separates broken from matched pairs "
            "most), per mirrored pair, for each left and right character: the diagonal is a matched pair. Read from "
            "the head's value at the pair's positions, projected on its evidence direction."),
            Figure(pair_heatmaps(constants, length, head, "evidence"))),
        Section("Mismatch salience per pair", (
            f"{head}'s attention score from the readout to the pair's positions, per left and right character: a "
            "broken pair that scores high draws the readout's attention."),
            Figure(pair_heatmaps(constants, length, head, "salience"))),
        *error_tables(table, n_examples),
        Section("Interchange interventions", (
            "Per program variable (a pair's comparison): the program runs on a base test string with that pair "
            "comparing a source string's characters, the model with the node patched at that pair's positions from "
            "the source's run; IIA is the share of (base, source) pairs where they then decide alike, on the pairs "
            "where the intervention changes the program's decision and on all. 'resid' is the residual stream after "
            "the hypothesis' layer, 'writer' the circuit's component there; 'control' patches the next pair's "
            f"positions instead and must score far lower (target {pct(summary['targets']['iia_target'], 0)}, control "
            f"at most {pct(summary['targets']['iia_control_max'], 0)})."), Table(iia_table(summary["interchange"]))),
        Section("The weakest pair", (
            "Per pair: the single edits, how many the model and the program get wrong, the model's mean margin, and "
            "from the constants alone the reader head's salience and evidence of a broken pair minus a matched one "
            "(at the stronger of the pair's two positions: in a causal model only the later one sees its mirror)."),
            Table(weakest_table(summary["weakest_pair"], pairs))),
        Section("Where each constant comes from", (
            f"{program['n_read']} numbers are read from the model, {program['n_fitted']} fitted (constants.json holds "
            "them all with this provenance)."), Table(provenance)),
    ]
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)


def string_level_page(explanation: ExplanationInputs, lead: Section, n_examples: int) -> Page:
    """The string-level family: its program, agreement and provenance (no pair tables, no interchange)."""
    summary, table = explanation.summary, explanation.agreement
    program, family = summary["program"], summary["family"]
    intro = (f"The attribute stage's supported hypothesis '{family['hypothesis']}' ({family['source']}) is the "
             f"string-level family: the answer is computed at every character position in layer 0. The explain stage "
             f"compiled data/explanation/program.py (ladder level {program['level']}): {program['logic_lines']} lines "
             f"of logic, {program['n_read']} numbers read from the model and {program['n_fitted']} fitted. Run it with "
             "`python data/explanation/program.py TEXT`.")
    sections = [
        lead,
        Section("The program", (
            "The logic of program.py, up to its constants. The stage checks that the file gives the measured numbers "
            f"on {program['checked_rows']} strings (largest difference {num(program['check_max_difference'], 2)})."),
            Code(logic_part(explanation.source)), anchor="program"),
        Section("Agreement with the model", "On the test split and on every single edit of the test palindromes, "
                "beside the exact palindrome check.", Table(figures_table(summary["agreement"]))),
        Section("Within each class", "R^2 and Spearman of the program's logit difference against the model's, per "
                "class.", Table(class_table(summary["agreement"]))),
        Section("By kind (test split)", "The same figures per kind of string and class.",
                Table(pd.DataFrame(summary["by_kind"]))),
        Section("Program against model", "Each point is a string: on the diagonal the program predicts the model's "
                "logit difference exactly.", Figure(scatter_figure(table))),
        *error_tables(table, n_examples),
        Section("Where each constant comes from", (
            f"{program['n_read']} numbers are read from the model, {program['n_fitted']} fitted."),
            Table(pd.DataFrame(explanation.constants["provenance"]))),
    ]
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
