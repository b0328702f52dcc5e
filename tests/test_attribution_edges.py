"""Path patching: the senders' clean-minus-corrupted outputs add up to the residual stream's change; their
sum fed to one receiver input reproduces that input taken from the clean run; a zero delta changes
nothing; and without LayerNorm the logits edges of every sender add up to the whole logit gap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_attribution_world import world

from palindrome_lens.attribution.common import forward_logit_diff, logit_diff
from palindrome_lens.attribution.edges import (
    Edge,
    LayerNorms,
    edge_hooks,
    path_patching,
    possible_edges,
    screening_pairs,
    sender_output,
)
from palindrome_lens.attribution.nodes import (
    NODE_POSITIONS,
    Node,
    candidate_nodes,
    components,
    embedding_nodes,
    group_masks,
)
from palindrome_lens.attribution.patching import corruption_pairs
from palindrome_lens.attribution.schemas import SCHEMAS


def _pairs(w):
    pairs = corruption_pairs(w.examples)
    return pairs, torch.tensor(pairs["clean_id"].to_numpy()), torch.tensor(pairs["corrupted_id"].to_numpy())


def _delta(w, components_: list[str], clean, corrupted) -> torch.Tensor:
    return sum(sender_output(w.model, w.cache, c, clean) - sender_output(w.model, w.cache, c, corrupted)
               for c in components_)


def test_sender_outputs_add_up_to_the_residual_change() -> None:
    w = world("ln")
    _, clean, corrupted = _pairs(w)
    before_layer_1 = ["embed", "pos_embed", "L0H0", "L0H1", "0_mlp_out"]
    resid = w.cache["blocks.1.hook_resid_pre"]
    assert torch.allclose(_delta(w, before_layer_1, clean, corrupted), resid[clean] - resid[corrupted], atol=1e-5)
    assert sender_output(w.model, w.cache, "pos_embed", clean).equal(sender_output(w.model, w.cache, "pos_embed",
                                                                                    corrupted))


@pytest.mark.parametrize("via", ["q", "k", "v", "mlp_in", "logits"])
def test_every_sender_into_one_input_is_that_input_from_the_clean_run(via: str) -> None:
    w = world("ln")
    model = w.model
    _, clean, corrupted = _pairs(w)
    senders = ["embed", "pos_embed", "L0H0", "L0H1", "0_mlp_out"]
    if via == "mlp_in":
        senders += ["L1H0", "L1H1"]
    if via == "logits":
        senders = [*components(model), "embed", "pos_embed"]
    delta = _delta(w, senders, clean, corrupted)
    everywhere = torch.ones(len(corrupted), w.tokens.shape[1], dtype=torch.bool)
    receiver = {"logits": None, "mlp_in": Node(1, "1_mlp_out", "chars")}.get(via, Node(1, "L1H0", "chars"))
    corrupted_z = w.cache["blocks.1.attn.hook_z"][corrupted][:, :, 0]
    hooks = edge_hooks(model, LayerNorms(model), Edge(Node(-1, "embed", "chars"), receiver, via), delta, everywhere,
                       corrupted_z)
    with torch.inference_mode():
        patched = model.run_with_hooks(w.tokens[corrupted], fwd_hooks=hooks)
        if via == "logits":
            expected = w.logits[clean]
        else:
            hook = {"mlp_in": "blocks.1.mlp.hook_in"}.get(via, f"blocks.1.attn.hook_{via}")
            clean_input = w.cache[hook][clean] if hook in w.cache.cache_dict else None
            if clean_input is None:  # q/k/v are not in the world cache: take them from a clean run
                _, live = model.run_with_cache(w.tokens[clean])
                clean_input = live[hook]

            def put(x, hook):
                if via == "mlp_in":
                    return clean_input
                out = x.clone()
                out[:, :, 0] = clean_input[:, :, 0]
                return out

            expected = model.run_with_hooks(w.tokens[corrupted], fwd_hooks=[(hook, put)])
    positions = torch.zeros(len(corrupted), dtype=torch.long)
    assert torch.allclose(logit_diff(patched, positions), logit_diff(expected, positions), atol=1e-4)
    assert (logit_diff(patched, positions) - logit_diff(w.logits[corrupted], positions)).abs().max() > 1e-3


def test_zero_delta_changes_nothing() -> None:
    w = world("ln")
    _, _, corrupted = _pairs(w)
    zero = torch.zeros(len(corrupted), w.tokens.shape[1], w.model.cfg.d_model)
    everywhere = torch.ones(len(corrupted), w.tokens.shape[1], dtype=torch.bool)
    for via, receiver in (("k", Node(1, "L1H1", "bos")), ("mlp_in", Node(0, "0_mlp_out", "chars"))):
        z = w.cache[f"blocks.{receiver.layer}.attn.hook_z"][corrupted][:, :, 1]
        hooks = edge_hooks(w.model, LayerNorms(w.model), Edge(Node(-1, "embed", "chars"), receiver, via), zero,
                           everywhere, z)
        with torch.inference_mode():
            out = w.model.run_with_hooks(w.tokens[corrupted], fwd_hooks=hooks)
        assert torch.allclose(out, w.logits[corrupted], atol=1e-5)


def test_without_layernorm_logit_edges_add_up_to_the_whole_gap() -> None:
    """No LayerNorm: the logit difference is linear in the final residual, so the logits edges of every
    sender at the readout (BOS) restore exactly the whole clean-corrupted gap together."""
    w = world("no_ln")
    masks = group_masks(w.examples["length"], w.tokens.shape[1], NODE_POSITIONS["chars"], True)
    nodes = candidate_nodes(w.model, NODE_POSITIONS["chars"], masks, "bos")
    senders = [nd for nd in embedding_nodes(NODE_POSITIONS["chars"], masks) if nd.component == "embed"] + nodes
    edges = [e for e in possible_edges(senders, nodes, "bos") if e.via == "logits"]
    assert {e.sender.name for e in edges} == {"embed@bos", "L0H0@bos", "L0H1@bos", "0_mlp_out@bos"}
    pairs, clean, corrupted = _pairs(w)
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16)
    gap = forward_logit_diff(w.model, w.tokens[clean], 64) - forward_logit_diff(w.model, w.tokens[corrupted], 64)
    assert gap.abs().min() > 1e-4  # every pair counts in the ratio of means
    assert table["effect"].sum() == pytest.approx(1.0, abs=1e-4)
    assert table.set_index("sender").loc["embed@bos", "effect"] == pytest.approx(0.0, abs=1e-6)  # BOS is BOS


def _wiring(w) -> tuple[dict, list[Edge]]:
    """The group masks and every edge the world's model allows (node positions `chars`, read at BOS)."""
    groups = NODE_POSITIONS["chars"]
    masks = group_masks(w.examples["length"], w.tokens.shape[1], groups, True)
    nodes = candidate_nodes(w.model, groups, masks, "bos")
    senders = [nd for nd in embedding_nodes(groups, masks) if nd.component == "embed"] + nodes
    return masks, possible_edges(senders, nodes, "bos")


