"""Activation patching with `transformer_lens.patching`: clean palindrome -> its distance-1 corruption.

Every corrupted string of the analysis set (role "corrupted") is run with one activation replaced by
the same activation of its clean palindrome (same pair_id, same length, so positions line up). The
metric is the logit difference at the readout position; the table reports the normalised recovery

    (mean patched - mean corrupted) / (mean clean - mean corrupted)

over the pairs of each mismatch position and over all of them (0 = the patch does nothing, 1 = it
restores the clean answer): a ratio of means, so pairs with a tiny gap cannot dominate, with the
quartiles of the per-pair ratios beside it.
Sweeps: `resid_pre` per layer and position and per layer over all positions (a sanity row: it must
be 1), each head's `z` per position and over all positions, and `mlp_out` per layer and position.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import transformer_lens.patching as tl_patching
from tqdm import tqdm
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.attention import real_positions
from palindrome_lens.attribution.common import (
    cache_tensor,
    forward_logit_diff,
    logit_diff_metric,
    recovery_stats,
    to_numpy,
)
from palindrome_lens.errors import DataFileError
from palindrome_lens.stage import tqdm_disabled


@dataclass(frozen=True)
class Sweep:
    activation: str  # TransformerLens short name (resid_pre, z, mlp_out)
    all_positions: bool
    run: Callable[..., Any]
    axes: tuple[str, ...]


def _all_positions_setter(corrupted: torch.Tensor, index: list[int], clean: torch.Tensor) -> torch.Tensor:
    """index = [layer]: the whole activation of the layer, every position."""
    corrupted[...] = clean
    return corrupted


def sweeps(model: TransformerBridge) -> list[Sweep]:
    out = [
        Sweep("resid_pre", True, lambda *a, **k: tl_patching.generic_activation_patch(
            *a, patch_setter=_all_positions_setter, activation_name="resid_pre", **k), ("layer",)),
        Sweep("resid_pre", False, tl_patching.get_act_patch_resid_pre, ("layer", "pos")),
        Sweep("z", True, tl_patching.get_act_patch_attn_head_out_all_pos, ("layer", "head")),
        Sweep("z", False, tl_patching.get_act_patch_attn_head_out_by_pos, ("layer", "pos", "head")),
    ]
    if not model.cfg.attn_only:
        out.append(Sweep("mlp_out", False, tl_patching.get_act_patch_mlp_out, ("layer", "pos")))
    return out


def _cells(model: TransformerBridge, sweep: Sweep, n_positions: int) -> pd.DataFrame:
    ranges = {"layer": model.cfg.n_layers, "pos": n_positions, "head": model.cfg.n_heads}
    grid = np.meshgrid(*[np.arange(ranges[a]) for a in sweep.axes], indexing="ij")
    return pd.DataFrame({a: g.ravel() for a, g in zip(sweep.axes, grid)})


def _hook_names(sweep: Sweep, n_layers: int) -> list[str]:
    full = {"resid_pre": "hook_resid_pre", "z": "attn.hook_z", "mlp_out": "hook_mlp_out"}[sweep.activation]
    return [f"blocks.{layer}.{full}" for layer in range(n_layers)]


@contextlib.contextmanager
def _quiet_tl_progress() -> Iterator[None]:
    """TL's sweeps draw a tqdm bar per call; we draw one bar for the whole analysis instead."""
    original = tl_patching.tqdm
    tl_patching.tqdm = lambda iterable, *a, **k: iterable
    try:
        yield
    finally:
        tl_patching.tqdm = original


def corruption_pairs(examples: pd.DataFrame) -> pd.DataFrame:
    """One row per corrupted example: corrupted_id, clean_id, pair_id, length, mismatch_pos."""
    corrupted = examples[(examples["role"] == "corrupted") & examples["mismatch_pos"].notna()]
    clean = examples[examples["role"] == "clean"].set_index("pair_id")["example_id"]
    missing = sorted(set(corrupted["pair_id"].dropna().astype(int)) - set(clean.index.astype(int)))
    if missing:
        raise DataFileError(f"examples: pair {missing[0]} has corrupted rows but no clean row")
    pairs = pd.DataFrame({
        "corrupted_id": corrupted["example_id"].astype("int64").to_numpy(),
        "clean_id": corrupted["pair_id"].map(clean).astype("int64").to_numpy(),
        "pair_id": corrupted["pair_id"].astype("int64").to_numpy(),
        "length": corrupted["length"].astype("int64").to_numpy(),
        "mismatch_pos": corrupted["mismatch_pos"].astype("int64").to_numpy(),
    })
    return pairs.sort_values(["length", "pair_id", "mismatch_pos", "corrupted_id"]).reset_index(drop=True)


def subset_cache(model: TransformerBridge, cache: ActivationCache, names: list[str], rows: np.ndarray) -> ActivationCache:
    """A cache of the given example rows (in that order) holding only `names`."""
    out = {}
    for name in names:
        tensor = cache_tensor(cache, name)
        out[name] = tensor[torch.tensor(rows, device=tensor.device)]
    return ActivationCache(out, model)


