"""Causal scrubbing (Chan et al., Redwood 2022) of an algorithm stated as data.

A hypothesis says what the residual stream after one layer carries at each group of positions: at a
position of group g it carries only feature f (`keep: {g: f}`, features in palindrome_lens/features.py),
so replacing that position's residual with the one of another string of the same length that agrees on
f must leave the output as it is. Groups a hypothesis leaves out get `none` (resampled at random).

Donors come from a pool: the analysis strings plus the test split (deduplicated), so that fine features
still find other strings that agree. A position whose only agreeing string is its own "draws itself" and
is not scrubbed at all; `self_draw_share` reports how often that happened, and a scrub that mostly drew
itself tests nothing (the verdict says inconclusive).

Each position draws its own donor, with a random stream keyed by (seed, layer, length, position, feature,
draw), so two hypotheses that keep the same feature at a position scrub it with the same donors.

Reported per hypothesis, all class-balanced (the mean within each class, then across the two):
- `recovered`: loss recovered on the scale from every position resampled at random (0%) to the model
  (100%). A random scrub is confidently wrong, so this scale is long;
- `recovered_constant`: the same on the scale anchored at knowing nothing, (ln 2 - L) / (ln 2 - L_model):
  0% is the best constant predictor, 100% the model;
- `accuracy_recovered`: balanced accuracy on the random-to-model scale;
- `control`: the scrub from strings that *disagree* on each kept feature (it must fail);
- `constant`: where a constant predictor sits on the random-to-model scale;
- `local`: every mirrored pair's two positions (and BOS, the centre, EOS) scrubbed alone, the rest left as
  they are; the figure is the unit that fares worst (every one must pass), the pooled one beside it.
  Scrubbing every position at once cannot refute a coarse string-level feature when the readout works like
  an OR over positions (the donors bring mismatches of their own); one pair at a time can.
The losses are averaged over `draws` seeded draws; per-class losses show cancellation between classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens import features as F
from palindrome_lens.attribution.common import (
    balanced_accuracy,
    balanced_mean,
    device_of,
    resume_logit_diff,
)
from palindrome_lens.attribution.nodes import group_positions

N_DRAWS = 4
SELF_DRAW_LIMIT = 0.5  # a scrub where more than this share of scrubbed positions drew themselves tests nothing
MATERIAL = 0.01  # a local unit counts when scrubbing it at random costs at least this share of the global span
ROWS_PER_FORWARD = 4096
_STREAM = 7
HALVES = ("first_half", "centre", "second_half")
AGREE, DISAGREE = 0, 1


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

    def groups(self) -> tuple[str, ...]:
        """The position groups this hypothesis splits a string into (chars, or its halves)."""
        split = any(g in self.keep for g in HALVES)
        return ("bos", "first_half", "centre", "second_half", "eos") if split else ("bos", "chars", "eos")


def feature_by_position(hypothesis: Hypothesis, length: int, width: int, has_eos: bool) -> list[str | None]:
    """The feature kept at each token position of a string of `length` (None: a PAD slot)."""
    out: list[str | None] = [None] * width
    for group in hypothesis.groups():
        for pos in group_positions(length, group, has_eos):
            out[pos] = hypothesis.keep.get(group, F.NONE)
    return out


def units(length: int, has_eos: bool) -> list[tuple[str, list[int]]]:
    """The pieces a local scrub resamples one at a time: each mirrored pair, the centre, BOS and EOS."""
    out = [("bos", [0])]
    out += [(f"pair {k}", [k + 1, length - k]) for k in range(length // 2)]
    if length % 2:
        out.append(("centre", [(length + 1) // 2]))
    if has_eos:
        out.append(("eos", [length + 1]))
    return out


def balanced_loss(diff: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """(class-balanced cross-entropy, loss on palindromes, loss on the rest) from logit differences:
    the mean within each class, then the mean of the two, so the class mix of a batch does not matter."""
    signed = np.where(label, diff, -diff)
    loss = np.logaddexp(0.0, -signed)  # -log sigmoid(margin)
    pos = float(loss[label].mean()) if label.any() else math.nan
    neg = float(loss[~label].mean()) if (~label).any() else math.nan
    return float(balanced_mean(loss, label)), pos, neg


def run_metrics(diffs: Sequence[np.ndarray], label: np.ndarray) -> dict[str, float]:
    """Losses, balanced accuracy and margin of a run, averaged over its draws."""
    losses = np.array([balanced_loss(d, label) for d in diffs])
    margins = [np.where(label, d, -d) for d in diffs]
    return {"loss": float(losses[:, 0].mean()), "loss_palindrome": float(losses[:, 1].mean()),
            "loss_not_palindrome": float(losses[:, 2].mean()),
            "balanced_accuracy": float(np.mean([balanced_accuracy(m, label) for m in margins])),
            "balanced_margin": float(np.mean([balanced_mean(m, label) for m in margins]))}


def farthest(units: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
    """The unit whose `key` lies farthest from 100% on either side (None: no unit has it): a hypothesis must
    survive the scrub of every pair alone, so the pair that fares worst is the one its gate reads."""
    have = [u for u in units if u.get(key) is not None]
    return max(have, key=lambda u: abs(1.0 - u[key])) if have else None


def on_scale(value: float, zero: float, one: float) -> float | None:
    """Where `value` sits between `zero` (0) and `one` (1); None when the two (almost) coincide."""
    return (value - zero) / (one - zero) if abs(one - zero) > 1e-6 else None


@dataclass
class DonorPool:
    """The strings donors come from and their residual stream after each layer.

    `resid[layer]` is (n_pool, width, d_model) on the model's device; `own[i]` is the pool index of
    analysis row i's own string."""

    texts: np.ndarray
    lengths: np.ndarray
    own: np.ndarray
    resid: dict[int, torch.Tensor]
    n_symbols: int
    chars: dict[int, np.ndarray] = field(default_factory=dict)  # length -> (n of that length, length) ids
    index: dict[int, np.ndarray] = field(default_factory=dict)  # length -> pool indices of that length

    @classmethod
    def build(cls, model: TransformerBridge, encode: Any, analysis_texts: Sequence[str], extra_texts: Sequence[str],
              layers: Sequence[int], batch_size: int) -> DonorPool:
        """The analysis strings first (in order, deduplicated), then every other string of `extra_texts`
        whose length the analysis set has; residuals computed by one forward pass over the pool."""
        lengths_wanted = {len(t) for t in analysis_texts}
        texts = list(dict.fromkeys([*analysis_texts, *(t for t in extra_texts if len(t) in lengths_wanted)]))
        where = {t: i for i, t in enumerate(texts)}
        own = np.array([where[t] for t in analysis_texts], dtype=np.int64)
        names = [f"blocks.{layer}.hook_resid_post" for layer in layers]
        resid: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        device = device_of(model)
        for start in range(0, len(texts), batch_size):
            tokens = encode(texts[start:start + batch_size]).to(device)
            with torch.inference_mode():
                _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            for layer, name in zip(layers, names):
                resid[layer].append(cache[name].float().clone())
        lookup = {c: i for i, c in enumerate(sorted(set("".join(texts))))}  # one small id per character
        lengths = np.array([len(t) for t in texts])
        pool = cls(np.array(texts, dtype=object), lengths, own, {k: torch.cat(v) for k, v in resid.items()}, len(lookup))
        for length in sorted(lengths_wanted):
            idx = np.flatnonzero(lengths == length)
            pool.index[length] = idx
            pool.chars[length] = np.array([[lookup[c] for c in texts[i]] for i in idx],
                                          dtype=np.int64).reshape(len(idx), length)
        return pool