def test_table_has_its_schema_and_the_wiring_is_respected() -> None:
    w = world("ln")
    masks, edges = _wiring(w)
    for e in edges:
        if e.receiver is None:
            assert e.sender.group == "bos"
        elif e.via in ("q", "mlp_in"):
            assert e.sender.group == e.receiver.group
        if e.receiver is not None and e.receiver.is_head:
            assert e.sender.layer < e.receiver.layer
    pairs, _, _ = _pairs(w)
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges[:12], batch_size=16)
    assert list(table.columns) == SCHEMAS["edges"].names
    assert table["effect"].notna().all() and len(table) == 12
    assert (table["n_pairs"] == len(pairs)).all()
    assert np.isfinite(table[["pair_q25", "pair_median", "pair_q75"]].to_numpy()).all()


@pytest.mark.parametrize("via", ["q", "k", "v"])
def test_a_receiver_heads_change_stays_at_its_nodes_positions(via: str) -> None:
    """The edge ends at the node L1H0@bos: the head's output changes at BOS only; everywhere else it keeps its
    corrupted value (a delta leaking to every position would not show at the logits read at BOS)."""
    w = world("ln")
    _, clean, corrupted = _pairs(w)
    delta = _delta(w, ["embed", "L0H0", "L0H1", "0_mlp_out"], clean, corrupted)
    width = w.tokens.shape[1]
    at_bos = torch.zeros(len(corrupted), width, dtype=torch.bool)
    at_bos[:, 0] = True
    everywhere = torch.ones(len(corrupted), width, dtype=torch.bool)
    corrupted_z = w.cache["blocks.1.attn.hook_z"][corrupted][:, :, 0]
    edge = Edge(Node(-1, "embed", "chars"), Node(1, "L1H0", "bos"), via)
    seen = {}

    def capture(name: str):
        def hook(z, hook):
            seen[name] = z[:, :, 0].clone()
        return hook

    for name, mask in (("bos", at_bos), ("all", everywhere)):
        hooks = edge_hooks(w.model, LayerNorms(w.model), edge, delta, mask, corrupted_z)
        with torch.inference_mode():
            w.model.run_with_hooks(w.tokens[corrupted], fwd_hooks=[*hooks, ("blocks.1.attn.hook_z", capture(name))])
    assert torch.allclose(seen["bos"][:, 1:], corrupted_z[:, 1:], atol=1e-6)
    assert torch.allclose(seen["bos"][:, 0], seen["all"][:, 0], atol=1e-6)
    assert (seen["all"][:, 1:] - corrupted_z[:, 1:]).abs().max() > 1e-3  # the delta does reach them when allowed


