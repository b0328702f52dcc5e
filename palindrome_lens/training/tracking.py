"""dvclive logging of a training run: curves as TSV plots, final metrics as metrics.json.

dvclive never writes dvc.yaml, a report or an experiment here (`dvc.yaml` declares the metrics and
plots by hand), and rows carry no timestamp, so a rerun with the same params writes the same curves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dvclive import Live

from palindrome_lens.atomic import write_json
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
