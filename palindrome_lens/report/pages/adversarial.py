"""The adversarial page: every single-character edit of some test palindromes, scored by the model; the
edits it gets wrong (counted per broken pair, and what they share), the closest calls, and which pair
positions are weak."""

from __future__ import annotations

import numpy as np
import pandas as pd

from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.failures import failure_pattern
from palindrome_lens.report.formatting import num, pcts
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.pages.evaluation import FEW_ERRORS
from palindrome_lens.report.pages.margins import margin_sections
from palindrome_lens.report.plots import count_axis, pair_bars

FILENAME = "adversarial.html"
TITLE = "Adversarial single edits"
NAV = "Adversarial"
SUMMARY = "every one-letter edit of test palindromes: the ones the model gets wrong and its weakest positions"
COLUMNS = ["source", "text", "position", "pair_pos", "old", "new", "label", "logit_diff", "margin"]


def by_position_figure(by_position: pd.DataFrame, value: str, title: str, y_title: str, percent: bool) -> Figure:
    accuracy = pcts(by_position["accuracy"].tolist(), 2)
    note = [f" ({w} wrong of {n}, accuracy {a})" for w, n, a in zip(by_position["n_wrong"], by_position["n"], accuracy)]
    cells = by_position.assign(note=note)
    values = cells.pivot(index="pair_pos", columns="length", values=value).astype(float)
    notes = cells.pivot(index="pair_pos", columns="length", values="note").fillna("")  # no note without a bar
    fig = pair_bars(values, notes, title, "broken pair", y_title, percent=percent)
    if value == "n_wrong":  # counts, each bar labelled 'k of n', on an axis that never stretches 0 to the top
        totals = cells.pivot(index="pair_pos", columns="length", values="n")
        for trace, length in zip(fig.data, values.columns):
            trace.text = [f"{int(w)} of {int(n)}" if np.isfinite(w) else "" for w, n in
                          zip(values[length], totals[length].fillna(0))]
            trace.textposition = "outside"
        count_axis(fig, float(np.nanmax(values.to_numpy())))
    return Figure(fig)


def adversarial_page(attribution: Attribution, n_examples: int) -> Page:
    edits, facts = attribution["adversarial"], attribution.summary["adversarial"]
    by_position = attribution["adversarial_by_position"]
    wrong = edits[~edits["correct"]]
    odd = bool((edits["text"].str.len() % 2 == 1).any())
    pattern = failure_pattern(wrong["text"].tolist(), wrong["label"].tolist(), noun="edit")
    intro = (f"Every single-character edit of {facts['n_palindromes']} test palindromes ({facts['n_edits']} strings) "
             f"was scored by the model. An edit breaks exactly one mirrored pair"
             + (" (except at the centre of an odd length, which leaves a palindrome)" if odd else "")
             + f". {facts['n_misclassified']} edits are misclassified; the smallest "
             f"margin is {num(facts['min_margin'])} (negative = wrong). {pattern}")
    several = by_position["length"].nunique() > 1
    read = ("pair 0 is the outermost pair" + ("; one bar colour per string length" if several else "")
            + ". A weak pair shows which comparison the model does badly.")
    source = "data/attribution/{}.parquet"
    by_data = [Download("adversarial_by_position.csv", by_position, source.format("adversarial_by_position"))]
    sections = []
    if by_position.empty:
        sections.append(Section("Edits by broken pair", "Per broken pair.", Text("No edits were scored.")))
    else:
        few = int(by_position["n_wrong"].sum()) <= FEW_ERRORS
        sections += [
            Section("Fooling edits by broken pair", "How many edits breaking each mirrored pair the model calls a "
                    "palindrome" + (", out of the edits of that pair; a table: there are too few for a chart" if few
                                    else " (hover for the count of edits and the accuracy)") + "; " + read,
                    Table(by_position) if few else by_position_figure(
                        by_position, "n_wrong", "Fooling single edits by broken pair", "edits called a palindrome",
                        False), data=by_data),
            Section("Smallest margin by broken pair", "The worst edit per pair: below 0 the model is fooled, just "
                    "above 0 it nearly is; " + read,
                    by_position_figure(by_position, "min_margin", "Smallest margin of single edits by broken pair",
                                       "smallest margin", False), data=by_data),
        ]
    table_read = ("source is the palindrome, text the edited string; position is the 0-based index of the changed "
                  "character (old → new) and pair_pos its mirrored pair; 'is palindrome' is the truth (a centre edit "
                  "stays a palindrome).")
    tables = margin_sections(edits, n_examples, order=["source", "position", "new"], columns=COLUMNS,
                             headers={"label": "is palindrome"}, things="edits", thing="edit",
                             wrong_caption="Most confidently wrong first; the intro says what they share. " + table_read,
                             close_caption="Correct, but nearest to the wrong side. "
                             + ("The columns are those above." if len(wrong) else table_read),
                             data=("adversarial.csv", source.format("adversarial")))
    sections += tables
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