def test_each_edge_starting_at_its_receivers_layer_equals_the_whole_corrupted_run() -> None:
    """path_patching starts each forward at the receiver's layer from the corrupted residual entering it; the
    definition runs the whole corrupted string with the edge's hooks. Every edge of the wiring agrees."""
    w = world("ln")
    masks, edges = _wiring(w)
    assert {e.receiver.layer for e in edges if e.receiver is not None} == {0, 1}
    pairs, clean, corrupted = _pairs(w)
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16)
    positions = torch.zeros(len(corrupted), dtype=torch.long)
    clean_diff = logit_diff(w.logits[clean], positions).numpy()
    corrupted_diff = logit_diff(w.logits[corrupted], positions).numpy()
    group_mask = {g: torch.from_numpy(m[corrupted.numpy()]) for g, m in masks.items()}
    for edge, effect in zip(edges, table["effect"]):
        delta = _delta(w, [edge.sender.component], clean, corrupted) * group_mask[edge.sender.group][..., None]
        receiver_mask = positions[:, None] == torch.arange(w.tokens.shape[1]) if edge.receiver is None else \
            group_mask[edge.receiver.group]
        z = None
        if edge.receiver is not None and edge.receiver.is_head:
            layer, head = edge.receiver.layer, int(edge.receiver.component.split("H")[1])
            z = w.cache[f"blocks.{layer}.attn.hook_z"][corrupted][:, :, head]
        hooks = edge_hooks(w.model, LayerNorms(w.model), edge, delta, receiver_mask, z)
        with torch.inference_mode():
            patched = logit_diff(w.model.run_with_hooks(w.tokens[corrupted], fwd_hooks=hooks), positions).numpy()
        expected = (patched.mean() - corrupted_diff.mean()) / (clean_diff - corrupted_diff).mean()
        assert effect == pytest.approx(expected, abs=1e-4), edge


def test_the_batch_size_and_the_order_of_pairs_of_mixed_lengths_change_nothing() -> None:
    """Strings of two lengths: the shorter are padded. Every batch must be masked as its own strings are, not as
    the last batch the embedding saw (the blocks run on their own, so the PAD hook must be told)."""
    w = world("ln")
    masks, edges = _wiring(w)
    pairs, _, _ = _pairs(w)
    assert pairs["length"].nunique() == 2
    reference = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=4096)
    backwards = pairs.sort_values("length", ascending=False, kind="stable").reset_index(drop=True)  # padded last
    for batch_size in (5, 16):
        table = path_patching(w.model, w.tokens, w.cache, backwards, masks, edges, batch_size=batch_size)
        assert np.allclose(table["effect"], reference["effect"], atol=1e-4), batch_size


