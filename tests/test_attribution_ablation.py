"""Class-balanced ablation: ablating nothing (or with each row's own activation) changes nothing, resample
sources are same-length others with a fair-coin label, the mean is label-balanced, a constant predictor
scores 0 margin and 0.5 balanced accuracy, and the table's baseline is the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attribution_world import world

from palindrome_lens.attribution.ablation import (
    MODES,
    Ablator,
    ablation_table,
    balanced_reference,
    component_activation,
    replacement,
    resample_sources,
    whole_component_nodes,
)
from palindrome_lens.attribution.common import balanced_accuracy, balanced_mean
from palindrome_lens.attribution.nodes import (
    NODE_POSITIONS,
    candidate_nodes,
    component_layer,
    components,
    group_masks,
)


def _ablator(w, mode: str, sources: np.ndarray | None = None) -> Ablator:
    masks = group_masks(w.examples["length"], w.tokens.shape[1], NODE_POSITIONS["chars"], True)
    sources = resample_sources(w.examples, seed=0) if sources is None else sources
    return Ablator(w.model, w.tokens, w.cache, w.examples, masks, mode, sources)


def _everywhere(ablator: Ablator, component: str) -> list:
    return whole_component_nodes(component, ablator.masks, component_layer(component))


@pytest.mark.parametrize("variant", ["ln", "attn_only"])
def test_ablating_nothing_or_with_own_activation_changes_nothing(variant: str) -> None:
    w = world(variant)
    own = _ablator(w, "resample", sources=np.arange(len(w.examples)))  # every row is its own source
    base = w.diff.numpy()
    assert np.allclose(own.logit_diffs([[]])[0], base, atol=1e-5)
    sets = [_everywhere(own, c) for c in components(w.model)] + [
        [nd for c in components(w.model) for nd in _everywhere(own, c)]]
    for diff in own.logit_diffs(sets):
        assert np.allclose(diff, base, atol=1e-4)


def test_every_mode_changes_the_output_and_batching_does_not() -> None:
    w = world("ln")
    for mode in MODES:
        ablator = _ablator(w, mode)
        sets = [_everywhere(ablator, c) for c in components(w.model)]
        together = ablator.logit_diffs(sets)
        one_by_one = np.stack([ablator.logit_diffs([s])[0] for s in sets])
        assert np.allclose(together, one_by_one, atol=1e-5)
        assert (np.abs(together - w.diff.numpy()).max(axis=1) > 1e-3).all(), mode


def test_a_node_replaces_only_its_positions() -> None:
    """Ablating L1H0 at the characters leaves the BOS readout of a 2-layer model... changed only through
    layer 1's own characters, which the last layer cannot pass on: exactly no effect."""
    w = world("ln")
    ablator = _ablator(w, "zero")
    chars = [nd for nd in _everywhere(ablator, "L1H0") if nd.group == "chars"]
    bos = [nd for nd in _everywhere(ablator, "L1H0") if nd.group == "bos"]
    no_effect, effect = ablator.logit_diffs([chars, bos])
    assert np.allclose(no_effect, w.diff.numpy(), atol=1e-5)
    assert np.abs(effect - w.diff.numpy()).max() > 1e-3


def test_resample_sources_are_other_strings_of_the_same_length_with_a_fair_coin_label() -> None:
    w = world("ln")
    ex = w.examples
    src = resample_sources(ex, seed=0)
    assert (ex["length"].to_numpy()[src] == ex["length"].to_numpy()).all()
    assert (src != np.arange(len(ex))).all()
    assert ex["role"].iloc[src].isna().all()  # drawn from the stratified rows
    source_label = ex["label"].to_numpy()[src]
    label = ex["label"].to_numpy()
    # the source's label does not follow the row's: about half palindromes for either class
    for own in (True, False):
        share = source_label[label == own].mean()
        n = (label == own).sum()
        assert abs(share - 0.5) < 4 * np.sqrt(0.25 / n), (own, share, n)
    assert (resample_sources(ex, seed=0) == src).all()
    assert (resample_sources(ex, seed=1) != src).any()


def test_label_balanced_mean_weights_the_two_classes_equally() -> None:
    w = world("ln")
    ex = w.examples
    z = component_activation(w.cache, "L1H0", len(ex)).float()
    mean = balanced_reference(z, ex)
    for length in (5, 6):
        stratified = ((ex["length"] == length) & ex["role"].isna()).to_numpy()
        pal, rest = stratified & ex["label"].to_numpy(), stratified & ~ex["label"].to_numpy()
        assert 0 < pal.sum() < rest.sum()  # the classes really are unbalanced in the pool
        expected = (z[torch.from_numpy(pal)].mean(0) + z[torch.from_numpy(rest)].mean(0)) / 2
        rows = torch.tensor((ex["length"] == length).to_numpy())
        assert torch.allclose(mean[rows], expected.expand(int(rows.sum()), *expected.shape), atol=1e-6)
    assert torch.equal(replacement(w.cache, ex, "L1H0", "zero", np.arange(len(ex))), torch.zeros_like(z))


