"""The adversarial page: every single-character edit of some test palindromes, scored by the model; the
edits it gets wrong, the closest calls, and which pair positions are weak."""

from __future__ import annotations

import pandas as pd

from palindrome_lens.report.content import Figure, Text
from palindrome_lens.report.formatting import num
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.pages.margins import MARGIN, margin_sections
from palindrome_lens.report.plots import pair_bars

FILENAME = "adversarial.html"
TITLE = "Adversarial single edits"
NAV = "Adversarial"
SUMMARY = "every one-letter edit of test palindromes: the ones the model gets wrong and its weakest positions"
COLUMNS = ["source", "text", "position", "pair_pos", "old", "new", "label", "logit_diff", "margin"]


def by_position_figure(by_position: pd.DataFrame, value: str, title: str, y_title: str, percent: bool) -> Figure:
    note = " (" + by_position["n_wrong"].astype(str) + " wrong of " + by_position["n"].astype(str) + ")"
    cells = by_position.assign(note=note)
    values = cells.pivot(index="pair_pos", columns="length", values=value)
    notes = cells.pivot(index="pair_pos", columns="length", values="note").fillna("")  # no note without a bar
    fig = pair_bars(values, notes, title, "broken pair", y_title, percent=percent)
    return Figure(fig)


def adversarial_page(attribution: Attribution, n_examples: int) -> Page:
    edits, facts = attribution["adversarial"], attribution.summary["adversarial"]
    by_position = attribution["adversarial_by_position"]
    intro = (f"Every single-character edit of {facts['n_palindromes']} test palindromes ({facts['n_edits']} strings) "
             f"was scored by the model. An edit breaks exactly one mirrored pair (except at the centre of an odd "
             f"length, which leaves a palindrome). {facts['n_misclassified']} edits are misclassified; the smallest "
             f"margin is {num(facts['min_margin'])} (margin = {MARGIN}; negative = wrong).")
    read = ("pair k = characters k and L−1−k (0-based): pair 0 is the outermost pair, so a weak pair shows which "
            "comparison the model does badly.")
    sections = []
    if by_position.empty:
        sections.append(Section("Edits by pair position", "Per broken pair.", Text("No edits were scored.")))
    else:
        sections += [
            Section("Accuracy by broken pair", "Share of edits breaking this pair that are called 'not a "
                    "palindrome'; one bar colour per string length; " + read,
                    by_position_figure(by_position, "accuracy", "Accuracy on single edits by broken pair",
                                       "accuracy", True)),
            Section("Smallest margin by broken pair", "The worst edit per pair: below 0 the model is fooled, just "
                    "above 0 it nearly is; " + read,
                    by_position_figure(by_position, "min_margin", "Smallest margin of single edits by broken pair",
                                       "smallest margin", False)),
        ]
    table_read = ("source is the palindrome, text the edited string; position is the 0-based index of the changed "
                  "character (old → new) and pair_pos its mirrored pair; 'is palindrome' is the truth (a centre edit "
                  "stays a palindrome).")
    sections += margin_sections(edits, n_examples, order=["source", "position", "new"], columns=COLUMNS,
                                headers={"label": "is palindrome"}, things="edits", thing="edit",
                                wrong_caption="Most confidently wrong first. " + table_read,
                                close_caption="Correct, but nearest to the wrong side. " + table_read)
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
