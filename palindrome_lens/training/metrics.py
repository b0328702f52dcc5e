"""Breakdowns of a predictions table: metrics.json for `dvc metrics show/diff`, data for `dvc plots`.

Metrics are nested dicts with string keys (`kind.near1.accuracy`, `mismatch_pos.3.accuracy`), which
is what `dvc metrics show/diff` flattens. A kind that the split lacks is listed in `absent_kinds`
instead of failing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from palindrome_lens.data.generate import KINDS

BREAKDOWNS = ("kind", "distance", "length", "mismatch_pos")
BAR_BREAKDOWNS = ("kind", "length", "mismatch_pos")
LABEL_NAMES = {True: "palindrome", False: "not palindrome"}


def _cell(correct: np.ndarray, loss: np.ndarray) -> dict[str, Any]:
    return {"n": int(correct.size), "accuracy": float(correct.mean()), "loss": float(loss.mean())}


def _grouped(keys: np.ndarray, correct: np.ndarray, loss: np.ndarray) -> dict[str, dict[str, Any]]:
    """Groups in a natural order: numbers ascending, kinds as in KINDS."""
    rank = {kind: i for i, kind in enumerate(KINDS)}
    order = sorted(set(keys.tolist()), key=lambda k: (rank.get(k, len(rank)), k))
    return {str(k): _cell(correct[keys == k], loss[keys == k]) for k in order}


def evaluation_metrics(predictions: pa.Table) -> dict[str, Any]:
    """Loss and accuracy overall and per kind, distance, length and (distance-1 rows) mismatch_pos."""
    correct = predictions.column("correct").to_numpy(zero_copy_only=False).astype(bool)
    loss = predictions.column("loss").to_numpy(zero_copy_only=False).astype(np.float64)
    if correct.size == 0:
        return {"n": 0, "absent_kinds": list(KINDS)}
    label = predictions.column("label").to_numpy(zero_copy_only=False).astype(bool)
    prediction = predictions.column("prediction").to_numpy(zero_copy_only=False).astype(bool)
    metrics: dict[str, Any] = _cell(correct, loss)
    for column in ("kind", "distance", "length"):
        metrics[column] = _grouped(predictions.column(column).to_numpy(zero_copy_only=False), correct, loss)
    mismatch = predictions.column("mismatch_pos")
    near1 = mismatch.is_valid().to_numpy(zero_copy_only=False)
    positions = mismatch.fill_null(-1).to_numpy(zero_copy_only=False)
    metrics["mismatch_pos"] = _grouped(positions[near1], correct[near1], loss[near1])
    metrics["absent_kinds"] = [kind for kind in KINDS if kind not in metrics["kind"]]
    metrics["confusion"] = {
        "true_palindrome": int((label & prediction).sum()),
        "false_palindrome": int((~label & prediction).sum()),
        "true_not_palindrome": int((~label & ~prediction).sum()),
        "false_not_palindrome": int((label & ~prediction).sum()),
    }
    return metrics


def confusion_labels(predictions: pa.Table) -> tuple[list[str], list[str]]:
    """Actual and predicted class names, one per example (DVC's `confusion` template counts the rows)."""
    actual = [LABEL_NAMES[a] for a in predictions.column("label").to_pylist()]
    predicted = [LABEL_NAMES[p] for p in predictions.column("prediction").to_pylist()]
    return actual, predicted


def bar_rows(metrics: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One row per group for the accuracy bar charts, by plot name (`accuracy_by_kind`, ...)."""
    return {
        f"accuracy_by_{breakdown}": [
            {breakdown: key, "accuracy": cell["accuracy"], "n": cell["n"]}
            for key, cell in metrics.get(breakdown, {}).items()
        ]
        for breakdown in BAR_BREAKDOWNS
    }
