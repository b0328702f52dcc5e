"""Causal scrubbing: donors agree (or, for the control, disagree) on the kept feature at every position and are
another string whenever one agrees; positions kept whole are not touched; keeping everything reproduces the
model exactly; the loss is class-balanced; both scales and the local scrubs are computed as defined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hand_worlds import scrubber
from test_attribution_world import world

from palindrome_lens import features as F
from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.attribution.scrubbing import (
    AGREE,
    DISAGREE,
    DonorPool,
    Hypothesis,
    Scrubber,
    balanced_loss,
    farthest,
    feature_by_position,
    run_metrics,
    units,
)
from palindrome_lens.attribution.summary import scrub_facts, scrub_verdict


def _world_scrubber(seed: int = 0) -> Scrubber:
    w = world("ln")
    base = forward_logit_diff(w.model, w.tokens, 64).numpy()
    pool = DonorPool.build(w.model, w.clf.encode, w.examples["text"].tolist(), w.test["text"].tolist(),
                           range(w.model.cfg.n_layers), 64)
    return Scrubber(w.model, w.tokens, w.examples, pool, seed, True, 64, base)


def test_balanced_loss_is_the_mean_of_the_two_class_losses_whatever_the_mix() -> None:
    diff = np.array([3.0, 2.0, 1.0, -4.0, -0.5, 0.5, 2.5])  # 3 palindromes, 4 others: imbalanced
    label = np.array([True, True, True, False, False, False, False])
    loss, pos, neg = balanced_loss(diff, label)
    each = np.logaddexp(0.0, -np.where(label, diff, -diff))
    assert pos == pytest.approx(each[label].mean()) and neg == pytest.approx(each[~label].mean())
    assert loss == pytest.approx((pos + neg) / 2)
    assert abs(loss - each.mean()) > 0.05  # the plain mean over rows would differ on this batch
    run = run_metrics([diff, diff + 1.0], label)
    assert run["loss"] == pytest.approx((balanced_loss(diff, label)[0] + balanced_loss(diff + 1.0, label)[0]) / 2)
    assert run["loss"] == pytest.approx((run["loss_palindrome"] + run["loss_not_palindrome"]) / 2)


def test_donors_agree_or_disagree_on_the_feature_and_are_another_string() -> None:
    s = _world_scrubber()
    rows = np.arange(len(s.examples))
    texts = s.examples["text"].to_numpy()
    for length in (5, 6):
        mine = rows[s.examples["length"].to_numpy() == length]
        for feature, pos in (("pair_match", 2), ("mismatch_set", 3), ("label", 0), ("pair_diff", length)):
            code = s.codes(feature, length, pos)
            own = np.searchsorted(s.pool.index[length], s.pool.own[mine])
            for mode in (AGREE, DISAGREE):
                pick, selfish = s.draw(feature, length, pos, mine, 0, 0, mode)
                donor = np.searchsorted(s.pool.index[length], pick)
                assert (s.pool.lengths[pick] == length).all()
                if mode == AGREE:
                    assert (code[donor] == code[own]).all()
                    others = np.array([(code == c).sum() > 1 for c in code[own]])
                    assert (selfish == ~others).all()  # a row keeps its own string only when no other agrees
                    assert all(s.pool.texts[p] != texts[r] for p, r in zip(pick[~selfish], mine[~selfish]))
                else:
                    assert (code[donor] != code[own])[~selfish].all()


def test_a_rows_donor_does_not_depend_on_the_batch_and_a_feature_shares_its_donors() -> None:
    s = _world_scrubber()
    rows = np.flatnonzero(s.examples["length"].to_numpy() == 6)
    alone, _ = s.draw("pair_match", 6, 2, rows[:5], 0, 1, AGREE)
    together, _ = s.draw("pair_match", 6, 2, rows, 0, 1, AGREE)
    assert (alone == together[:5]).all()
    a = Hypothesis("a", 0, {"chars": "pair_match", "bos": "label"})
    b = Hypothesis("b", 0, {"chars": "pair_match", "eos": "all"})
    src_a, _, _ = s.sources(a, rows, 0, control=False)
    src_b, _, _ = s.sources(b, rows, 0, control=False)
    assert (src_a[:, 1:7] == src_b[:, 1:7]).all()  # same feature at the characters: the same donors
    assert (src_b[:, 7] == s.pool.own[rows]).all()  # eos kept whole: the row's own residual


def test_keeping_everything_reproduces_the_model_exactly() -> None:
    s = _world_scrubber()
    keep_all = Hypothesis("all", 1, {"bos": "all", "chars": "all", "eos": "all"})
    src, scrubbed, _ = s.sources(keep_all, np.arange(len(s.examples)), 0, control=False)
    assert scrubbed == 0 and (src == s.pool.own[:, None]).all()
    diff = s.diffs(1, [src], np.arange(len(s.examples)))[0]
    assert np.allclose(diff, s.model_diff, atol=1e-5)
    result = s.scrub(keep_all)
    assert result["recovered"] == pytest.approx(1.0, abs=1e-4)
    assert result["recovered_constant"] == pytest.approx(1.0, abs=1e-4)
    assert result["control"] is None  # nothing kept but whole positions: no feature to disagree on


def test_scales_and_local_scrubs_are_computed_as_defined() -> None:
    s = _world_scrubber()
    result = s.scrub(Hypothesis("flags", 0, {"chars": "pair_match"}))
    runs, base = result["runs"], result["baseline"]
    assert abs(runs["random"]["loss"] - runs["model"]["loss"]) > 1e-3  # scrubbing at random costs something
    span = runs["random"]["loss"] - runs["model"]["loss"]
    assert result["recovered"] == pytest.approx((runs["random"]["loss"] - runs["hypothesis"]["loss"]) / span)
    assert result["recovered_constant"] == pytest.approx((math.log(2) - runs["hypothesis"]["loss"])
                                                         / (math.log(2) - runs["model"]["loss"]))
    assert result["constant"] == pytest.approx((runs["random"]["loss"] - math.log(2)) / span)
    assert base["label_entropy"] == pytest.approx(math.log(2))
    local = result["local"]
    assert {u["unit"] for u in local["units"]} == {"bos", "pair 0", "pair 1", "pair 2", "centre", "eos"}
    counted = [u for u in local["units"] if u["matters"]]
    assert counted and local["pooled_recovered"] == pytest.approx(
        (np.mean([u["random_loss"] for u in counted]) - np.mean([u["loss"] for u in counted]))
        / (np.mean([u["random_loss"] for u in counted]) - np.mean([u["model_loss"] for u in counted])))
    for u in counted:
        assert u["recovered"] == pytest.approx((u["random_loss"] - u["loss"]) / (u["random_loss"] - u["model_loss"]))
    # the gate reads every pair alone: the figure is the counted unit farthest from 100%, on either side
    worst = max(counted, key=lambda u: abs(1 - u["recovered"]))
    assert local["recovered"] == worst["recovered"] and local["worst_unit"] == worst["unit"]
    assert local["accuracy_recovered"] == max((u["accuracy_recovered"] for u in counted), key=lambda v: abs(1 - v))


def test_the_local_gate_reads_the_pair_farthest_from_the_model_on_either_side() -> None:
    units = [{"unit": "pair 0", "recovered": 0.99}, {"unit": "pair 1", "recovered": 1.12},
             {"unit": "pair 2", "recovered": None}, {"unit": "pair 3", "recovered": 0.93}]
    assert farthest(units, "recovered")["unit"] == "pair 1"
    assert farthest(units[2:], "recovered")["unit"] == "pair 3"
    assert farthest(units[2:3], "recovered") is None


def test_feature_positions_and_units() -> None:
    h = Hypothesis("h", 0, {"first_half": "char", "second_half": "pair_match", "eos": "all"})
    assert feature_by_position(h, 5, 8, True) == ["none", "char", "char", "none", "pair_match", "pair_match", "all",
                                                  None]
    assert units(5, True) == [("bos", [0]), ("pair 0", [1, 5]), ("pair 1", [2, 4]), ("centre", [3]), ("eos", [6])]


def test_the_share_of_positions_that_drew_their_own_string_is_reported() -> None:
    s = scrubber("planted")
    feature = "char_counts+pair_chars"  # fine: on this small pool many strings have no other that agrees
    result = s.scrub(Hypothesis("fine", 0, {"chars": feature, "bos": "all", "eos": "all"}), local=False)
    alone = []
    for pos in range(1, 9):
        code = s.codes(feature, 8, pos)
        own = np.searchsorted(s.pool.index[8], s.pool.own)
        alone.append([(code == code[o]).sum() == 1 for o in own])
    assert result["self_draw_share"] == pytest.approx(np.mean(alone)) and result["self_draw_share"] > 0.3


@pytest.mark.parametrize("feature", ["label", "n_mismatches", "pair_match", "mismatch_set"])
def test_bits_are_the_entropy_of_the_feature_on_the_analysis_rows(feature: str) -> None:
    s = scrubber("planted")
    bits = s.bits(Hypothesis("h", 0, {"chars": feature}))["chars"]
    texts = s.examples["text"].tolist()
    values = []
    for pos in range(1, 9):
        codes = [_by_hand(feature, t, pos - 1) for t in texts]
        _, counts = np.unique(codes, return_counts=True, axis=0)
        p = counts / counts.sum()
        values.append(-(p * np.log2(p)).sum())
    assert bits == pytest.approx(np.mean(values))


def _by_hand(feature: str, text: str, i: int) -> tuple:
    broken = tuple(text[k] != text[-1 - k] for k in range(len(text) // 2))
    return {"label": (not any(broken),), "n_mismatches": (sum(broken),), "mismatch_set": broken,
            "pair_match": (text[i] == text[-1 - i],)}[feature]


def test_visible_features_see_only_pairs_at_or_before_the_position() -> None:
    chars = np.array([[0, 1, 2, 3, 1, 0], [0, 1, 2, 2, 1, 0], [0, 1, 2, 2, 3, 1]])  # broken: pair 2 / none / 0, 1
    # token position 4 (character index 3) sees pairs whose right end is at index <= 3: pair 2 only
    assert _partition(F.codes("visible_mismatch_set", chars, 4, 4)) == _partition(np.array([1, 0, 0]))
    assert _partition(F.codes("visible_label", chars, 5, 4)) == _partition(np.array([1, 0, 1]))  # pairs 1, 2
    assert (F.codes("visible_label", chars, 1, 4) == 0).all()  # the first character sees no whole pair
    assert _partition(F.codes("visible_pair_chars", chars, 2, 4)) == _partition(chars[:, 1])  # mirror unseen
    assert _partition(F.codes("visible_label", chars, 7, 4)) == _partition(F.codes("label", chars, 7, 4))


def _partition(code: np.ndarray) -> set:
    return {frozenset(np.flatnonzero(code == c).tolist()) for c in np.unique(code)}


def test_pairs_are_scrubbed_alone_only_when_every_global_share_reaches_the_floor() -> None:
    """`local_from` skips the pair-alone scrubs of a hypothesis that fails globally; the verdict cannot change
    (a global share below the floor fails the gate whatever the pairs give) and the global figures are the same."""
    s = _world_scrubber()
    for hypothesis in (Hypothesis("flags", 0, {"chars": "pair_match"}), Hypothesis("nothing", 0, {"chars": "none"}),
                       Hypothesis("characters", 0, {"chars": "pair_chars"})):
        every = s.scrub(hypothesis)
        lowest = min(every[k] for k in ("recovered", "recovered_constant", "accuracy_recovered"))
        below, at = s.scrub(hypothesis, local_from=lowest + 1e-6), s.scrub(hypothesis, local_from=lowest)
        assert below["local"] is None and below["local_skipped"]
        assert at["local"] == every["local"] and not at["local_skipped"] and every["local"] is not None
        for key in ("recovered", "recovered_constant", "accuracy_recovered", "control", "constant"):
            assert below[key] == every[key]
        if lowest < 0.9:
            assert scrub_verdict(below, 0.9) == scrub_verdict(every, 0.9) == "fails"
        else:  # a scrub whose pairs were never scrubbed alone supports nothing, however well it does globally
            assert scrub_verdict(every, 0.9) == "supported" and scrub_verdict(below, 0.9) == "fails"
        assert scrub_facts(below, "fails")["local_skipped"] and not scrub_facts(every, "fails")["local_skipped"]
