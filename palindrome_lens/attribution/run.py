"""The whole attribute analysis: read the model and the extracted activations, compute every table, write
them with summary.json into one directory atomically."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache

from palindrome_lens.activations import load_cache, load_examples, load_manifest
from palindrome_lens.atomic import atomic_dir, write_json
from palindrome_lens.attribution.ablation import ablation_table
from palindrome_lens.attribution.adversarial import (
    adversarial_by_position,
    adversarial_search,
    choose_palindromes,
)
from palindrome_lens.attribution.attention import mean_patterns, mirror_by_head, mirror_scores
from palindrome_lens.attribution.common import forward_logit_diff, margin, save_table, to_numpy
from palindrome_lens.attribution.distributions import centred_components, distribution_stats
from palindrome_lens.attribution.dla import direct_logit_attribution
from palindrome_lens.attribution.patching import activation_patching
from palindrome_lens.attribution.summary import circuit_summary
from palindrome_lens.attribution.weights import pos_cosine, pos_embed_table, positional_qk
from palindrome_lens.errors import DataFileError
from palindrome_lens.hooks import ATTRIBUTION_HOOKS, full_hook_names
from palindrome_lens.model.classifier import Classifier

FORMAT = "palindrome-lens/attribution/v1"
SUMMARY = "summary.json"


@dataclass
class Attribution:
    """Every table (by file stem) and the summary dict."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def needed_hooks(clf: Classifier) -> list[str]:
    """Full hook names this model has among ATTRIBUTION_HOOKS (no MLPs when attn_only, no LN scales without LN)."""
    cfg = clf.model.cfg
    names = full_hook_names(ATTRIBUTION_HOOKS, cfg.n_layers)
    if cfg.attn_only:
        names = [n for n in names if not n.endswith("hook_mlp_out")]
    if cfg.normalization_type != "LN":
        names = [n for n in names if ".hook_scale" not in n]
    return names


def analyse(clf: Classifier, cache: ActivationCache, examples: pd.DataFrame, test: pd.DataFrame, *,
            n_adversarial: int, batch_size: int, max_circuit_heads: int, seed: int) -> Attribution:
    """All analyses in memory. `cache` holds the rows of `examples` (example_id order)."""
    model = clf.model
    model.eval()
    if not (examples["example_id"].to_numpy() == np.arange(len(examples))).all():
        raise DataFileError("examples: example_id must be 0..n-1 in row order (the rows of the activation cache)")
    cached = cache["hook_embed"].shape[0] if "hook_embed" in cache.cache_dict else len(examples)
    if cached != len(examples):
        raise DataFileError(f"the activation cache holds {cached} examples but examples.parquet lists {len(examples)}")
    tokens = clf.encode(examples["text"].tolist())
    label = torch.tensor(examples["label"].to_numpy(dtype=bool))
    diff = forward_logit_diff(model, tokens, batch_size)
    out = Attribution()
    t = out.tables
    t["dla"] = direct_logit_attribution(model, cache, examples, diff)
    t["distributions"] = centred_components(t["dla"])
    t["distribution_stats"] = distribution_stats(t["distributions"])
    t["attention"] = mean_patterns(model, cache, examples, tokens, clf.tokenizer.pad_id)
    t["mirror"] = mirror_scores(model, cache, examples)
    t["patching"] = activation_patching(model, tokens, cache, examples, batch_size)
    t["ablation"] = ablation_table(model, tokens, cache, examples, batch_size)
    t["pos_qk"] = positional_qk(model, clf.tokenizer.width)
    t["pos_embed"] = pos_embed_table(model)
    t["pos_cosine"] = pos_cosine(model)
    sources = choose_palindromes(test, n_adversarial, seed)
    t["adversarial"] = adversarial_search(model, clf.tokenizer, sources, batch_size)
    t["adversarial_by_position"] = adversarial_by_position(t["adversarial"])

    dla_sum = t["dla"].groupby("example_id", sort=True)["value"].sum().to_numpy()
    correct = to_numpy(margin(diff.cpu(), label)) > 0
    circuit = circuit_summary(model, tokens, cache, examples, t["ablation"], t["patching"], t["mirror"],
                              max_circuit_heads, batch_size)
    out.summary = {
        "format": FORMAT,
        "model": {k: clf.config.get(k) for k in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "attn_only",
                                                  "normalization_type", "lengths")},
        "n_examples": len(examples),
        "accuracy": float(correct.mean()),
        "dla_max_abs_error": float(np.abs(dla_sum - to_numpy(diff)).max()),
        "mirror_scores": mirror_by_head(t["mirror"]),
        **circuit,
        "patching": _patching_facts(t["patching"]),
        "adversarial": _adversarial_facts(t["adversarial"], len(sources)),
        "files": sorted(f"{name}.parquet" for name in t) + [SUMMARY],
    }
    return out


def _patching_facts(patching: pd.DataFrame) -> dict[str, Any]:
    overall = patching[patching["mismatch_pos"].isna()]
    sanity = overall[(overall["activation"] == "resid_pre") & overall["pos"].isna()]
    return {
        "n_pairs": int(overall["n"].iloc[0]) if len(overall) else 0,
        "full_resid_pre_recovery_min": _num(sanity["recovery"].min()) if len(sanity) else None,
        "full_resid_pre_recovery_max": _num(sanity["recovery"].max()) if len(sanity) else None,
    }


def _adversarial_facts(edits: pd.DataFrame, n_sources: int) -> dict[str, Any]:
    wrong = edits[~edits["correct"]]
    return {
        "n_palindromes": n_sources,
        "n_edits": len(edits),
        "n_misclassified": len(wrong),
        "min_margin": _num(edits["margin"].min()) if len(edits) else None,
        "misclassified": wrong["text"].head(20).tolist(),
    }


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def write_attribution(out_dir: str | os.PathLike[str], clf: Classifier, activations: str | os.PathLike[str],
                      test: pd.DataFrame, *, n_adversarial: int, batch_size: int, max_circuit_heads: int,
                      seed: int) -> dict[str, Any]:
    """Load the activations (data/activations), run `analyse`, write every table and summary.json atomically."""
    manifest = load_manifest(activations)
    names = needed_hooks(clf)
    missing = [n for n in names if n not in manifest.hooks]
    if missing:
        raise DataFileError(f"{Path(activations)}: the attribute stage needs {missing[0]} (and {len(missing) - 1} more), "
                            f"which were not extracted; add {', '.join(ATTRIBUTION_HOOKS)} to extract.hooks")
    examples = load_examples(manifest.examples_path)
    if manifest.n_positions != clf.tokenizer.width:
        raise DataFileError(f"{Path(activations)}: activations have {manifest.n_positions} positions but the model's "
                            f"tokenizer has width {clf.tokenizer.width}; rerun dvc repro extract")
    cache = load_cache(activations, clf, hooks=names)
    result = analyse(clf, cache, examples, test, n_adversarial=n_adversarial, batch_size=batch_size,
                     max_circuit_heads=max_circuit_heads, seed=seed)
    with atomic_dir(out_dir) as tmp:
        for name, table in result.tables.items():
            save_table(table, tmp / f"{name}.parquet")
        write_json(tmp / SUMMARY, result.summary)
    return result.summary
