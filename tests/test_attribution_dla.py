"""DLA: the components sum to the model's logit difference with the final LayerNorm folded exactly, and a
head's DLA equals its output computed from the weights by hand and projected by hand."""

from __future__ import annotations

import math

import pytest
import torch
from test_attribution_world import VARIANTS, world

from palindrome_lens.attribution.common import class_direction, weight
from palindrome_lens.attribution.distributions import centred_components, distribution_stats
from palindrome_lens.attribution.dla import component_stack, components, direct_logit_attribution


def _dla(w):
    return direct_logit_attribution(w.model, w.cache, w.examples, w.diff, w.positions)


def test_layernorm_is_not_identity() -> None:
    """The invariant below would be trivial with LN weights 1 and biases 0; they are perturbed."""
    model = world("ln").model
    assert (weight(model, "ln_final.weight") - 1).abs().max() > 0.2
    assert weight(model, "ln_final.bias").abs().max() > 0.2


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_components_sum_to_logit_diff(variant: str) -> None:
    w = world(variant)
    dla = _dla(w)
    total = dla.groupby("example_id", sort=True)["value"].sum().to_numpy()
    expected = w.diff.numpy()
    assert len(total) == len(w.examples)
    assert abs(total - expected).max() < 1e-4
    assert abs(expected).max() > 0.1  # a logit difference worth decomposing
    assert list(dla["component"].iloc[: len(components(w.model))]) == components(w.model)
    assert set(dla["component"]) == set(components(w.model))
    assert (dla["logit_diff"].to_numpy() == expected.repeat(len(components(w.model)))).all()


def test_apply_ln_to_stack_alone_would_be_wrong() -> None:
    """The fold matters: TL's apply_ln_to_stack (centre, divide by scale) @ d misses ln_final's weight and bias."""
    w = world("ln")
    names, stack = component_stack(w.model, w.cache, w.positions)
    naive = w.cache.apply_ln_to_stack(stack.transpose(0, 1), layer=None, pos_slice=0) @ class_direction(w.model)
    error = (naive.sum(dim=0) - w.diff).abs().max()
    assert error > 1e-2


def test_head_dla_equals_hand_projection() -> None:
    """Recompute each head's output at BOS from weights (ln1, Q/K/V, PAD mask, softmax, W_O) and project it
    through ln_final (scale from the final residual) onto W_U[:, 1] - W_U[:, 0] by hand."""
    w = world("ln")
    model, cfg = w.model, w.model.cfg
    dla = _dla(w).set_index(["example_id", "component"])["value"]
    keep = (w.tokens != 0).float()
    final = w.cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"][:, 0]
    final_scale = (final.var(dim=-1, unbiased=False, keepdim=True) + cfg.eps).sqrt()
    direction = weight(model, "ln_final.weight") * class_direction(model)
    for layer in range(cfg.n_layers):
        x = w.cache[f"blocks.{layer}.hook_resid_pre"]
        x = (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True) + cfg.eps).sqrt()
        x = x * weight(model, f"blocks.{layer}.ln1.weight") + weight(model, f"blocks.{layer}.ln1.bias")
        for head in range(cfg.n_heads):
            q = x @ model.W_Q[layer, head] + model.b_Q[layer, head]
            k = x @ model.W_K[layer, head] + model.b_K[layer, head]
            v = x @ model.W_V[layer, head] + model.b_V[layer, head]
            scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)
            pattern = scores.masked_fill(keep[:, None, :] == 0, -torch.inf).softmax(dim=-1)
            z = pattern @ v
            assert torch.allclose(z, w.cache[f"blocks.{layer}.attn.hook_z"][:, :, head], atol=1e-5)
            out = z[:, 0] @ model.W_O[layer, head]
            by_hand = ((out - out.mean(-1, keepdim=True)) / final_scale) @ direction
            ours = torch.tensor([dla[(i, f"L{layer}H{head}")] for i in w.examples["example_id"]])
            assert torch.allclose(ours, by_hand.double(), atol=1e-5), f"L{layer}H{head}"


def test_distributions_centre_on_the_palindrome_mean() -> None:
    w = world("ln")
    centred = centred_components(_dla(w))
    palindromes = centred[centred["class"] == "palindrome"]
    assert (palindromes.groupby("component")["centred"].mean().abs() < 1e-9).all()
    assert set(centred["class"]) == {"palindrome", "not_palindrome"}
    stats = distribution_stats(centred)
    assert set(stats["grouping"]) == {"class", "kind"}
    counts = stats[(stats["grouping"] == "kind") & (stats["component"] == "embed")].set_index("group")["n"]
    assert counts.to_dict() == w.examples["kind"].value_counts().to_dict()
    assert list(dict.fromkeys(stats["component"])) == components(w.model)