@dataclass
class Scrubber:
    """Scrubs of hypotheses over the analysis rows, with caches so a search re-runs only what changed."""

    model: TransformerBridge
    tokens: torch.Tensor
    examples: pd.DataFrame
    pool: DonorPool
    seed: int
    has_eos: bool
    batch_size: int
    model_diff: np.ndarray
    _codes: dict[tuple, np.ndarray] = field(default_factory=dict)
    _runs: dict[tuple, tuple[np.ndarray, ...]] = field(default_factory=dict)

    @property
    def label(self) -> np.ndarray:
        return self.examples["label"].to_numpy(dtype=bool)

    def codes(self, feature: str, length: int, pos: int) -> np.ndarray:
        """(pool strings of `length`,) codes of `feature` at `pos`."""
        key = (feature, length, pos)
        if key not in self._codes:
            self._codes[key] = F.codes(feature, self.pool.chars[length], pos, self.pool.n_symbols)
        return self._codes[key]

    def bits(self, hypothesis: Hypothesis, rows: np.ndarray | None = None) -> dict[str, float]:
        """Per group, the mean entropy (bits) of its feature over its positions, on the analysis rows."""
        out: dict[str, tuple[list[float], list[int]]] = {}
        for row in self.position_bits(hypothesis, rows):
            values, weights = out.setdefault(row["group"], ([], []))
            values.append(row["bits"])
            weights.append(row["n_rows"])
        return {group: float(np.average(v, weights=w)) for group, (v, w) in out.items()}

    def position_bits(self, hypothesis: Hypothesis, rows: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Per string length and token position, the entropy (bits) of the feature kept there, on the analysis
        rows: how much the hypothesis says the position carries (`all`: the whole string)."""
        rows = self._rows(rows)
        lengths = self.examples["length"].to_numpy()[rows]
        out = []
        for length in np.unique(lengths):
            mine = rows[lengths == length]
            local = self._local_index(int(length), mine)
            for group in hypothesis.groups():
                feature = hypothesis.keep.get(group, F.NONE)
                for pos in group_positions(int(length), group, self.has_eos):
                    code = self.codes(feature, int(length), pos) if feature != F.ALL else self._whole(int(length))
                    out.append({"length": int(length), "pos": pos, "group": group, "feature": feature,
                                "bits": F.entropy_bits(code[local]), "n_rows": len(mine)})
        return out

    def _whole(self, length: int) -> np.ndarray:
        return np.arange(len(self.pool.index[length]), dtype=np.int64)

    def _rows(self, rows: np.ndarray | None) -> np.ndarray:
        return np.arange(len(self.examples)) if rows is None else np.asarray(rows)

    def _local_index(self, length: int, rows: np.ndarray) -> np.ndarray:
        """Each analysis row's position among the pool strings of its length."""
        index = self.pool.index[length]
        return np.searchsorted(index, self.pool.own[rows])

    def draw(self, feature: str, length: int, pos: int, rows: np.ndarray, after_layer: int, draw: int,
             mode: int) -> tuple[np.ndarray, np.ndarray]:
        """(pool index of each row's donor at `pos`, whether it is the row's own string)."""
        index = self.pool.index[length]
        own_local = self._local_index(length, rows)
        rng = np.random.default_rng([self.seed, _STREAM, after_layer, length, pos, draw, mode, *map(ord, feature)])
        u = rng.random(len(index))[own_local]  # one number per pool string: a row's donor does not depend on the batch
        code = self.codes(feature, length, pos)
        order = np.argsort(code, kind="stable")
        rank = np.empty(len(code), dtype=np.int64)
        rank[order] = np.arange(len(code))
        sorted_code = code[order]
        mine = code[own_local]
        start = np.searchsorted(sorted_code, mine, side="left")
        size = np.searchsorted(sorted_code, mine, side="right") - start
        n = len(code)
        if mode == AGREE:  # another string of the same block: skip over the row's own string
            k = np.floor(u * (size - 1)).astype(np.int64)
            k = np.where(k >= rank[own_local] - start, k + 1, k)
            pick = np.where(size > 1, order[np.clip(start + k, 0, n - 1)], own_local)
        else:  # a string outside the block
            k = np.floor(u * (n - size)).astype(np.int64)
            k = np.where(k >= start, k + size, k)
            pick = np.where(size < n, order[np.clip(k, 0, n - 1)], own_local)
        return index[pick], pick == own_local

    def sources(self, hypothesis: Hypothesis, rows: np.ndarray, draw: int, control: bool,
                only: Sequence[int] | None = None) -> tuple[np.ndarray, int, int]:
        """(rows, width) pool index per position (the row's own string where not scrubbed), the number of
        scrubbed positions and how many of them drew the row's own string. `only`: scrub these positions
        alone (a local scrub); the rest keep the row's own residual."""
        width = self.tokens.shape[1]
        lengths = self.examples["length"].to_numpy()[rows]
        out = np.repeat(self.pool.own[rows][:, None], width, axis=1)
        scrubbed = selfish = 0
        for length in np.unique(lengths):
            at = np.flatnonzero(lengths == length)
            mine = rows[at]
            for pos, feature in enumerate(feature_by_position(hypothesis, int(length), width, self.has_eos)):
                if feature is None or feature == F.ALL or (only is not None and pos not in only):
                    continue
                mode = DISAGREE if control and feature != F.NONE else AGREE
                pick, own = self.draw(feature, int(length), pos, mine, hypothesis.after_layer, draw, mode)
                out[at, pos] = pick
                scrubbed += len(at)
                selfish += int(own.sum())
        return out, scrubbed, selfish

    def diffs(self, after_layer: int, sources: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
        """Logit differences with the residual after `after_layer` taken from the pool, one run per source
        matrix, batched into forward passes of about ROWS_PER_FORWARD rows from that layer on."""
        if not sources:
            return []
        resid = self.pool.resid[after_layer]
        width = self.tokens.shape[1]
        stacked = torch.from_numpy(np.concatenate(sources)).to(resid.device)
        tokens = self.tokens[torch.from_numpy(rows)].repeat(len(sources), 1).to(resid.device)
        positions = torch.arange(width, device=resid.device)[None, :]
        out = []
        for start in range(0, len(stacked), ROWS_PER_FORWARD):
            batch = slice(start, start + ROWS_PER_FORWARD)
            out.append(resume_logit_diff(self.model, resid[stacked[batch], positions], tokens[batch], after_layer))
        return list(torch.cat(out).cpu().numpy().reshape(len(sources), len(rows)))

    def _run(self, hypothesis: Hypothesis, rows: np.ndarray, draws: int, control: bool,
             only: Sequence[int] | None) -> tuple[np.ndarray, ...]:
        """Cached (diffs per draw..., scrubbed count, self count) of one scrub over `rows`."""
        lengths = tuple(sorted(set(self.examples["length"].to_numpy()[rows].tolist())))
        features = tuple(tuple(feature_by_position(hypothesis, n, self.tokens.shape[1], self.has_eos)) for n in lengths)
        if only is not None:
            features = tuple(tuple(f if p in only else F.ALL for p, f in enumerate(fs)) for fs in features)
        key = (hypothesis.after_layer, features, control, draws, rows.tobytes())
        if key not in self._runs:
            made = [self.sources(hypothesis, rows, d, control, only) for d in range(draws)]
            diffs = self.diffs(hypothesis.after_layer, [m[0] for m in made], rows)
            self._runs[key] = (*diffs, np.array([sum(m[1] for m in made), sum(m[2] for m in made)]))
        return self._runs[key]

    def scrub(self, hypothesis: Hypothesis, rows: np.ndarray | None = None, draws: int = N_DRAWS,
              local: bool = True, local_from: float | None = None) -> dict[str, Any]:
        """The scrubbing result of one hypothesis: losses on both scales, control, constant, local scrubs. With
        `local_from`, the local scrubs (most of a scrub's forwards) run only when each global share recovered is at
        least that: below it the hypothesis fails whatever its pairs do, and `local_skipped` says they did not run."""
        if not 0 <= hypothesis.after_layer < self.model.cfg.n_layers:
            raise ValueError(f"hypothesis {hypothesis.name}: after_layer {hypothesis.after_layer} is not a layer of "
                             f"this {self.model.cfg.n_layers}-layer model")
        rows = self._rows(rows)
        label = self.label[rows]
        random = Hypothesis("random", hypothesis.after_layer, {g: F.NONE for g in hypothesis.groups()})
        runs: dict[str, dict[str, float]] = {}
        counts = {}
        for name, h, control in (("random", random, False), ("hypothesis", hypothesis, False),
                                 ("control", hypothesis, True)):
            *diffs, count = self._run(h, rows, draws, control, None)
            runs[name] = run_metrics(diffs, label)
            counts[name] = count
        model_diff = self.model_diff[rows]
        runs["model"] = run_metrics([model_diff], label)
        constant = math.log(2)  # class-balanced label entropy: the best constant predictor's loss
        model_loss, random_loss = runs["model"]["loss"], runs["random"]["loss"]
        scrubbed, selfish = (int(x) for x in counts["hypothesis"])
        # the control disagrees on the kept features; a hypothesis that keeps only `all` and `none` has none
        has_control = any(f not in (F.ALL, F.NONE) for f in hypothesis.keep.values())
        result = {
            "name": hypothesis.name, "claim": hypothesis.claim, "after_layer": hypothesis.after_layer,
            "keep": dict(hypothesis.keep), "n_draws": draws, "n_rows": len(rows),
            "recovered": on_scale(runs["hypothesis"]["loss"], random_loss, model_loss),
            "recovered_constant": on_scale(runs["hypothesis"]["loss"], constant, model_loss),
            "accuracy_recovered": on_scale(runs["hypothesis"]["balanced_accuracy"],
                                           runs["random"]["balanced_accuracy"], runs["model"]["balanced_accuracy"]),
            "control": on_scale(runs["control"]["loss"], random_loss, model_loss) if has_control else None,
            "control_constant": on_scale(runs["control"]["loss"], constant, model_loss) if has_control else None,
            "constant": on_scale(constant, random_loss, model_loss),
            "self_draw_share": selfish / scrubbed if scrubbed else 0.0,
            "bits": self.bits(hypothesis, rows),
            "baseline": {"label_entropy": constant, "random_loss": random_loss, "model_loss": model_loss},
            "runs": runs,
        }
        shares = [result[k] for k in ("recovered", "recovered_constant", "accuracy_recovered")]
        result["local_skipped"] = local and local_from is not None and any(v is not None and v < local_from
                                                                          for v in shares)
        run_local = local and not result["local_skipped"]
        result["local"] = self.local(hypothesis, rows, draws, random_loss - model_loss) if run_local else None
        return result

    def local(self, hypothesis: Hypothesis, rows: np.ndarray, draws: int, span: float) -> dict[str, Any]:
        """Each unit (a mirrored pair, the centre, BOS, EOS) scrubbed alone, the rest left as it is, on the
        random-to-model scale: `recovered` and `accuracy_recovered` are those of the unit farthest from 100%
        (the gate reads them: every unit must pass), `pooled_*` the mean losses over the units, and `units`
        each one. A unit matters when resampling it at random costs at least MATERIAL of the global
        random-to-model `span`; a unit that costs nothing when scrambled has no scale to measure on."""
        lengths = self.examples["length"].to_numpy()[rows]
        random = Hypothesis("random", hypothesis.after_layer, {g: F.NONE for g in hypothesis.groups()})
        width = self.tokens.shape[1]
        by_unit: dict[str, list[tuple[np.ndarray, list[int]]]] = {}
        for length in np.unique(lengths):
            kept = feature_by_position(hypothesis, int(length), width, self.has_eos)
            for name, positions in units(int(length), self.has_eos):
                if any(kept[p] not in (None, F.ALL) for p in positions):
                    by_unit.setdefault(name, []).append((rows[lengths == length], positions))
        per_unit, pooled = [], {"random": [], "hypothesis": [], "model": [], "random_acc": [], "hypothesis_acc": [],
                                "model_acc": []}
        for name, pieces in by_unit.items():
            unit_rows = np.concatenate([r for r, _ in pieces])
            got = {}
            for run, h in (("random", random), ("hypothesis", hypothesis)):
                diffs = [np.empty(0)] * draws
                for piece_rows, positions in pieces:
                    *d, _ = self._run(h, piece_rows, draws, False, positions)
                    diffs = [np.concatenate([a, b]) for a, b in zip(diffs, d)]
                got[run] = run_metrics(diffs, self.label[unit_rows])
            got["model"] = run_metrics([self.model_diff[unit_rows]], self.label[unit_rows])
            matters = got["random"]["loss"] - got["model"]["loss"] >= MATERIAL * span
            per_unit.append({"unit": name, "n_rows": len(unit_rows), "matters": bool(matters),
                             "loss": got["hypothesis"]["loss"], "random_loss": got["random"]["loss"],
                             "model_loss": got["model"]["loss"],
                             "recovered": on_scale(got["hypothesis"]["loss"], got["random"]["loss"], got["model"]["loss"])
                             if matters else None,
                             "accuracy_recovered": on_scale(got["hypothesis"]["balanced_accuracy"],
                                                            got["random"]["balanced_accuracy"],
                                                            got["model"]["balanced_accuracy"]) if matters else None})
            if not matters:
                continue
            for run in ("random", "hypothesis", "model"):
                pooled[run].append(got[run]["loss"])
                pooled[f"{run}_acc"].append(got[run]["balanced_accuracy"])
        if not pooled["model"]:
            return {"recovered": None, "accuracy_recovered": None, "pooled_recovered": None,
                    "pooled_accuracy_recovered": None, "loss": None, "random_loss": None, "model_loss": None,
                    "units": per_unit, "worst_unit": None}
        mean = {k: float(np.mean(v)) for k, v in pooled.items()}
        material = [u for u in per_unit if u["recovered"] is not None]
        worst = farthest(material, "recovered")
        return {"recovered": worst["recovered"] if worst else None,
                "accuracy_recovered": (w["accuracy_recovered"] if (w := farthest(material, "accuracy_recovered"))
                                       else None),
                "pooled_recovered": on_scale(mean["hypothesis"], mean["random"], mean["model"]),
                "pooled_accuracy_recovered": on_scale(mean["hypothesis_acc"], mean["random_acc"], mean["model_acc"]),
                "loss": mean["hypothesis"], "random_loss": mean["random"], "model_loss": mean["model"],
                "units": per_unit, "worst_unit": worst["unit"] if worst else None}
