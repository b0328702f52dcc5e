"""Ablation: ablating nothing, or mean-ablating with each example's own activation, changes nothing; the
mean is the per-(length, position) mean of the stratified rows; the table's baseline is the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attribution_world import world

from palindrome_lens.attribution.ablation import (
    Ablation,
    ablation_table,
    component_activation,
    component_hook,
    mean_ablation,
    run_ablated,
    zero_ablation,
)
from palindrome_lens.attribution.common import head_names, logit_diff, mlp_names


def _components(model) -> list[str]:
    return [*head_names(model), *mlp_names(model)]


def test_ablating_nothing_changes_nothing() -> None:
    w = world("ln")
    out = run_ablated(w.model, w.tokens, [], batch_size=9)
    assert torch.allclose(out, logit_diff(w.logits), atol=1e-6)


@pytest.mark.parametrize("variant", ["ln", "attn_only"])
def test_own_activation_as_the_mean_changes_nothing(variant: str) -> None:
    w = world(variant)
    n = len(w.examples)
    for component in _components(w.model):
        hook, head = component_hook(component)
        own = Ablation(hook, head, component_activation(w.cache, component, n).clone())
        out = run_ablated(w.model, w.tokens, [own], batch_size=9)
        assert torch.allclose(out, logit_diff(w.logits), atol=1e-5), component
    everything = [Ablation(*component_hook(c), component_activation(w.cache, c, n).clone())
                  for c in _components(w.model)]
    assert torch.allclose(run_ablated(w.model, w.tokens, everything, 9), logit_diff(w.logits), atol=1e-5)


def test_zero_and_mean_ablation_do_change_the_output() -> None:
    w = world("ln")
    for component in _components(w.model):
        for ablation in (zero_ablation(w.cache, component, len(w.examples)),
                         mean_ablation(w.cache, w.examples, component)):
            out = run_ablated(w.model, w.tokens, [ablation], batch_size=64)
            assert (out - logit_diff(w.logits)).abs().max() > 1e-3, component


def test_mean_is_per_length_and_position_over_the_stratified_rows() -> None:
    w = world("ln")
    ablation = mean_ablation(w.cache, w.examples, "L1H0")
    z = w.cache["blocks.1.attn.hook_z"][:, :, 0]
    for length in (5, 6):
        rows = np.flatnonzero((w.examples["length"] == length).to_numpy())
        reference = np.flatnonzero(((w.examples["length"] == length) & w.examples["role"].isna()).to_numpy())
        assert len(reference) < len(rows)  # the pair rows are left out of the mean
        expected = z[torch.tensor(reference)].mean(dim=0)
        assert torch.allclose(ablation.values[torch.tensor(rows)], expected.expand(len(rows), *expected.shape),
                              atol=1e-6)


def test_table_baseline_is_the_model() -> None:
    w = world("ln")
    table = ablation_table(w.model, w.tokens, w.cache, w.examples, batch_size=64)
    diff = logit_diff(w.logits).numpy()
    label = w.examples["label"].to_numpy(dtype=bool)
    base = table[table["component"] == "none"].set_index("kind")
    assert base.loc["all", "accuracy"] == pytest.approx(((diff > 0) == label).mean())
    assert base.loc["all", "mean_logit_diff"] == pytest.approx(diff.mean(), abs=1e-6)
    for kind, n in w.examples["kind"].value_counts().items():
        assert base.loc[kind, "n"] == n
    assert base.loc["distance_1", "n"] == int((w.examples["distance"] == 1).sum())
    assert (base["accuracy_change"] == 0).all()
    ablated = table[table["component"] != "none"]
    assert set(ablated["component"]) == set(_components(w.model)) and set(ablated["mode"]) == {"zero", "mean"}
    assert len(ablated) == len(_components(w.model)) * 2 * len(base)
