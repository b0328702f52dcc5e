"""The evaluation page: test accuracy broken down by kind, distance, length and mismatch position, the
confusion matrix, logit differences, and the misclassified and closest-call test strings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.report.content import Figure
from palindrome_lens.report.formatting import count, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Evaluation
from palindrome_lens.report.pages.margins import MARGIN, margin_sections, with_margin
from palindrome_lens.report.plots import (
    HistPanel,
    Panel,
    bars,
    heatmap_grid,
    histograms,
    kind_sorted,
    pair_bars,
)

FILENAME = "evaluation.html"
TITLE = "Evaluation"
SUMMARY = "test accuracy by kind, length, distance and mismatch position; the misclassified strings"
EXAMPLE_COLUMNS = ["text", "kind", "length", "distance", "mismatch_pos", "logit_diff", "prob_palindrome", "margin"]


def breakdown_figure(cells: dict[str, Any], title: str, x_title: str, kinds: bool = False) -> Figure:
    keys = kind_sorted(list(cells)) if kinds else list(cells)
    acc = [cells[k]["accuracy"] for k in keys]
    n = [cells[k]["n"] for k in keys]
    fig = bars(keys, acc, title, x_title, "accuracy", percent=True, text=[pct(a) for a in acc],
               hover=[f"{k}: {pct(a, 2)} of {c}" for k, a, c in zip(keys, acc, n)])
    return Figure(fig)


def mismatch_figure(predictions: pd.DataFrame) -> Figure:
    """Accuracy on distance-1 strings per mismatch pair, one bar colour per string length."""
    near = predictions[predictions["mismatch_pos"].notna()]
    cells = {"index": "mismatch_pos", "columns": "length", "values": "correct"}
    accuracy = near.pivot_table(**cells, aggfunc="mean")
    n = near.pivot_table(**cells, aggfunc="count", fill_value=0)
    fig = pair_bars(accuracy, " of " + n.astype(str), "Accuracy on distance-1 strings by mismatch position",
                    "mismatch pair", "accuracy", percent=True)
    return Figure(fig)


def confusion_figure(confusion: dict[str, int]) -> Figure:
    z = np.array([[confusion["true_palindrome"], confusion["false_not_palindrome"]],
                  [confusion["false_palindrome"], confusion["true_not_palindrome"]]], dtype=float)
    labels = ["palindrome", "not palindrome"]
    fig = heatmap_grid([Panel("", z, labels, labels)], "Confusion matrix (test split)", "predicted class",
                       "true class", "test strings", colorscale="Blues", zmin=0, hover="%{z:.0f}",
                       text_format="%{z:.0f}", panel_height=240)
    fig.update_layout(width=560)
    return Figure(fig)


def logit_histogram(predictions: pd.DataFrame, bins: int) -> Figure:
    kinds = kind_sorted(predictions["kind"].unique().tolist())
    panel = HistPanel("", {k: predictions.loc[predictions["kind"] == k, "logit_diff"].to_numpy(np.float64)
                           for k in kinds})
    fig = histograms([panel], bins, "Logit difference by kind (test split)",
                     "logit difference: logit[palindrome] − logit[not palindrome]", "share of the kind's strings",
                     legend_title="kind", cols=1)
    return Figure(fig)


def evaluation_page(evaluation: Evaluation, n_examples: int, hist_bins: int) -> Page:
    m, predictions = evaluation.metrics, with_margin(evaluation.predictions)
    if not m["n"]:
        return Page(FILENAME, TITLE, "The test split is empty: there is nothing to evaluate.")
    n_wrong = int((~predictions["correct"]).sum())
    d1 = m["distance"].get("1", {})
    intro = (f"The model scored {pct(m['accuracy'], 2)} on {m['n']} held-out test strings"
             + (f", and {pct(d1['accuracy'], 2)} on the {d1['n']} that differ from a palindrome in exactly one "
                f"mirrored pair (distance 1), the hardest case." if d1 else ".")
             + f" {count(n_wrong, 'string')} misclassified.")
    sections = [
        Section("Accuracy by kind", (
            "Share of test strings classified correctly, per kind: palindrome; near1 (one mirrored pair broken); "
            "near2 (two pairs broken); random (uniform letters). Hover for counts."),
            breakdown_figure(m["kind"], "Test accuracy by kind", "kind of string", kinds=True)),
        Section("Accuracy by distance", (
            "Distance = the number of mirrored character pairs that differ (0 = palindrome). Distance 1 is the "
            "hardest: a single pair decides the answer."),
            breakdown_figure(m["distance"], "Test accuracy by distance from a palindrome", "mismatched pairs")),
        Section("Accuracy by length", "Share correct per string length (number of characters).",
                breakdown_figure(m["length"], "Test accuracy by string length", "characters")),
        Section("Accuracy by mismatch position", (
            "Distance-1 strings only, grouped by which mirrored pair is broken: pair k compares characters k and "
            "L−1−k (0-based), so pair 0 is the outermost pair. A low bar is a position the model checks badly."),
            mismatch_figure(predictions)),
        Section("Confusion matrix", (
            "Rows are the true class, columns the predicted class; the diagonal counts correct answers. Off-"
            "diagonal cells: top right = palindromes called non-palindromes, bottom left = the reverse."),
            confusion_figure(m["confusion"])),
        Section("Logit difference by kind", (
            f"Histogram ({hist_bins} bins) of logit[palindrome] − logit[not palindrome] where the class is read, as "
            "a share of "
            "each kind. Positive means the model says palindrome, so palindromes should sit right of 0 and every "
            "other kind left of it; how far from 0 shows how confident it is."),
            logit_histogram(predictions, hist_bins)),
    ]
    sections += margin_sections(
        predictions, n_examples, order=["text"], columns=EXAMPLE_COLUMNS, things="test strings", thing="string",
        wrong_caption=(f"The most confidently wrong first. margin = {MARGIN} (negative = wrong); mismatch_pos is "
                       "the broken pair of a distance-1 string."),
        close_caption=("Correctly classified test strings whose logit difference is closest to the wrong side; "
                       f"margin is the {MARGIN}. Small margins show where the model is least sure."))
    return Page(FILENAME, TITLE, intro, sections)