def test_constant_predictor_scores_zero_margin_and_half_balanced_accuracy() -> None:
    label = np.array([True] * 3 + [False] * 9)
    for constant in (-4.0, 0.5, 7.0):
        margins = np.where(label, constant, -constant)
        assert balanced_mean(margins, label) == pytest.approx(0.0)
        assert balanced_accuracy(margins, label) == pytest.approx(0.5)
    # an unbalanced mean is not 0: this is the bias the balanced metrics remove
    assert np.where(label, 7.0, -7.0).mean() == pytest.approx(-3.5)


def test_table_baseline_is_the_model_and_lists_every_mode_and_node() -> None:
    w = world("ln")
    ablators = {mode: _ablator(w, mode) for mode in MODES}
    masks = ablators["resample"].masks
    nodes = candidate_nodes(w.model, NODE_POSITIONS["chars"], masks, "bos")
    base = w.diff.numpy()
    table = ablation_table(ablators, w.model, w.examples, base, nodes)
    label = w.examples["label"].to_numpy(dtype=bool)
    none = table[table["component"] == "none"].set_index("kind")
    assert none.loc["all", "accuracy"] == pytest.approx(((base > 0) == label).mean())
    assert none.loc["all", "mean_logit_diff"] == pytest.approx(base.mean(), abs=1e-6)
    assert none.loc["balanced", "mean_margin"] == pytest.approx(balanced_mean(np.where(label, base, -base), label))
    assert none.loc["balanced", "mean_logit_diff"] == pytest.approx(balanced_mean(base, label))  # the lean
    assert (none["accuracy_change"] == 0).all()
    whole = table[(table["component"] != "none") & (table["positions"] == "all")]
    assert set(whole["mode"]) == set(MODES) and set(whole["component"]) == set(components(w.model))
    per_node = table[(table["positions"] != "all") & (table["component"] != "none")]
    assert set(per_node["mode"]) == {"resample"}
    assert {f"{c}@{g}" for c, g in zip(per_node["component"], per_node["positions"])} == {nd.name for nd in nodes}


@pytest.mark.parametrize("mode", MODES)
def test_sets_that_share_earlier_layers_give_what_the_whole_bridge_gives_for_each_alone(mode: str) -> None:
    """logit_diffs runs each block once per distinct set of nodes ablated up to it; every set must still get
    what the bridge's own forward gives with that set's nodes replaced (hooks written here, not the Ablator's)."""
    w = world("ln")
    ablator = _ablator(w, mode)
    masks = ablator.masks
    nodes = candidate_nodes(w.model, NODE_POSITIONS["chars"], masks, "bos")
    layer0 = [nd for nd in nodes if nd.layer == 0]
    later = [nd for nd in nodes if nd.layer > 0]
    rng = np.random.default_rng(0)
    sets = [[*layer0[:2], nd] for nd in later] + [[nd, *later[:1]] for nd in layer0] + [
        [nd for nd in nodes if rng.random() < 0.5] for _ in range(6)]
    got = ablator.logit_diffs(sets)

    def replace(component: str, where: torch.Tensor):
        value = ablator.value(component)

        def hook(x, hook):
            out = x.clone()
            if component.startswith("L"):
                head = int(component.split("H")[1])
                out[:, :, head] = torch.where(where[..., None], value, x[:, :, head])
                return out
            return torch.where(where[..., None], value, x)
        return hook

    for s, diff in zip(sets, got):
        hooks = []
        for component in dict.fromkeys(nd.component for nd in s):
            where = torch.from_numpy(np.any([masks[nd.group] for nd in s if nd.component == component], axis=0))
            name = (f"blocks.{component[1]}.attn.hook_z" if component.startswith("L")
                    else f"blocks.{component.split('_')[0]}.hook_mlp_out")
            hooks.append((name, replace(component, where)))
        with torch.inference_mode():
            logits = w.model.run_with_hooks(w.tokens, fwd_hooks=hooks)
        expected = (logits[:, 0, 1] - logits[:, 0, 0]).numpy()
        assert np.allclose(diff, expected, atol=1e-5), [nd.name for nd in s]


def test_a_subset_of_rows_of_mixed_lengths_gets_what_the_bridge_gives() -> None:
    """Blocks run on their own from the embeddings of every row; a subset of rows (the circuit search screens on
    one) must still be masked as its own padded strings are, whatever forward ran before."""
    w = world("ln")
    ablator = _ablator(w, "resample")
    nodes = candidate_nodes(w.model, NODE_POSITIONS["chars"], ablator.masks, "bos")
    rows = np.flatnonzero(np.arange(len(w.examples)) % 3 == 0)
    assert w.examples["length"].to_numpy()[rows].min() < w.examples["length"].to_numpy()[rows].max()
    sets = [[], nodes[:2], nodes[-2:]]
    together = ablator.logit_diffs(sets, rows=rows)
    with torch.inference_mode():
        w.model(w.tokens.flip(0)[: len(rows) * len(sets)])  # another batch of the same size goes through the bridge
    again = ablator.logit_diffs(sets, rows=rows)
    alone = np.stack([ablator.logit_diffs([s])[0][rows] for s in sets])
    assert np.allclose(together, alone, atol=1e-5) and np.allclose(again, alone, atol=1e-5)
