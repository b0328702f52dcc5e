"""A ladder of programs of the pair-comparison family, smallest first: each level says the same algorithm with
one more kind of detail, and every number in it is still read from the model (a level's numbers are
deterministic summaries of the read tables, made as said below; only the readout is fitted, per level).

A readout head's table T[i, own, mirror] (salience or evidence, per character position i) is written as
- matched pairs (own == mirror): `match[i]` per position, plus `match_char[c]` shared by every position;
- broken pairs: `broken[i]` per position, plus `own[a] + mirror[b]` shared by every position, plus a rank-R
  CP (PARAFAC) term sum_r position[i, r] * own_cp[a, r] * mirror_cp[b, r] whose factors are shared across
  positions (fitted to what the additive part leaves, by alternating least squares over the broken entries);
- or, at the top, the whole table (`full`).
A context head's table C[i, c] (the readout's own layer-0 reading) is `position[i] + char[c]` (exact up to
LayerNorm: in layer 0 a key or value is a linear map of the token's and the position's embeddings) or whole.
`match`, `broken`, `match_char`, `own` and `mirror` are least-squares means (two-way, additive); the CP
factors are the least-squares rank-R fit, started deterministically; nothing here looks at the model's logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CP_STEPS = 200
CP_SEED = 20240
BACKFIT_STEPS = 20


@dataclass(frozen=True)
class Level:
    """One rung: which detail each part keeps."""

    name: str
    adds: str  # what this level adds to the one below, in words
    pairs: str  # "none" (the exact check), "mean", "characters", "combination" or "full"
    context: str = "none"  # "none", "additive" or "full"
    rank: int = 0  # CP rank of a broken pair's combination, shared by the readout tables
    layer_zero: bool = False  # layer 1's readout heads read each position's own layer-0 output (layer_zero.py)


def ladder(rank: int, context_dims: int, layer_zero: bool = False) -> list[Level]:
    """The levels, smallest first (the context level only when the readout's context is read at all, the
    layer_zero level only when the comparison is read right after layer 0)."""
    levels = [
        Level("exact", "the floor: the exact palindrome check, with the model's mean logit difference per class",
              "none"),
        Level("algorithm", "per readout head and position, one salience and one evidence for a matched pair and one "
                           "for a broken pair", "mean"),
        Level("characters", "which characters matter: one offset per character for a matched pair's character and "
                            "for a broken pair's own and mirror character, shared by every position", "characters"),
        Level("combination", f"how a broken pair's two characters combine: a rank-{rank} decomposition whose factors "
                             "are shared across positions and across the readout heads' tables", "combination",
              rank=rank),
    ]
    if context_dims:
        levels.append(Level("context", "the readout position's own layer-0 reading of the string, per position and "
                                       "character (additive)", "combination", "additive", rank))
    if layer_zero:
        levels.append(Level("layer_zero", "layer 1's readout heads read each position's own layer-0 output, computed "
                                          "with layer 0's weights, along one key and one value direction of their own "
                                          "weights: salience and evidence that move with the rest of the string",
                            "combination", "additive" if context_dims else "none", rank, layer_zero=True))
    levels.append(Level("full", "every table whole: a readout head's per mirrored pair and (left, right) characters, "
                                "its two positions merged exactly, and each context entry",
                        "full", "full" if context_dims else "none"))
    return levels


# --- compressing the readout heads' pair tables ------------------------------------------------------------

def pair_masks(length: int, n_alpha: int) -> tuple[np.ndarray, np.ndarray]:
    """(L, A, A) masks of the matched and broken entries a program can look up (the centre of an odd length
    compares a character with itself only)."""
    same = np.broadcast_to(np.eye(n_alpha, dtype=bool), (length, n_alpha, n_alpha)).copy()
    broken = ~same
    if length % 2:
        broken[length // 2] = False
    return same, broken


def joint_cp(residual: np.ndarray, mask: np.ndarray, rank: int, start: list[np.ndarray] | None = None,
             steps: int = CP_STEPS) -> list[np.ndarray]:
    """Rank-`rank` CP factors [table (T, R), position (L, R), own (A, R), mirror (A, R)] of `residual`
    (T, L, A, A), fitted by alternating least squares on the `mask`ed entries only (the others filled with the
    current fit at every step), started from `start` or each mode's leading singular vectors (deterministic)."""
    mask = np.broadcast_to(mask, residual.shape)
    filled = np.where(mask, residual, 0.0)

    def lead(matrix: np.ndarray, mode: int) -> np.ndarray:
        u = np.linalg.svd(matrix, full_matrices=False)[0][:, :rank]
        if u.shape[1] == rank:
            return u
        # a mode with fewer singular vectors than the rank: columns of zeros would stay zero under ALS (and cap
        # the rank at the smallest mode's size), so the rest start from fixed pseudo-random unit columns
        extra = np.random.default_rng([CP_SEED, mode]).standard_normal((u.shape[0], rank - u.shape[1]))
        return np.concatenate([u, extra / np.linalg.norm(extra, axis=0)], axis=1)

    factors = [f.copy() for f in start] if start is not None else \
        [lead(np.moveaxis(filled, mode, 0).reshape(filled.shape[mode], -1), mode) for mode in range(4)]
    subscripts = "tr,ir,ar,br->tiab"
    for _ in range(steps):
        target = np.where(mask, residual, np.einsum(subscripts, *factors, optimize=True))
        for mode in range(4):
            others = [f for m, f in enumerate(factors) if m != mode]
            gram = np.ones((rank, rank))
            for f in others:
                gram = gram * (f.T @ f)
            inputs = "".join("tiab"[m] + "r," for m in range(4) if m != mode)
            rhs = np.einsum(f"tiab,{inputs[:-1]}->{'tiab'[mode]}r", target, *others, optimize=True)
            factors[mode] = np.linalg.lstsq(gram, rhs.T, rcond=None)[0].T  # gram is symmetric
    return factors


