"""Causal scrubbing (Chan et al., Redwood 2022) of an algorithm stated as data.

A hypothesis says what the residual stream after one layer carries at each group of positions: at a
position of group g it carries only feature f (`keep: {g: f}`), so resampling that position's residual
from another string of the same length that agrees on f must leave the output as it is. Features:

- `pair_match`: whether the position's mirrored pair matches (characters only);
- `pair_chars`: the characters of the position's pair, own then mirror (characters only);
- `char`: the position's own character (characters only);
- `label`: whether the whole string is a palindrome;
- `all`: everything (the position is not resampled);
- `none`: nothing (resampled from any string of the same length). Groups a hypothesis leaves out get
  `none`: what it does not call relevant is resampled at random.

Each position draws its own source string. Reported per hypothesis, as class-balanced cross-entropy
and % of loss recovered between everything resampled at random (0%) and the model (100%):
- `recovered`: the scrub the hypothesis allows;
- `control`: the same scrub from strings that *disagree* on each kept feature; if the hypothesis is
  right this destroys the performance, and if it does not, the test cannot tell;
- `constant`: the best constant predictor (the class-balanced label entropy, ln 2) on the same
  scale, so a reader sees what "no information" scores. A scrub below it is worse than knowing nothing;
- `accuracy_recovered`: the same scale on class-balanced accuracy. A confidently wrong random scrub
  makes the loss scale long, so a hypothesis can recover most of the loss and still flip many answers.
The loss is averaged over N_DRAWS seeded draws; per-class losses show cancellation between classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import (
    balanced_accuracy,
    balanced_mean,
    cache_tensor,
    device_of,
    forward_logit_diff,
)
from palindrome_lens.attribution.nodes import group_positions

FEATURES = ("pair_match", "pair_chars", "char", "label", "all", "none")
CHAR_FEATURES = ("pair_match", "pair_chars", "char")
GROUPS = ("bos", "chars", "first_half", "centre", "second_half", "eos")
N_DRAWS = 4
_STREAM = 7


@dataclass(frozen=True)
class Hypothesis:
    name: str
    after_layer: int
    keep: Mapping[str, str]  # group -> feature
    claim: str = ""

    @classmethod
    def from_params(cls, raw: Mapping[str, Any]) -> Hypothesis:
        return cls(name=raw["name"], after_layer=int(raw["after_layer"]), keep=dict(raw["keep"]),
                   claim=str(raw.get("claim", "")))


def position_features(texts: list[str], labels: np.ndarray, length: int, width: int, has_eos: bool,
                      keep: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, width) feature codes and (width,) the feature name index per position for strings of one
    length; code -1 = position not scrubbed (`all`), feature `none` gives every row code 0."""
    n = len(texts)
    codes = np.full((n, width), -1, dtype=np.int64)
    feature_at = np.full(width, -1, dtype=np.int64)
    chars = np.array([[ord(c) for c in t] for t in texts], dtype=np.int64).reshape(n, length)
    split = any(g in keep for g in ("first_half", "centre", "second_half"))
    groups = ("bos", "first_half", "centre", "second_half", "eos") if split else ("bos", "chars", "eos")
    for group in groups:
        feature = keep.get(group, "none")
        for pos in group_positions(length, group, has_eos):
            feature_at[pos] = FEATURES.index(feature)
            if feature == "all":
                continue
            i = pos - 1  # character index of a character position
            mirror = length - 1 - i
            if feature == "none":
                codes[:, pos] = 0
            elif feature == "label":
                codes[:, pos] = labels.astype(np.int64)
            elif feature == "pair_match":
                codes[:, pos] = (chars[:, i] == chars[:, mirror]).astype(np.int64)
            elif feature == "pair_chars":
                codes[:, pos] = chars[:, i] * 65536 + chars[:, mirror]
            elif feature == "char":
                codes[:, pos] = chars[:, i]
    return codes, feature_at


def draw_sources(codes: np.ndarray, rng: np.random.Generator, agree: bool) -> np.ndarray:
    """(rows, width) per row and position a source row whose code agrees (or, with agree=False,
    disagrees) at that position, uniformly; -1 where the position is not scrubbed. A row is its own
    source only when no other row qualifies."""
    n, width = codes.shape
    out = np.full((n, width), -1, dtype=np.int64)
    for pos in range(width):
        column = codes[:, pos]
        if (column < 0).all():
            continue
        order = np.argsort(column, kind="stable")  # rows grouped by code
        sorted_codes = column[order]
        start = np.searchsorted(sorted_codes, column, side="left")  # where each row's block starts
        size = np.searchsorted(sorted_codes, column, side="right") - start
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        u = rng.random(n)
        if agree:  # another row of the same block: skip over the row itself
            k = np.floor(u * (size - 1)).astype(np.int64)
            k = np.where(k >= rank - start, k + 1, k)
            pick = np.where(size > 1, order[np.clip(start + k, 0, n - 1)], np.arange(n))
        else:  # a row outside the block
            k = np.floor(u * (n - size)).astype(np.int64)
            k = np.where(k >= start, k + size, k)
            pick = np.where(size < n, order[np.clip(k, 0, n - 1)], np.arange(n))
        out[:, pos] = pick
    return out


