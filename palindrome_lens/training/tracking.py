"""dvclive logging: a training run's curves and final metrics, and an evaluation's metrics and plots.

dvclive never writes dvc.yaml, a report or an experiment here (`dvc.yaml` declares the metrics and
plots by hand), and rows carry no timestamp, so a rerun with the same params writes the same files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
from dvclive import Live

from palindrome_lens.atomic import atomic_dir, write_json
from palindrome_lens.training.metrics import bar_rows, confusion_labels
from palindrome_lens.training.train import EvalResult, TrainSummary

TRAIN_LOSS, TRAIN_ACCURACY = "train/loss", "train/accuracy"
VAL_LOSS, VAL_ACCURACY = "val/loss", "val/accuracy"


class LiveLogger:
    """Implements `TrainLogger`; `plots/metrics/{train,val}/{loss,accuracy}.tsv` have columns step, value."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.live = Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)

    def _log(self, step: int, name: str, value: float) -> None:
        self.live.step = step
        self.live.log_metric(name, value)

    def log_train(self, step: int, loss: float, accuracy: float) -> None:
        self._log(step, TRAIN_LOSS, loss)
        self._log(step, TRAIN_ACCURACY, accuracy)

    def log_val(self, step: int, result: EvalResult) -> None:
        self._log(step, VAL_LOSS, result.loss)
        self._log(step, VAL_ACCURACY, result.accuracy)

    def finish(self, summary: TrainSummary) -> dict[str, Any]:
        """Write metrics.json (final metrics, nested for `dvc metrics show`) and return it."""
        metrics = final_metrics(summary)
        self.live.summary = metrics
        self.live.end()
        # dvclive's own write is not atomic; rewrite the same content atomically with stable key order.
        write_json(self.live.metrics_file, metrics)
        return metrics


def final_metrics(summary: TrainSummary) -> dict[str, Any]:
    # No timings: a DVC output must be byte-identical across reruns; the stage prints them instead.
    return {
        "step": summary.steps,
        "n_examples": summary.n_examples,
        "train": {"loss": summary.train_loss, "accuracy": summary.train_accuracy},
        "val": {"loss": summary.val.loss, "accuracy": summary.val.accuracy, "n": summary.val.n},
    }


def log_evaluation(directory: str | os.PathLike[str], predictions: pa.Table, metrics: dict[str, Any]) -> None:
    """Write `metrics.json` and, in dvclive's layout, `plots/sklearn/confusion.json` (one row per example) and
    `plots/custom/accuracy_by_{kind,length,mismatch_pos}.json` (one row per group) under `directory`.

    dvclive writes files in place, so it logs into a scratch folder inside `directory` (git-ignored with
    it, so `dvc exp run` does not `git add` it) and the plots then replace `plots/` whole, atomically.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".dvclive.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=".dvclive.", dir=directory) as scratch:
        live = _log_evaluation_live(scratch, predictions, metrics)
        with atomic_dir(directory / "plots") as plots:
            for kind in Path(live.plots_dir).iterdir():
                kind.rename(plots / kind.name)
    # dvclive's own metrics.json (indent 4, insertion order) is not kept: the same summary is written as
    # train's is, with sorted keys, so the bytes (and the report stage's dependency hash) stay put.
    write_json(directory / "metrics.json", live.summary)


def _log_evaluation_live(directory: str, predictions: pa.Table, metrics: dict[str, Any]) -> Live:
    """The summary, the confusion matrix and the accuracy bars, logged with dvclive under `directory`."""
    live = Live(directory, dvcyaml=False, save_dvc_exp=False, report=None)
    live.summary = metrics
    actual, predicted = confusion_labels(predictions)
    live.log_sklearn_plot("confusion_matrix", actual, predicted, name="confusion")
    for name, rows in bar_rows(metrics).items():
        live.log_plot(name, rows, x="accuracy", y=name.removeprefix("accuracy_by_"), template="bar_horizontal")
    live.end()
    return live