def additive(table: np.ndarray, pairs: str, start: dict[str, np.ndarray] | None = None,
             steps: int = BACKFIT_STEPS) -> dict[str, np.ndarray]:
    """A pair table's per-position means (matched, broken) and, from `characters` on, per-character offsets
    shared by every position (two-way additive least squares; backfitting from `start` when given)."""
    length, n_alpha, _ = table.shape
    same, broken = pair_masks(length, n_alpha)
    diag = np.diagonal(table, axis1=1, axis2=2)  # (L, A)
    counts = broken.sum(axis=(1, 2))
    mean_broken = np.where(counts > 0, np.where(broken, table, 0.0).sum(axis=(1, 2)) / np.maximum(counts, 1), 0.0)
    if pairs == "mean":
        return {"match": diag.mean(axis=1), "broken": mean_broken}
    match_char = (diag - diag.mean(axis=1, keepdims=True)).mean(axis=0)
    own, mirror, base = np.zeros(n_alpha), np.zeros(n_alpha), mean_broken
    if start is not None:
        own, mirror, base = start["own"], start["mirror"], start["broken"]
    for _ in range(steps):  # backfitting: the broken entries are not a balanced design
        r = np.where(broken, table - base[:, None, None] - mirror[None, None, :], 0.0)
        own = r.sum(axis=(0, 2)) / np.maximum(broken.sum(axis=(0, 2)), 1)
        r = np.where(broken, table - base[:, None, None] - own[None, :, None], 0.0)
        mirror = r.sum(axis=(0, 1)) / np.maximum(broken.sum(axis=(0, 1)), 1)
        own, mirror = own - own.mean(), mirror - mirror.mean()
        r = np.where(broken, table - own[None, :, None] - mirror[None, None, :], 0.0)
        base = np.where(counts > 0, r.sum(axis=(1, 2)) / np.maximum(counts, 1), 0.0)
    return {"match": (diag - match_char[None]).mean(axis=1), "match_char": match_char, "broken": base, "own": own,
            "mirror": mirror}


