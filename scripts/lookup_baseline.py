"""A lookup-table baseline beside the explanation ladder: does a table with no mechanism in it reproduce the
model's misclassified single edits as well as the ladder's levels do?

The table is keyed by an edit of a palindrome, (pair, side, old, new): which mirrored pair the edited position
belongs to, which of the pair's two positions it is (first or second half), the character replaced and its
replacement. Each entry is the model's mean logit difference over every single edit of `--n-fit` train
palindromes with that key (the least-squares fit of a table to the model's logits); a key never seen falls
back to the mean over the fit edits of its class. It is scored like a ladder level (palindrome_lens/explanation/
agreement.py: decisions alike, the model's errors reproduced, within-class R^2 and Spearman) on the attribute
stage's edits (data/attribution/adversarial.parquet) and on every single edit of `--n-fresh` fresh palindromes
(in neither the train nor the test split), where the ladder's program files (data/explanation/programs/*.py)
are scored too.

    .venv/bin/python scripts/lookup_baseline.py [--data data] [--n-fit 1000] [--n-fresh 200] [--json out.json]

`--data` may be a copy of another run's outputs (`dvc get . data/model --rev arena -o DIR/model`, likewise
raw, attribution and explanation).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.attribution.adversarial import single_edits
from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.data.strings import is_palindrome
from palindrome_lens.explanation.agreement import figures
from palindrome_lens.model.classifier import load_classifier

KEY = ["pair_pos", "side", "old", "new"]


def with_side(edits: pd.DataFrame) -> pd.DataFrame:
    """Adds `side`: first or second position of the edited pair (centre for an odd length's middle)."""
    mirror = edits["length"] - 1 - edits["position"]
    edits["side"] = np.where(edits["position"] < mirror, "first", np.where(edits["position"] > mirror, "second",
                                                                           "centre"))
    return edits


def fit_table(edits: pd.DataFrame) -> tuple[pd.Series, dict[bool, float]]:
    """The table (mean logit difference per key) and the per-class fallback for keys it lacks."""
    table = edits.groupby(KEY)["logit_diff"].mean()
    fallback = {bool(c): float(g.mean()) for c, g in edits.groupby("label")["logit_diff"]}
    return table, fallback


def look_up(table: pd.Series, fallback: dict[bool, float], edits: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The table's logit difference per edit, and how many edits had an unseen key."""
    keys = pd.MultiIndex.from_frame(edits[KEY])
    values = table.reindex(keys).to_numpy(dtype=np.float64)
    missing = np.isnan(values)
    values[missing] = [fallback.get(bool(c), 0.0) for c in edits["label"].to_numpy()[missing]]
    return values, int(missing.sum())


def score(edits: pd.DataFrame, program: np.ndarray, baseline: dict[bool, float]) -> dict[str, Any]:
    """The ladder's figures for one predictor on these edits (edits carry the model's logit_diff)."""
    frame = pd.DataFrame({"label": edits["label"].to_numpy(dtype=bool),
                          "model_logit_diff": edits["logit_diff"].to_numpy(dtype=np.float64),
                          "program_logit_diff": program})
    f = figures(frame, baseline)
    return {k: f[k] for k in ("n", "agreement", "model_errors", "program_errors", "errors_reproduced",
                              "error_recall", "error_precision", "r2", "spearman")}


def fresh_palindromes(n: int, lengths: list[int], alphabet: str, exclude: set[str], seed: int) -> list[str]:
    """`n` distinct palindromes drawn uniformly per length, none of them in `exclude`."""
    rng, out = random.Random(seed), set()
    while len(out) < n:
        length = lengths[len(out) % len(lengths)]
        half = "".join(rng.choice(alphabet) for _ in range((length + 1) // 2))
        text = half + half[: length // 2][::-1]
        if text not in exclude:
            out.add(text)
    return sorted(out)


def level_logits(programs: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """Each ladder level's program file run on `texts` (standard library programs: imported, not sandboxed), in
    the ladder's order (summary.json beside the programs)."""
    out = {}
    summary = json.loads((programs.parent / "summary.json").read_text(encoding="utf-8"))
    for name in [level["name"] for level in summary.get("levels", [])]:
        path = programs / f"{name}.py"
        if not path.is_file():
            continue
        spec = importlib.util.spec_from_file_location(f"level_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[name] = np.array([module.logit_diff(t) for t in texts], dtype=np.float64)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--n-fit", type=int, default=1000, help="train palindromes whose every single edit is fitted")
    parser.add_argument("--n-fresh", type=int, default=200, help="fresh palindromes whose every edit is scored (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    clf = load_classifier(args.data / "model", device="cpu")
    alphabet = clf.tokenizer.alphabet
    train = pd.read_parquet(args.data / "raw/train.parquet", columns=["text"])["text"].astype(str)
    test = pd.read_parquet(args.data / "raw/test.parquet", columns=["text"])["text"].astype(str)
    edits = with_side(pd.read_parquet(args.data / "attribution/adversarial.parquet"))
    lengths = sorted(int(n) for n in edits["length"].unique())

    palindromes = train[train.map(is_palindrome) & train.str.len().isin(lengths)].drop_duplicates()
    picks = np.random.default_rng(args.seed).choice(len(palindromes), min(args.n_fit, len(palindromes)), replace=False)
    fit = with_side(single_edits(palindromes.iloc[np.sort(picks)].tolist(), alphabet))
    fit["logit_diff"] = forward_logit_diff(clf.model, clf.encode(fit["text"].tolist()), args.batch_size).cpu().numpy()
    table, fallback = fit_table(fit)
    n_model = int(sum(t.numel() for t in clf.model.state_dict().values()))
    result: dict[str, Any] = {"n_model": n_model, "table_entries": len(table), "fit_palindromes": len(picks),
                              "fit_edits": len(fit), "fit_edits_misclassified": int(((fit["logit_diff"] > 0)
                                                                                     != fit["label"]).sum())}

    predicted, unseen = look_up(table, fallback, edits)
    result["edits"] = {"lookup": {**score(edits, predicted, fallback), "unseen_keys": unseen}}
    summary_path = args.data / "explanation/summary.json"
    if summary_path.is_file():  # the ladder's own figures on the same edits, for the table beside it
        summary = json.loads(summary_path.read_text())
        for row in summary.get("levels") or []:
            result["edits"][row["name"]] = {"n_total": row["n_total"], **{k: row[k] for k in (
                "agreement_edits", "model_errors", "program_errors", "errors_reproduced", "error_recall",
                "error_precision", "r2_edits", "spearman_edits")}}

    if args.n_fresh:
        fresh_sources = fresh_palindromes(args.n_fresh, lengths, alphabet, set(train) | set(test), args.seed + 1)
        fresh = with_side(single_edits(fresh_sources, alphabet))
        fresh["logit_diff"] = forward_logit_diff(clf.model, clf.encode(fresh["text"].tolist()),
                                                 args.batch_size).cpu().numpy()
        predicted, unseen = look_up(table, fallback, fresh)
        result["fresh"] = {"lookup": {**score(fresh, predicted, fallback), "unseen_keys": unseen}}
        for name, logits in level_logits(args.data / "explanation/programs", fresh["text"].tolist()).items():
            result["fresh"][name] = score(fresh, logits, fallback)

    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
