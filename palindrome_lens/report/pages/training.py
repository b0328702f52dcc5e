"""The training page: loss and validation-accuracy curves logged by dvclive, and the final metrics."""

from __future__ import annotations

import pandas as pd

from palindrome_lens.report.content import Figure, Table
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.formatting import flatten, num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Training
from palindrome_lens.report.plots import lines

FILENAME = "training.html"
TITLE = "Training"
SUMMARY = "loss and validation accuracy during training (dvclive curves)"


def training_page(training: Training) -> Page:
    m = training.metrics
    loss, acc = training.loss, training.val_accuracy
    loss_fig = lines({"train loss": (loss["step"], loss["loss"])}, "Training loss (cross-entropy per batch)",
                     "optimiser step", "loss (log scale)", log_y=True)
    acc_fig = lines({"validation accuracy": (acc["step"], acc["accuracy"])}, "Validation accuracy during training",
                    "optimiser step", "accuracy", percent=True)
    first_perfect = acc[acc["accuracy"] >= 1.0]["step"]
    reached = (f" It first reached 100% at step {int(first_perfect.iloc[0])}." if len(first_perfect) else "")
    final = pd.DataFrame([{"metric": k, "value": v} for k, v in flatten(m).items()])
    loss_data = [Download("train_loss.csv", loss, "data/train/plots/metrics/train/loss.tsv")]
    acc_data = [Download("val_accuracy.csv", acc, "data/train/plots/metrics/val/accuracy.tsv")]
    return Page(FILENAME, TITLE, (
        f"{m['n_examples']} training examples in {m['step']} optimiser steps. Final validation accuracy "
        f"{pct(m['val']['accuracy'], 2)} (loss {num(m['val']['loss'])}); final training loss "
        f"{num(m['train']['loss'])}.{reached}"), [
        Section("Training loss", (
            "The mean cross-entropy of each logged training batch against the optimiser step. The y axis is "
            "logarithmic: a straight downward slope is steady exponential progress; a plateau means the model is "
            "stuck."), Figure(loss_fig), data=loss_data),
        Section("Validation accuracy", (
            "Accuracy on the validation split each time it was evaluated (train.eval_every steps). 100% means "
            "every validation string is classified correctly."), Figure(acc_fig), data=acc_data),
        Section("Final metrics", (
            "data/train/metrics.json as written by the train stage (the numbers `dvc metrics show` prints)."),
            Table(final)),
    ])