def test_screened_edges_are_measured_on_the_spread_pairs_alone_and_the_rest_on_every_pair() -> None:
    """The stage measures the edges no figure draws on a few pairs: each such edge's row must be exactly what
    patching those pairs alone gives, and every other edge keeps every pair."""
    w = world("ln")
    masks, edges = _wiring(w)
    pairs, _, _ = _pairs(w)
    few = screening_pairs(len(pairs), 5)
    assert len(few) == 5 and few[0] == 0 and few[-1] == len(pairs) - 1
    assert pairs.iloc[few]["length"].nunique() == 2  # spread over the set, not its first lengths
    screened = set(edges[::2])
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16, screened=screened,
                          screen_pairs=5)
    alone = path_patching(w.model, w.tokens, w.cache, pairs.iloc[few].reset_index(drop=True), masks, edges,
                          batch_size=16)
    whole = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16)
    mine = np.array([e in screened for e in edges])
    columns = ["effect", "n_pairs", "pair_q25", "pair_median", "pair_q75"]
    assert np.allclose(table.loc[mine, columns].to_numpy(float), alone.loc[mine, columns].to_numpy(float), atol=1e-5)
    assert np.allclose(table.loc[~mine, columns].to_numpy(float), whole.loc[~mine, columns].to_numpy(float), atol=1e-5)
    assert (table.loc[mine, "n_pairs"] <= 5).all() and (table.loc[~mine, "n_pairs"] > 5).all()
    assert np.array_equal(screening_pairs(4, 64), np.arange(4))


def _spread_and_every_pair(w) -> tuple:
    """The wiring, the pairs, and every edge measured on the 5 spread pairs alone and on every pair."""
    masks, edges = _wiring(w)
    pairs, _, _ = _pairs(w)
    few = screening_pairs(len(pairs), 5)
    alone = path_patching(w.model, w.tokens, w.cache, pairs.iloc[few].reset_index(drop=True), masks, edges,
                          batch_size=16)
    whole = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16)
    return masks, edges, pairs, alone, whole


FIGURES = ["effect", "n_pairs", "pair_q25", "pair_median", "pair_q75"]


def test_edges_between_drawn_nodes_are_confirmed_on_every_pair_where_the_spread_pairs_reach_half_the_floor() -> None:
    """With `confirm_from`, an unscreened edge keeps its spread-pair figure when it stays under the threshold there,
    and gets every pair's figure when it reaches it: so no edge can clear the floor on a few pairs' say."""
    w = world("ln")
    masks, edges, pairs, alone, whole = _spread_and_every_pair(w)
    threshold = float(np.median(alone["effect"].abs()))  # half the edges either side
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16, screen_pairs=5,
                          confirm_from=threshold)
    confirmed = (alone["effect"].abs() >= threshold).to_numpy()
    assert 0 < confirmed.sum() < len(edges)
    assert np.allclose(table.loc[confirmed, FIGURES].to_numpy(float), whole.loc[confirmed, FIGURES].to_numpy(float),
                       atol=1e-5)
    assert np.allclose(table.loc[~confirmed, FIGURES].to_numpy(float), alone.loc[~confirmed, FIGURES].to_numpy(float),
                       atol=1e-5)


def test_screened_edges_are_never_confirmed_and_few_pairs_need_no_second_pass() -> None:
    """`confirm_from` re-measures only the edges the graph may draw: a screened edge keeps its spread-pair figure
    however large it is; and with no more pairs than the spread, every edge is measured once, on every pair."""
    w = world("ln")
    masks, edges, pairs, alone, whole = _spread_and_every_pair(w)
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16, screened=set(edges),
                          screen_pairs=5, confirm_from=0.0)  # 0: every unscreened edge would be confirmed
    assert np.allclose(table[FIGURES].to_numpy(float), alone[FIGURES].to_numpy(float), atol=1e-5)
    table = path_patching(w.model, w.tokens, w.cache, pairs, masks, edges, batch_size=16,
                          screen_pairs=len(pairs), confirm_from=1e9)
    assert np.allclose(table[FIGURES].to_numpy(float), whole[FIGURES].to_numpy(float), atol=1e-5)
