"""Activation patching: patching every activation restores the clean logits; single patches at layer 0
move exactly the edited character; the table's counts match the corruption pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformer_lens.patching as tl_patching
from test_attribution_world import world

from palindrome_lens.attribution.common import logit_diff, recovery_stats
from palindrome_lens.attribution.patching import (
    _all_positions_setter,
    activation_patching,
    corruption_pairs,
    subset_cache,
)


@pytest.fixture(scope="module")
def patched():
    w = world("ln")
    return w, activation_patching(w.model, w.tokens, w.cache, w.examples, batch_size=7)


def test_pairs_follow_the_analysis_set() -> None:
    w = world("ln")
    pairs = corruption_pairs(w.examples)
    ex = w.examples.set_index("example_id")
    assert len(pairs) == int((w.examples["role"] == "corrupted").sum()) > 0
    for row in pairs.itertuples():
        clean, corrupted = ex.loc[row.clean_id], ex.loc[row.corrupted_id]
        assert clean["role"] == "clean" and corrupted["pair_id"] == clean["pair_id"]
        assert len(clean["text"]) == len(corrupted["text"]) == row.length
        differ = [i for i, (a, b) in enumerate(zip(clean["text"], corrupted["text"])) if a != b]
        assert len(differ) == 1 and min(differ[0], row.length - 1 - differ[0]) == row.mismatch_pos


@pytest.mark.parametrize("layer", [0, 1])
def test_patching_all_of_resid_pre_restores_clean_logits(layer: int) -> None:
    """Through transformer_lens.patching itself: every position of resid_pre at one layer -> clean logits."""
    w = world("ln")
    pairs = corruption_pairs(w.examples)
    names = [f"blocks.{i}.hook_resid_pre" for i in range(w.model.cfg.n_layers)]
    clean_cache = subset_cache(w.model, w.cache, names, pairs["clean_id"].to_numpy())
    corrupted = w.tokens[torch.tensor(pairs["corrupted_id"].to_numpy())]
    metrics = {"l0": lambda logits: logits[:, 0, 0], "l1": lambda logits: logits[:, 0, 1]}
    with torch.inference_mode():
        result = tl_patching.generic_activation_patch(
            w.model, corrupted, clean_cache, metrics, patch_setter=_all_positions_setter, activation_name="resid_pre",
            index_axis_names=("layer",), reduce="none")
    clean_logits = w.logits[torch.tensor(pairs["clean_id"].to_numpy()), 0]
    patched = result.values[:, layer].T  # (batch, 2 logits)
    assert torch.allclose(patched.cpu(), clean_logits, atol=1e-5)
    assert (w.logits[torch.tensor(pairs["corrupted_id"].to_numpy()), 0] - clean_logits).abs().max() > 1e-3


def test_full_resid_pre_rows_are_one(patched) -> None:
    _, table = patched
    full = table[(table["activation"] == "resid_pre") & table["pos"].isna()]
    assert len(full) > 0 and np.allclose(full["recovery"], 1.0, atol=1e-4)


def test_layer0_resid_pre_moves_only_the_edited_character(patched) -> None:
    """At layer 0 the residual is embed + pos_embed: patching the edited position turns the corrupted string
    back into the clean one (recovery 1); any other position changes nothing (recovery 0)."""
    w, table = patched
    rows = table[(table["activation"] == "resid_pre") & (table["layer"] == 0) & table["pos"].notna()
                 & table["mismatch_pos"].notna()]
    for (length, m), group in rows.groupby(["length", "mismatch_pos"]):
        by_pos = group.set_index("pos")["recovery"]
        edited = {m + 1, length - m}  # 1-based token positions of the broken pair
        assert abs(sum(by_pos[p] for p in edited) - 1.0) < 1e-4
        others = by_pos.drop(index=list(edited))
        assert np.allclose(others, 0.0, atol=1e-4), (length, m)


def test_table_counts_and_columns(patched) -> None:
    w, table = patched
    pairs = corruption_pairs(w.examples)
    overall = table[table["mismatch_pos"].isna()]
    for length, n in pairs.groupby("length").size().items():
        assert (overall[overall["length"] == length]["n"] == n).all()
    per_m = table[table["mismatch_pos"].notna() & (table["activation"] == "mlp_out")]
    expected = pairs.groupby(["length", "mismatch_pos"]).size()
    got = per_m.groupby(["length", "mismatch_pos"])["n"].first()
    assert got.to_dict() == {(int(a), int(b)): int(v) for (a, b), v in expected.items()}
    heads = set(table.loc[table["activation"] == "z", "component"])
    assert heads == {f"L{layer}H{h}" for layer in range(2) for h in range(2)}
    assert set(table["activation"]) == {"resid_pre", "z", "mlp_out"}
    assert table.notna()["recovery"].all()


def test_patching_is_independent_of_batch_size(patched) -> None:
    w, a = patched
    b = activation_patching(w.model, w.tokens, w.cache, w.examples, batch_size=1000)
    assert len(a) == len(b) and np.allclose(a["recovery"], b["recovery"], atol=1e-5)


def test_recovery_is_a_ratio_of_means_with_the_per_pair_spread() -> None:
    clean, corrupted = np.array([3.0, 1.0, 2.0, 10.0]), np.array([-1.0, -3.0, 2.0, 0.0])
    patched = np.array([[1.0, 1.0, 5.0, 1.0]])
    stats = recovery_stats(patched, clean, corrupted)
    # pair 3 has no gap and is left out; the rest: (mean patched - mean corrupted) / mean gap
    assert stats["n"] == 3
    assert stats["recovery"][0] == pytest.approx(((1 + 1 + 1) / 3 - (-1 - 3 + 0) / 3) / ((4 + 4 + 10) / 3))
    per_pair = np.array([0.5, 1.0, 0.1])  # a mean of ratios would give 0.533, dominated by nothing here
    assert stats["pair_median"][0] == pytest.approx(np.median(per_pair))
    assert stats["pair_q25"][0] == pytest.approx(np.quantile(per_pair, 0.25))
    # a tiny gap cannot dominate the ratio of means (it would dominate a mean of ratios)
    tiny = recovery_stats(np.array([[1.0, 3.0]]), np.array([1.0, 0.001]), np.array([0.0, 0.0]))
    assert tiny["recovery"][0] == pytest.approx((2.0 - 0.0) / 0.5005)


def test_metric_reads_each_rows_readout_position() -> None:
    logits = torch.zeros(2, 3, 2)
    logits[:, 0, 1] = torch.tensor([2.0, -1.0])
    logits[:, 2, 1] = 100.0
    assert logit_diff(logits, torch.tensor([0, 0])).tolist() == [2.0, -1.0]
    assert logit_diff(logits, torch.tensor([0, 2])).tolist() == [2.0, 100.0]