def compress_pair_tables(tables: list[np.ndarray], level: Level) -> tuple[list[dict[str, np.ndarray]], dict]:
    """The readout heads' pair tables (each (L, A, A)) in the level's forms, and the CP factors they share.
    For `combination` the additive part and the CP term are fitted jointly (backfitting: each refitted to what
    the other leaves), so a table that is additive plus rank R is recovered whole."""
    if level.pairs == "full":
        return [{"full": t.copy()} for t in tables], {}
    forms = [additive(t, level.pairs) for t in tables]
    if level.pairs != "combination" or not tables:
        return forms, {}
    length, n_alpha, _ = tables[0].shape
    _, broken = pair_masks(length, n_alpha)
    stacked = np.stack(tables)
    scale = np.ones(len(tables))
    cp, factors = np.zeros_like(stacked), None
    for step in range(CP_STEPS):  # one backfitting pass of the additive part, then one ALS sweep of the CP term
        forms = [additive(t - c, level.pairs, f if step else None, 2 if step else BACKFIT_STEPS)
                 for t, c, f in zip(stacked, cp, forms)]
        residual = np.stack([np.where(broken, t - expand_pair_table(f, {}, length, n_alpha), 0.0)
                             for t, f in zip(stacked, forms)])
        if step == 0:  # each table counts alike, whatever its units
            scale = np.array([max(float(r[broken].std()), 1e-12) for r in residual])
        factors = joint_cp(residual / scale[:, None, None, None], broken, level.rank, factors, 1)
        cp = np.where(broken, np.einsum("tr,ir,ar,br->tiab", *factors, optimize=True), 0.0) * scale[:, None, None, None]
    weight, position, own, mirror = factors
    for t, form in enumerate(forms):
        form["cp_weight"] = weight[t] * scale[t]
    return forms, {"position": position, "own": own, "mirror": mirror}


def expand_pair_table(form: Mapping[str, Any], shared: Mapping[str, Any], length: int, n_alpha: int) -> np.ndarray:
    """The (L, A, A) table a compressed form stands for (what the level's program computes per entry)."""
    if "full" in form:
        return np.asarray(form["full"], dtype=np.float64)
    out = np.asarray(form["broken"], dtype=np.float64)[:, None, None] + np.zeros((length, n_alpha, n_alpha))
    if "own" in form:
        out = out + np.asarray(form["own"])[None, :, None] + np.asarray(form["mirror"])[None, None, :]
    if "cp_weight" in form:
        out = out + np.einsum("r,ir,ar,br->iab", *(np.asarray(x, dtype=np.float64) for x in (
            form["cp_weight"], shared["position"], shared["own"], shared["mirror"])))
    matched = np.asarray(form["match"], dtype=np.float64)[:, None] + (
        np.asarray(form["match_char"], dtype=np.float64)[None, :] if "match_char" in form else 0.0)
    chars = np.arange(n_alpha)
    out[:, chars, chars] = matched
    return out


