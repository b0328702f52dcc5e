"""Set patching, which reconciles patching with ablation: the masks pick the broken pair's two positions, patching
a head at every position agrees with transformer_lens.patching's own sweep, the last layer's heads and MLP change
nothing away from the readout, and every layer's heads are also patched together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_attribution_world import world

from palindrome_lens.attribution.patching import activation_patching
from palindrome_lens.attribution.reconcile import pair_masks, set_patching


@pytest.fixture(scope="module")
def measured():
    w = world("ln")
    rows = pd.DataFrame(set_patching(w.model, w.tokens, w.cache, w.examples, batch_size=7))
    return w, rows.set_index(["component", "positions"])


def test_the_masks_pick_the_broken_pairs_two_positions() -> None:
    pairs = pd.DataFrame({"length": [5, 6, 6], "mismatch_pos": [0, 2, 1]})
    masks = pair_masks(pairs, width=8)
    assert [np.flatnonzero(m).tolist() for m in masks["both"]] == [[1, 5], [3, 4], [2, 5]]  # BOS is token 0
    assert [np.flatnonzero(m).tolist() for m in masks["first"]] == [[1], [3], [2]]
    assert masks["all"].all() and not (masks["first"] & masks["second"]).any()


def test_a_head_at_every_position_agrees_with_transformer_lens_patching(measured) -> None:
    w, _ = measured
    one_length = w.examples[w.examples["length"] == w.examples["length"].max()]  # the sweep's rows are per length
    rows = pd.DataFrame(set_patching(w.model, w.tokens, w.cache, one_length, batch_size=7))
    rows = rows.set_index(["component", "positions"])
    sweep = activation_patching(w.model, w.tokens, w.cache, one_length, batch_size=7)
    pooled = sweep[(sweep["activation"] == "z") & sweep["pos"].isna() & sweep["mismatch_pos"].isna()]
    for r in pooled.itertuples(index=False):
        assert rows.loc[(r.component, "all"), "recovery"] == pytest.approx(r.recovery, abs=1e-5), r.component


def test_the_last_layer_changes_nothing_away_from_the_readout(measured) -> None:
    """The readout is BOS: in the last layer, a head's or the MLP's output at a character position never reaches it."""
    w, rows = measured
    last = w.model.cfg.n_layers - 1
    for component in [f"L{last}H{h}" for h in range(w.model.cfg.n_heads)] + [f"{last}_mlp_out"]:
        for where in ("one", "both"):
            assert rows.loc[(component, where), "recovery"] == pytest.approx(0.0, abs=1e-6), (component, where)


def test_each_layer_has_a_joint_row_and_each_mlp_every_set(measured) -> None:
    """The heads of each layer patched together (at every position only), each MLP at one, both and every position."""
    w, rows = measured
    layers = {c for c, _ in rows.index if c.startswith("layer")}
    assert layers == {f"layer {layer} heads" for layer in range(w.model.cfg.n_layers)}
    assert all((c, "one") not in rows.index for c in layers)
    assert {(f"{layer}_mlp_out", where) for layer in range(w.model.cfg.n_layers) for where in ("one", "both", "all")} \
        <= set(rows.index)
    assert (rows["n"] > 0).all()