def patch_values(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache, pairs: pd.DataFrame,
                 sweep: Sweep, n_positions: int, batch_size: int, bar: tqdm | None = None) -> np.ndarray:
    """(cells, len(pairs)) patched logit differences for one sweep, run in batches of corrupted strings."""
    cells = _cells(model, sweep, n_positions)
    names = _hook_names(sweep, model.cfg.n_layers)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs.iloc[start:start + batch_size]
        clean_cache = subset_cache(model, cache, names, chunk["clean_id"].to_numpy())
        corrupted = tokens[torch.tensor(chunk["corrupted_id"].to_numpy())].to(device)
        with torch.inference_mode(), _quiet_tl_progress():
            result = sweep.run(model, corrupted, clean_cache, logit_diff_metric(model, corrupted), index_df=cells,
                               index_axis_names=None, reduce="none")
        out.append(to_numpy(result.values))
        if bar is not None:
            bar.update(len(cells))
    return np.concatenate(out, axis=1) if out else np.zeros((len(cells), 0))


def activation_patching(model: TransformerBridge, tokens: torch.Tensor, cache: ActivationCache,
                        examples: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """patching.parquet: recovery per (length, activation, layer, head, pos, mismatch_pos).

    `tokens` and `cache` hold the rows of `examples` in order. `pos`/`head` are null where a sweep
    patches every position or has no head; `mismatch_pos` null = all mismatch positions together.
    """
    pairs = corruption_pairs(examples)
    if pairs.empty:
        return _empty()
    width = real_positions(tokens).cpu().numpy()
    groups = {length: group.reset_index(drop=True) for length, group in pairs.groupby("length", sort=True)}
    n_positions = {length: int(width[group["corrupted_id"]].max()) for length, group in groups.items()}
    total = sum(-(-len(group) // batch_size) * len(_cells(model, sweep, n_positions[length]))
                for length, group in groups.items() for sweep in sweeps(model))
    frames = []
    with tqdm(total=total, desc="patching", unit="fwd", disable=tqdm_disabled()) as bar:
        for length, group in groups.items():
            clean = to_numpy(forward_logit_diff(model, tokens[torch.tensor(group["clean_id"].to_numpy())],
                                                batch_size))
            corrupted = to_numpy(forward_logit_diff(
                model, tokens[torch.tensor(group["corrupted_id"].to_numpy())], batch_size))
            for sweep in sweeps(model):
                cells = _cells(model, sweep, n_positions[length])
                values = patch_values(model, tokens, cache, group, sweep, n_positions[length], batch_size, bar)
                frames.append(_summarise(sweep, cells, values, clean, corrupted, group, int(length)))
    return pd.concat(frames, ignore_index=True)


def _summarise(sweep: Sweep, cells: pd.DataFrame, patched: np.ndarray, clean: np.ndarray, corrupted: np.ndarray,
               group: pd.DataFrame, length: int) -> pd.DataFrame:
    mismatch = group["mismatch_pos"].to_numpy()
    stats = {where: recovery_stats(patched[:, chosen], clean[chosen], corrupted[chosen])
             for where, chosen in [(None, np.ones(len(mismatch), dtype=bool)),
                                   *[(m, mismatch == m) for m in sorted(set(mismatch.tolist()))]]}
    rows = []
    for c, cell in enumerate(cells.itertuples(index=False)):
        layer = int(cell.layer)
        head = int(cell.head) if "head" in sweep.axes else None
        pos = int(cell.pos) if "pos" in sweep.axes else None
        component = f"L{layer}H{head}" if sweep.activation == "z" else f"{layer}_{sweep.activation}"
        for where, st in stats.items():
            chosen = (mismatch == where) if where is not None else np.ones(len(mismatch), dtype=bool)
            rows.append({
                "length": length, "activation": sweep.activation, "component": component, "layer": layer,
                "head": head, "pos": pos, "mismatch_pos": where, "n": st["n"],
                "recovery": _cell(st["recovery"], c), "pair_q25": _cell(st["pair_q25"], c),
                "pair_median": _cell(st["pair_median"], c), "pair_q75": _cell(st["pair_q75"], c),
                "clean_logit_diff": float(clean[chosen].mean()),
                "corrupted_logit_diff": float(corrupted[chosen].mean()),
            })
    frame = pd.DataFrame(rows)
    for column in ("head", "pos", "mismatch_pos"):
        frame[column] = frame[column].astype("Int32")
    return frame


def _cell(values: np.ndarray, c: int) -> float:
    return float(np.asarray(values).reshape(-1)[c]) if np.ndim(values) else float(values)


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: [] for c in ("length", "activation", "component", "layer", "head", "pos", "mismatch_pos",
                                          "n", "recovery", "pair_q25", "pair_median", "pair_q75", "clean_logit_diff",
                                          "corrupted_logit_diff")})
    return frame.astype({"length": "int64", "activation": "object", "component": "object", "layer": "int64",
                         "head": "Int32", "pos": "Int32", "mismatch_pos": "Int32", "n": "int64"})