def scrub_sources(examples: pd.DataFrame, width: int, has_eos: bool, hypothesis: Hypothesis, seed: int,
                  variant: str, draw: int) -> np.ndarray:
    """(n, width) global example row to take each position's residual from (-1: keep), for one draw.

    variant: `hypothesis` (agree on each kept feature), `control` (disagree) or `random` (any string of
    the same length at every scrubbed position)."""
    rng = np.random.default_rng([seed, _STREAM, draw, ("hypothesis", "control", "random").index(variant),
                                 *map(ord, hypothesis.name)])
    out = np.full((len(examples), width), -1, dtype=np.int64)
    labels = examples["label"].to_numpy(dtype=bool)
    texts = examples["text"].astype(str).to_numpy()
    lengths = examples["length"].to_numpy()
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        codes, feature_at = position_features(list(texts[rows]), labels[rows], int(length), width, has_eos,
                                              hypothesis.keep)
        if variant == "random":
            codes = np.where(codes >= 0, 0, codes)
        agree = variant != "control"
        local = draw_sources(codes, rng, agree=True)
        if not agree:  # disagree on kept features; positions kept at `none` stay random
            none_positions = feature_at == FEATURES.index("none")
            disagree = draw_sources(np.where(none_positions[None, :], -1, codes), rng, agree=False)
            local = np.where(none_positions[None, :], local, disagree)
        out[rows] = np.where(local >= 0, rows[np.clip(local, 0, None)], -1)
    return out


def intervention_hook(model: TransformerBridge, after_layer: int) -> tuple[str, str]:
    """(hook to overwrite, cached hook to read) for the residual stream after `after_layer`."""
    last = model.cfg.n_layers - 1
    cached = f"blocks.{after_layer}.hook_resid_post"
    return (f"blocks.{after_layer + 1}.hook_resid_pre" if after_layer < last else "ln_final.hook_in"), cached


def scrubbed_logit_diff(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache,
                        hypothesis: Hypothesis, sources: np.ndarray, batch_size: int) -> np.ndarray:
    hook, cached = intervention_hook(model, hypothesis.after_layer)
    resid = cache_tensor(cache, cached)
    device = device_of(model)
    width = tokens.shape[1]
    src = torch.from_numpy(sources)
    keep = src < 0
    row_index = torch.where(keep, torch.arange(len(tokens))[:, None].expand(-1, width), src)
    pos_index = torch.arange(width)[None, :].expand(len(tokens), -1)
    values = resid[row_index.to(resid.device), pos_index.to(resid.device)].to(device)  # (n, width, d_model)

    def hooks(rows: slice) -> list:
        return [(hook, lambda x, hook, v=values[rows]: v.to(x.dtype))]

    return forward_logit_diff(model, tokens, batch_size, hooks).cpu().numpy()


def balanced_loss(diff: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """(class-balanced cross-entropy, loss on palindromes, loss on the rest) from logit differences."""
    signed = np.where(label, diff, -diff)
    loss = np.logaddexp(0.0, -signed)  # -log sigmoid(margin)
    pos = float(loss[label].mean()) if label.any() else math.nan
    neg = float(loss[~label].mean()) if (~label).any() else math.nan
    return float(balanced_mean(loss, label)), pos, neg


def scrub(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, examples: pd.DataFrame,
          hypothesis: Hypothesis, seed: int, has_eos: bool, batch_size: int,
          model_diff: np.ndarray) -> dict[str, Any]:
    """The scrubbing result of one hypothesis: losses, % recovered and baselines."""
    if not 0 <= hypothesis.after_layer < model.cfg.n_layers:
        raise ValueError(f"hypothesis {hypothesis.name}: after_layer {hypothesis.after_layer} is not a layer of "
                         f"this {model.cfg.n_layers}-layer model")
    label = examples["label"].to_numpy(dtype=bool)
    width = tokens.shape[1]
    runs: dict[str, dict[str, float]] = {}
    for variant in ("random", "hypothesis", "control"):
        diffs = [scrubbed_logit_diff(model, tokens, cache, hypothesis,
                                     scrub_sources(examples, width, has_eos, hypothesis, seed, variant, d), batch_size)
                 for d in range(N_DRAWS)]
        losses = np.array([balanced_loss(d, label) for d in diffs])
        margins = [np.where(label, d, -d) for d in diffs]
        runs[variant] = {"loss": float(losses[:, 0].mean()), "loss_palindrome": float(losses[:, 1].mean()),
                         "loss_not_palindrome": float(losses[:, 2].mean()),
                         "balanced_accuracy": float(np.mean([balanced_accuracy(m, label) for m in margins])),
                         "balanced_margin": float(np.mean([balanced_mean(m, label) for m in margins]))}
    model_loss, pos, neg = balanced_loss(model_diff, label)
    margin = np.where(label, model_diff, -model_diff)
    runs["model"] = {"loss": model_loss, "loss_palindrome": pos, "loss_not_palindrome": neg,
                     "balanced_accuracy": float(balanced_accuracy(margin, label)),
                     "balanced_margin": float(balanced_mean(margin, label))}
    constant = math.log(2)  # class-balanced label entropy: the best constant predictor's loss
    span = runs["random"]["loss"] - model_loss

    def recovered(loss: float) -> float | None:
        return (runs["random"]["loss"] - loss) / span if abs(span) > 1e-6 else None  # float noise: no span

    acc_span = runs["model"]["balanced_accuracy"] - runs["random"]["balanced_accuracy"]
    return {
        "name": hypothesis.name, "claim": hypothesis.claim, "after_layer": hypothesis.after_layer,
        "keep": dict(hypothesis.keep), "n_draws": N_DRAWS,
        "recovered": recovered(runs["hypothesis"]["loss"]),
        # the same scale on class-balanced accuracy: a confidently wrong random scrub inflates the loss scale
        "accuracy_recovered": ((runs["hypothesis"]["balanced_accuracy"] - runs["random"]["balanced_accuracy"])
                               / acc_span if abs(acc_span) > 1e-9 else None),
        "control": recovered(runs["control"]["loss"]),
        "constant": recovered(constant),
        "baseline": {"label_entropy": constant, "random_loss": runs["random"]["loss"], "model_loss": model_loss},
        "runs": runs,
    }
