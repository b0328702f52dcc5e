"""The evaluation page: the training curves dvclive logged, then test errors broken down by kind, distance, length and broken pair (counts, which near
100% accuracy say what rounded percentages cannot), the confusion matrix, logit differences with every
misclassified string marked, and the misclassified and closest-call test strings with what they share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from palindrome_lens.report.content import Figure, Table
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.failures import failure_pattern
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import count, num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Evaluation, Training
from palindrome_lens.report.pages.margins import MARGIN, margin_sections, with_margin
from palindrome_lens.report.plots import (
    ERROR_COLOR,
    Panel,
    bin_edges,
    color_of,
    count_axis,
    error_bars,
    heatmap_grid,
    kind_sorted,
    lines,
    pair_bars,
)

FILENAME = "evaluation.html"
TITLE = "Training and evaluation"
NAV = "Evaluation"
SUMMARY = ("the training curves; test accuracy by kind, length, distance and mismatch position; the misclassified "
           "strings")
FEW_ERRORS = 20
EXAMPLE_COLUMNS = ["text", "kind", "length", "distance", "mismatch_pos", "logit_diff", "prob_palindrome", "margin"]


def breakdown(cells: dict[str, Any], kinds: bool = False) -> pd.DataFrame:
    """One row per cell of a metrics.json breakdown: n, accuracy and the number misclassified."""
    keys = kind_sorted(list(cells)) if kinds else list(cells)
    return pd.DataFrame({"group": keys, "n": [int(cells[k]["n"]) for k in keys],
                         "accuracy": [float(cells[k]["accuracy"]) for k in keys],
                         "misclassified": [round((1 - cells[k]["accuracy"]) * cells[k]["n"]) for k in keys]})


def breakdown_figure(cells: pd.DataFrame, title: str, x_title: str) -> Figure:
    fig = error_bars(cells["group"].tolist(), cells["misclassified"].tolist(), cells["n"].tolist(), title, x_title,
                     "misclassified test strings")
    return Figure(fig)


def mismatch_figure(predictions: pd.DataFrame) -> Figure:
    """Misclassified distance-1 strings per broken pair (one bar colour per length when there are several)."""
    near = predictions[predictions["mismatch_pos"].notna()].assign(wrong=lambda f: ~f["correct"])
    cells = {"index": "mismatch_pos", "columns": "length", "values": "wrong"}
    wrong = near.pivot_table(**cells, aggfunc="sum")
    n = near.pivot_table(**cells, aggfunc="count", fill_value=0)
    fig = pair_bars(wrong.astype(float), " wrong of " + n.astype(str),
                    "Misclassified distance-1 strings by broken pair", "broken pair", "misclassified test strings",
                    percent=False)
    return Figure(count_axis(fig, float(np.nanmax(wrong.to_numpy())) if wrong.size else 0.0))


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
    """Counts per bin of each kind as a step line (kinds drawn over each other stay apart) on a log axis (a single
    string shows), and every misclassified string as a mark under the axis, hover for its text."""
    values = predictions["logit_diff"].to_numpy(np.float64)
    edges = bin_edges(values, bins)
    fig = go.Figure()
    for kind in kind_sorted(predictions["kind"].unique().tolist()):
        counts, _ = np.histogram(predictions.loc[predictions["kind"] == kind, "logit_diff"], bins=edges)
        fig.add_trace(go.Scatter(x=np.repeat(edges, 2)[1:-1], y=np.repeat(np.where(counts > 0, counts, np.nan), 2),
                                 mode="lines", name=kind, line={"color": color_of(kind), "width": 2},
                                 connectgaps=False, hovertemplate=f"{kind}<br>%{{x:.3g}}: %{{y}} strings<extra></extra>"))
    wrong = predictions[~predictions["correct"]]
    if len(wrong):
        fig.add_trace(go.Scatter(x=wrong["logit_diff"], y=[0.6] * len(wrong), mode="markers", name="misclassified",
                                 marker={"symbol": "x", "size": 11, "color": ERROR_COLOR},
                                 hovertext=[f"{t} ({k}): {d:.3g}" for t, k, d in
                                            zip(wrong["text"], wrong["kind"], wrong["logit_diff"])], hoverinfo="text"))
    fig.add_vline(x=0, line_dash="dash", line_color="#52606d")
    fig.update_yaxes(type="log", range=[np.log10(0.4), np.log10(max(2, len(predictions)))])
    fig.update_layout(legend_title_text="kind")
    return Figure(label_figure(fig, "Logit difference by kind (test split)",
                               "logit difference: logit[palindrome] − logit[not palindrome]",
                               "test strings per bin (log scale)"))


def training_sections(training: Training) -> tuple[str, list[Section]]:
    """A sentence on training, and its loss and validation-accuracy curves."""
    m, loss, acc = training.metrics, training.loss, training.val_accuracy
    first_perfect = acc[acc["accuracy"] >= 1.0]["step"]
    said = (f"Training saw {m['n_examples']} examples in {m['step']} optimiser steps; final validation accuracy "
            f"{pct(m['val']['accuracy'], 2)} (loss {num(m['val']['loss'])}), final training loss "
            f"{num(m['train']['loss'])}" + (f"; validation first reached 100% at step {int(first_perfect.iloc[0])}."
                                            if len(first_perfect) else "."))
    return said, [
        Section("Training loss", (
            "The mean cross-entropy of each logged training batch against the optimiser step, on a log axis: a "
            "straight downward slope is steady progress; a plateau means the model is stuck."),
            Figure(lines({"train loss": (loss["step"], loss["loss"])}, "Training loss (cross-entropy per batch)",
                         "optimiser step", "loss (log scale)", log_y=True)),
            data=[Download("train_loss.csv", loss, "data/train/plots/metrics/train/loss.tsv")]),
        Section("Validation accuracy", (
            "Accuracy on the validation split each time it was evaluated (train.eval_every steps)."),
            Figure(lines({"validation accuracy": (acc["step"], acc["accuracy"])}, "Validation accuracy during "
                         "training", "optimiser step", "accuracy", percent=True)),
            data=[Download("val_accuracy.csv", acc, "data/train/plots/metrics/val/accuracy.tsv")]),
    ]


def evaluation_page(evaluation: Evaluation, n_examples: int, hist_bins: int, training: Training) -> Page:
    m, predictions = evaluation.metrics, with_margin(evaluation.predictions)
    trained, curves = training_sections(training)
    if not m["n"]:
        return Page(FILENAME, TITLE, f"{trained} The test split is empty: there is nothing to evaluate.", curves,
                    nav_label=NAV)
    wrong = predictions[~predictions["correct"]]
    pattern = failure_pattern(wrong["text"].tolist(), wrong["label"].tolist())
    d1 = m["distance"].get("1", {})
    intro = (f"{trained}\n\nThe model scored {pct(m['accuracy'], 2)} on {m['n']} held-out test strings"
             + (f", and {pct(d1['accuracy'], 2)} on the {d1['n']} that differ from a palindrome in exactly one "
                f"mirrored pair (distance 1), the hardest case." if d1 else ".")
             + f" {count(len(wrong), 'string')} misclassified. {pattern}")
    by = {key: breakdown(m[key], kinds=key == "kind") for key in ("kind", "distance", "length")}
    source = "data/eval/metrics.json"
    several = len(m["length"]) > 1
    few = len(wrong) <= FEW_ERRORS  # a handful of errors reads better as a table than as full-height bars

    def errors(key: str, heading: str, caption: str, title: str, x_title: str) -> Section:
        cells = by[key]
        content = Table(cells.rename(columns={"group": key}), digits=4) if few else breakdown_figure(cells, title,
                                                                                                    x_title)
        return Section(heading, caption + (" A table: there are too few errors for a chart." if few else ""),
                       content, data=[Download(f"eval_by_{key}.csv", cells, source)])

    near = predictions[predictions["mismatch_pos"].notna()]
    by_pair = (near.assign(wrong=~near["correct"]).groupby(["length", "mismatch_pos"])["wrong"]
               .agg(n="count", misclassified="sum").reset_index())
    pair_data = [Download("eval_by_pair.csv", by_pair, "data/eval/predictions.parquet")]
    sections = [
        *curves,
        errors("kind", "Errors by kind", "Misclassified test strings per kind, out of the kind's strings.",
               "Misclassified test strings by kind", "kind of string"),
        errors("distance", "Errors by distance", (
            "Misclassified test strings by distance (broken mirrored pairs). Distance 1 is the hardest: a single pair "
            "decides the answer."), "Misclassified test strings by distance", "broken mirrored pairs"),
        *([errors("length", "Errors by length", "Misclassified test strings per string length (characters).",
                  "Misclassified test strings by length", "characters")] if several else []),
        Section("Errors by broken pair", (
            "Distance-1 strings only, grouped by which mirrored pair is broken (pair 0 is the outermost)"
            + (", one bar colour per string length" if several else "") + ". A high bar is a pair the model checks "
            "badly."), Table(by_pair) if few else mismatch_figure(predictions), data=pair_data),
        Section("Confusion matrix", (
            "Rows are the true class, columns the predicted class; the diagonal counts correct answers. Off-"
            "diagonal cells: top right = palindromes called non-palindromes, bottom left = the reverse."),
            confusion_figure(m["confusion"])),
        Section("Logit difference by kind", (
            f"How many test strings of each kind fall in each of {hist_bins} bins of the logit difference, one line "
            "per kind, on a log axis so that a single string shows. Palindromes should sit right of 0 and every "
            "other kind left of it; how far from 0 says how sure the model is. Each misclassified string is a "
            "red × under the lines (hover for its text)."), logit_histogram(predictions, hist_bins)),
    ]
    sections += margin_sections(
        predictions, n_examples, order=["text"], columns=EXAMPLE_COLUMNS, things="test strings", thing="string",
        wrong_caption=(f"The most confidently wrong first. margin = {MARGIN} (negative = wrong); mismatch_pos is "
                       "the broken pair of a distance-1 string; the page's intro says what they share."),
        close_caption=("Correctly classified test strings whose logit difference is closest to the wrong side; "
                       f"margin is the {MARGIN}. Small margins show where the model is least sure."),
        data=("predictions.csv", "data/eval/predictions.parquet"))
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
