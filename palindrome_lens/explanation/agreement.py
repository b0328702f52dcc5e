"""How much of the model's behaviour the program reproduces, its mistakes included.

On the test split and on every single edit of the attribute stage's test palindromes:
- decision agreement with the model;
- the model's own errors (decisions against the label) that the program reproduces: recall, and the
  precision of the errors the program predicts;
- the logit difference's R^2 and Spearman correlation between program and model *within each class*,
  averaged over the classes present: the logit difference is bimodal, so an overall R^2 is ~1 for any
  program that gets the label right, while within a class a program that outputs one value per class
  scores <= 0 and only one that explains how far the model leans on each string scores high.
Beside each figure, the same for the baseline "exact palindrome check": it decides by the label (so it never
reproduces an error) and outputs one logit difference per class (the model's mean on that class over the
fit strings), whose within-class Spearman is 0 by convention (no order at all).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

CLASSES = {True: "palindrome", False: "not_palindrome"}


def r_squared(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    total = float(((actual - actual.mean()) ** 2).sum()) if len(actual) else 0.0
    if len(actual) < 2 or total <= 1e-12 * max(1.0, float((actual**2).sum())):
        return None  # nothing to explain: the model gives (almost) one value
    return 1.0 - float(((actual - predicted) ** 2).sum()) / total


def spearman(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    if len(actual) < 2 or np.ptp(actual) == 0:
        return None
    if np.ptp(predicted) == 0:
        return 0.0  # a constant has no order: no rank information
    return float(np.corrcoef(pd.Series(predicted).rank().to_numpy(), pd.Series(actual).rank().to_numpy())[0, 1])


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def figures(frame: pd.DataFrame, baseline: dict[bool, float]) -> dict[str, Any]:
    """The agreement figures of one set of strings (rows of agreement.parquet)."""
    label = frame["label"].to_numpy(dtype=bool)
    model, program = frame["model_logit_diff"].to_numpy(), frame["program_logit_diff"].to_numpy()
    model_says, program_says = model > 0, program > 0
    model_wrong, program_wrong = model_says != label, program_says != label
    reproduced = int((model_wrong & program_wrong).sum())
    out: dict[str, Any] = {
        "n": len(frame),
        "agreement": _ratio(int((model_says == program_says).sum()), len(frame)),
        "baseline_agreement": _ratio(int((model_says == label).sum()), len(frame)),
        "model_errors": int(model_wrong.sum()),
        "program_errors": int(program_wrong.sum()),
        "errors_reproduced": reproduced,
        "error_recall": _ratio(reproduced, int(model_wrong.sum())),
        "error_precision": _ratio(reproduced, int(program_wrong.sum())),
        "baseline_error_recall": 0.0 if model_wrong.any() else None,
        "by_class": {},
    }
    for cls, name in CLASSES.items():
        rows = label == cls
        if not rows.any():
            continue
        constant = np.full(int(rows.sum()), baseline.get(cls, 0.0))
        out["by_class"][name] = {
            "n": int(rows.sum()), "model_std": float(model[rows].std()),
            "r2": r_squared(program[rows], model[rows]), "spearman": spearman(program[rows], model[rows]),
            "baseline_r2": r_squared(constant, model[rows]), "baseline_spearman": spearman(constant, model[rows])}
    for key in ("r2", "spearman", "baseline_r2", "baseline_spearman"):
        out[key] = _mean([c[key] for c in out["by_class"].values()])
    return out


def by_kind(frame: pd.DataFrame, baseline: dict[bool, float]) -> list[dict[str, Any]]:
    """Per (kind, class) present: n, agreement and the within-group R^2 and Spearman (program and baseline)."""
    rows = []
    for (kind, cls), group in frame.groupby(["kind", "label"], sort=True):
        f = figures(group, baseline)
        c = f["by_class"][CLASSES[bool(cls)]]
        rows.append({"kind": str(kind), "class": CLASSES[bool(cls)], "n": f["n"], "agreement": f["agreement"],
                     "model_errors": f["model_errors"], "errors_reproduced": f["errors_reproduced"],
                     "r2": c["r2"], "spearman": c["spearman"], "baseline_r2": c["baseline_r2"],
                     "baseline_spearman": c["baseline_spearman"], "model_std": c["model_std"]})
    return rows


def agreement_table(test: pd.DataFrame, test_model: np.ndarray, test_program: np.ndarray, edits: pd.DataFrame,
                    edits_program: np.ndarray) -> pd.DataFrame:
    """agreement.parquet: one row per string of the test split and per single edit."""
    def block(name: str, frame: pd.DataFrame, model: np.ndarray, program: np.ndarray) -> pd.DataFrame:
        label = frame["label"].to_numpy(dtype=bool)
        out = pd.DataFrame({
            "set": name, "text": frame["text"].astype(str).to_numpy(),
            "kind": frame["kind"].astype(str).to_numpy() if "kind" in frame else "edit",
            "label": label, "length": frame["length"].to_numpy(dtype=np.int64),
            "pair_pos": (frame["pair_pos"] if "pair_pos" in frame else frame["mismatch_pos"]).astype("Int64").to_numpy(),
            "position": (frame["position"].astype("Int64") if "position" in frame
                         else pd.array([None] * len(frame), dtype="Int64")).to_numpy(),
            "source": frame["source"].astype(str).to_numpy() if "source" in frame else None,
            "old": frame["old"].astype(str).to_numpy() if "old" in frame else None,
            "new": frame["new"].astype(str).to_numpy() if "new" in frame else None,
            "model_logit_diff": model.astype(np.float64), "program_logit_diff": program.astype(np.float64)})
        out["model_palindrome"] = out["model_logit_diff"] > 0
        out["program_palindrome"] = out["program_logit_diff"] > 0
        out["model_correct"] = out["model_palindrome"] == label
        out["program_correct"] = out["program_palindrome"] == label
        return out

    return pd.concat([block("test", test, test_model, test_program), block("edits", edits, edits["logit_diff"].to_numpy(),
                                                                            edits_program)], ignore_index=True)


def class_means(logits: np.ndarray, label: np.ndarray) -> dict[bool, float]:
    """The baseline's one value per class: the model's mean logit difference on that class."""
    return {cls: float(logits[label == cls].mean()) if (label == cls).any() else 0.0 for cls in (True, False)}


def finite_or_none(x: Any) -> Any:
    """JSON-safe: NaN becomes None, recursively."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.floating | np.integer):
        return finite_or_none(x.item())
    return x
