"""Attention tables and the weights views: mirror scores read the right cells, mean patterns are
distributions over real keys, and the positional QK pattern is layer 0's real pattern on W_pos alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attribution_world import world

from palindrome_lens.attribution.attention import (
    mean_patterns,
    mirror_by_head,
    mirror_per_example,
    mirror_scores,
)
from palindrome_lens.attribution.weights import pos_cosine, pos_embed_table, positional_qk


def test_mirror_score_reads_position_L_plus_1_minus_i() -> None:
    w = world("ln")
    scores = mirror_per_example(w.model, w.cache, w.examples)
    for row in (0, len(w.examples) // 2, len(w.examples) - 1):
        length = int(w.examples["length"].iat[row])
        for layer in range(2):
            pattern = w.cache[f"blocks.{layer}.attn.hook_pattern"][row]
            for head in range(2):
                by_hand = np.mean([float(pattern[head, i, length + 1 - i]) for i in range(1, length + 1)])
                assert scores[row, layer, head] == pytest.approx(by_hand, abs=1e-6)


def test_mirror_table_groups() -> None:
    w = world("ln")
    table = mirror_scores(w.model, w.cache, w.examples)
    everything = table[table["kind"] == "all"]
    assert set(everything["length"]) == {5, 6} and len(everything) == 2 * 4
    assert everything.groupby("length")["n"].first().to_dict() == w.examples["length"].value_counts().to_dict()
    assert table["mirror_score"].between(0, 1).all()
    overall = mirror_by_head(table)
    per_example = mirror_per_example(w.model, w.cache, w.examples)
    assert overall["L0H1"] == pytest.approx(per_example[:, 0, 1].mean(), abs=1e-9)


def test_mean_patterns_are_distributions_over_real_positions() -> None:
    w = world("ln")
    table = mean_patterns(w.model, w.cache, w.examples, w.tokens)
    sums = table.groupby(["layer", "head", "length", "dest"])["value"].sum()
    assert np.allclose(sums, 1.0, atol=1e-5)
    assert table.groupby("length")["dest"].max().to_dict() == {5: 6, 6: 7}  # BOS + L characters + EOS
    one = table[(table["layer"] == 1) & (table["head"] == 0) & (table["length"] == 5)]
    rows = torch.tensor(np.flatnonzero((w.examples["length"] == 5).to_numpy()))
    expected = w.cache["blocks.1.attn.hook_pattern"][rows][:, 0, :7, :7].mean(dim=0)
    got = one.pivot(index="dest", columns="src", values="value").to_numpy()
    assert np.allclose(got, expected.numpy(), atol=1e-6)


def test_positional_qk_is_exact_when_layer0_sees_positions_alone() -> None:
    """Zero the token embedding: layer 0's residual is then exactly W_pos, and the positional QK (with the
    cached ln1 scale and the biases) must be the very pattern the model computes, per length."""
    w = world("ln")
    model = w.model
    zero_embed = [("hook_embed", lambda act, hook: torch.zeros_like(act))]
    with torch.inference_mode(), model.hooks(fwd_hooks=zero_embed):
        _, cache = model.run_with_cache(w.tokens)
    table = positional_qk(model, cache, w.examples, w.tokens)
    assert set(table["layer"]) == {0, 1} and set(table["length"]) == {5, 6}
    for length in (5, 6):
        row = int(np.flatnonzero((w.examples["length"] == length).to_numpy())[0])
        n = length + 2  # BOS, characters, EOS
        for head in range(model.cfg.n_heads):
            ours = table[(table["layer"] == 0) & (table["head"] == head) & (table["length"] == length)].pivot(
                index="query_pos", columns="key_pos", values="pattern").to_numpy()
            real = cache["blocks.0.attn.hook_pattern"][row, head, :n, :n].numpy()
            assert ours.shape == (n, n) and np.allclose(ours, real, atol=1e-5), (length, head)


def test_positional_qk_uses_the_real_layernorm_scale() -> None:
    """With tokens present, LayerNorm's scale comes from token + position: normalising W_pos on its own
    (the old view) gives another pattern."""
    w = world("ln")
    model = w.model
    table = positional_qk(model, w.cache, w.examples, w.tokens)
    with torch.inference_mode(), model.hooks(fwd_hooks=[("hook_embed", lambda act, hook: torch.zeros_like(act))]):
        _, alone = model.run_with_cache(w.tokens)
    own_scale = positional_qk(model, alone, w.examples, w.tokens)
    layer0 = (table["layer"] == 0).to_numpy()
    assert np.abs(table["score"].to_numpy()[layer0] - own_scale["score"].to_numpy()[layer0]).max() > 1e-2


def test_pos_embed_views() -> None:
    model = world("ln").model
    heat = pos_embed_table(model)
    assert len(heat) == model.W_pos.numel()
    assert np.allclose(heat.pivot(index="pos", columns="dim", values="value").to_numpy(), model.W_pos.detach().numpy())
    cosine = pos_cosine(model)
    diagonal = cosine[cosine["pos_i"] == cosine["pos_j"]]["cosine"]
    assert np.allclose(diagonal, 1.0, atol=1e-6)
    matrix = cosine.pivot(index="pos_i", columns="pos_j", values="cosine").to_numpy()
    assert np.allclose(matrix, matrix.T, atol=1e-7)


def test_readout_attention_by_pair_status_by_hand() -> None:
    from palindrome_lens.attribution.attention import readout_attention

    w = world("ln")
    table = readout_attention(w.model, w.cache, w.examples, w.tokens)
    got = table.set_index(["component", "length", "status", "half"])
    for length in (5, 6):
        for layer, head in ((0, 1), (1, 0)):
            sums: dict = {}
            for row in np.flatnonzero(((w.examples["length"] == length) & ~w.examples["label"]).to_numpy()):
                text = w.examples["text"].iloc[row]
                attention = w.cache[f"blocks.{layer}.attn.hook_pattern"][row, head, 0]  # from BOS, the readout
                for i, c in enumerate(text):
                    key = ("mismatched" if c != text[-1 - i] else "matched",
                           "first_half" if i < length - length // 2 else "second_half")
                    total, n = sums.get(key, (0.0, 0))
                    sums[key] = (total + float(attention[i + 1]), n + 1)
            for (status, half), (total, n) in sums.items():
                cell = got.loc[(f"L{layer}H{head}", length, status, half)]
                assert cell["n"] == n and cell["attention"] == pytest.approx(total / n, abs=1e-6)
