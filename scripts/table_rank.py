"""How much of the model's misclassified edits the readout tables keep when each is cut to low rank: the measure
behind "no level within the model's size reproduces ARENA's errors" (docs/experiments.md).

Each readout head's salience and evidence table, per position (L, A, A) or merged per mirrored pair
(ladder.merged_pairs), keeps its diagonal (the matched pairs) whole and its off-diagonal entries at rank r (the
SVD of the table with its diagonal imputed from the rank-r fit, iterated). The readout stays the one constants.json
fitted to the whole tables, so a refitted readout could do a little better. Scored on the attribute stage's edits
like a ladder level's error figures (recall and precision of the model's misclassified edits).

    .venv/bin/python scripts/table_rank.py [--data data] [--ranks 1 2 3 4]

`--data` holds explanation/constants.json (a pair-comparison program) and attribution/adversarial.parquet.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd

from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.ladder import merged_pairs

IMPUTE_STEPS = 30


def low_rank(table: np.ndarray, rank: int) -> np.ndarray:
    """(A, A): the diagonal as it is, the off-diagonal entries of the best rank-`rank` fit to them."""
    off = ~np.eye(table.shape[0], dtype=bool)
    filled = np.where(off, table, table[off].mean())
    for _ in range(IMPUTE_STEPS):
        u, s, vt = np.linalg.svd(filled)
        fit = (u[:, :rank] * s[:rank]) @ vt[:rank]
        filled = np.where(off, table, fit)
    return np.where(off, fit, table)


def errors(doc: dict, texts: list[str], label: np.ndarray, model_wrong: np.ndarray) -> tuple[float, float]:
    wrong = (Emulator(doc).logit_diff(texts) > 0) != label
    hit = int((wrong & model_wrong).sum())
    return hit / max(int(model_wrong.sum()), 1), hit / max(int(wrong.sum()), 1)


def cut(doc: dict, rank: int, merged: bool) -> tuple[dict, int]:
    """The document with every readout table cut to `rank`, and the numbers those tables then hold."""
    out, held = copy.deepcopy(doc), 0
    for entry in out["lengths"].values():
        for head in entry["heads"]:
            salience, evidence = np.asarray(head["salience"]), np.asarray(head["evidence"])
            if merged:
                salience, evidence = merged_pairs(salience, evidence)
            for key, table in (("salience", salience), ("evidence", evidence)):
                head[key] = np.stack([low_rank(t, rank) for t in table]).tolist()
                held += table.shape[0] * (table.shape[1] + 2 * rank * table.shape[1])
    return out, held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()
    data = Path(args.data)
    doc = json.loads((data / "explanation" / "constants.json").read_text())
    edits = pd.read_parquet(data / "attribution" / "adversarial.parquet")
    texts, label = edits["text"].tolist(), edits["label"].to_numpy(bool)
    model_wrong = (edits["logit_diff"].to_numpy() > 0) != label
    context = sum(int(np.asarray(c[k]).size) for e in doc["lengths"].values() for c in e["context"]
                  for k in ("salience", "value"))
    whole = sum(int(np.asarray(h[k]).size) for e in doc["lengths"].values() for h in e["heads"]
                for k in ("salience", "evidence"))
    print(f"{int(model_wrong.sum())} of {len(texts)} edits misclassified by the model; context tables {context:,} "
          "numbers (counted in every row)")
    print(f"{'tables':<28}{'numbers':>10}{'recall':>9}{'precision':>11}")
    recall, precision = errors(doc, texts, label, model_wrong)
    print(f"{'whole, per position':<28}{whole + context:>10,}{recall:>9.3f}{precision:>11.3f}")
    for merged in (False, True):
        for rank in args.ranks:
            cut_doc, held = cut(doc, rank, merged)
            recall, precision = errors(cut_doc, texts, label, model_wrong)
            name = f"{'merged per pair' if merged else 'per position'}, rank {rank}"
            print(f"{name:<28}{held + context:>10,}{recall:>9.3f}{precision:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