def merged_pairs(salience: np.ndarray, evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A readout head's (L, A, A) tables as one entry per mirrored pair: (P, A, A) with P = ceil(L / 2), row k
    for positions k and L-1-k, indexed by (left character, right character); an odd length's centre keeps its row.
    A softmax over positions sees a pair's two positions only through the sum of their weights and the weighted
    mean of their evidence, so salience = log(exp s_left + exp s_right) and evidence = their softmax-weighted
    mean give the same readout features: exact, with half the entries."""
    length = salience.shape[0]
    half = length // 2
    left_s, left_e = salience[:half], evidence[:half]
    right_s = salience[::-1][:half].transpose(0, 2, 1)  # position L-1-k, own b and mirror a, indexed [a, b]
    right_e = evidence[::-1][:half].transpose(0, 2, 1)
    merged_s = np.logaddexp(left_s, right_s)
    merged_e = np.exp(left_s - merged_s) * left_e + np.exp(right_s - merged_s) * right_e
    if length % 2:
        merged_s = np.concatenate([merged_s, salience[half:half + 1]])
        merged_e = np.concatenate([merged_e, evidence[half:half + 1]])
    return merged_s, merged_e


# --- compressing a context table --------------------------------------------------------------------------

def compress_context_table(table: np.ndarray, context: str) -> dict[str, np.ndarray]:
    """A context table (L, A) or (L, A, k) as position[i] + char[c] (two-way least squares) or whole."""
    if context == "full":
        return {"full": table.copy()}
    position = table.mean(axis=1)
    return {"position": position, "char": (table - position[:, None]).mean(axis=0)}


def expand_context_table(form: Mapping[str, Any]) -> np.ndarray:
    if "full" in form:
        return np.asarray(form["full"], dtype=np.float64)
    position, char = np.asarray(form["position"], dtype=np.float64), np.asarray(form["char"], dtype=np.float64)
    return position[:, None] + char[None, :]


def size(form: Mapping[str, Any]) -> int:
    """How many numbers a compressed form holds."""
    return int(sum(np.asarray(v).size for v in form.values()))


# --- a level's constants ----------------------------------------------------------------------------------

def _specials(special: Mapping[str, Any]) -> tuple[list, list]:
    """(before, after): the (salience, value) of [BOS] and of [EOS] where the string has them."""
    return ([list(special["bos"])] if "bos" in special else []), ([list(special["eos"])] if "eos" in special else [])


def level_tables(level: Level, tables: Any, rounded: Any, cache: dict | None = None) -> dict[str, Any]:
    """One length's compact tables for `level` (gate and readout still empty), from the read LengthTables;
    `rounded` is constants.rounded (what the program holds); `cache` keeps compressions levels share."""
    pair_tables = [t for h in tables.heads for t in (h.salience, h.evidence)]
    key = (tables.length, level.pairs, level.rank)
    if cache is None or key not in cache:
        compressed = compress_pair_tables(pair_tables, level)
        if cache is None:
            cache = {}
        cache[key] = compressed
    forms, shared = cache[key]
    forms = [{k: rounded(v) for k, v in f.items()} for f in forms]
    heads = []
    for n, h in enumerate(tables.heads):
        before, after = _specials(h.special)
        heads.append({"name": h.name, "before": rounded(before) if before else [], "after": rounded(after) if after else [],
                      "salience": forms[2 * n], "evidence": forms[2 * n + 1]})
    context = []
    if level.context != "none":
        for c in tables.context:
            before, after = _specials(c.special)
            context.append({"name": c.name, "before": [[float(rounded(s)), rounded(v)] for s, v in before],
                            "after": [[float(rounded(s)), rounded(v)] for s, v in after],
                            "salience": {k: rounded(v) for k, v in compress_context_table(c.salience, level.context).items()},
                            "value": {k: rounded(v) for k, v in compress_context_table(c.value, level.context).items()}})
    return {"heads": heads, "context": context, "cp": {k: rounded(v) for k, v in shared.items()}}


def n_read(entry: Mapping[str, Any]) -> int:
    """Numbers a length's compact tables hold (special positions included)."""
    total = sum(int(np.asarray(v).size) for v in entry.get("cp", {}).values())
    for table in (*entry["heads"], *entry["context"]):
        total += sum(size(table[k]) for k in ("salience", "evidence", "value") if k in table)
        total += sum(int(np.asarray(s).size + np.asarray(v).size) for s, v in (*table["before"], *table["after"]))
    return total


def emulation_entry(entry: Mapping[str, Any], length: int, n_alpha: int) -> dict[str, Any]:
    """A length's compact tables as the whole tables the emulator reads (constants.json's layout)."""
    def special(table: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        if table["before"]:
            out["bos"] = table["before"][0]
        if table["after"]:
            out["eos"] = table["after"][0]
        return out

    shared = entry.get("cp", {})
    heads = [{"name": h["name"], "salience": expand_pair_table(h["salience"], shared, length, n_alpha),
              "evidence": expand_pair_table(h["evidence"], shared, length, n_alpha), "special": special(h)}
             for h in entry["heads"]]
    context = [{"name": c["name"], "salience": expand_context_table(c["salience"]),
                "value": expand_context_table(c["value"]), "special": special(c)} for c in entry["context"]]
    return {"heads": heads, "context": context, "gate": entry.get("gate"), "readout": entry.get("readout")}
