"""The hypothesis search against known answers: three hand-built models whose residual stream after layer 0
carries, by construction, each position's own pair flag (tests/ground_truth.py), the string's label, or the
string's count of broken pairs (tests/ground_truth_spread.py, with a loud, causally inert decoy: every
position's own pair flag x10). The search must land on exactly the planted feature, every coarser feature
must fail, and the decoy must be rejected."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from ground_truth_spread import FLAGDEC, PLANTED
from hand_worlds import scrubber

from palindrome_lens.attribution.discovery import candidates, discover, screening_rows
from palindrome_lens.attribution.scrubbing import Hypothesis
from palindrome_lens.attribution.summary import discovered_sentences, scrub_verdict

TARGET = 0.9
PLANTED_AFTER_LAYER_0 = {"planted": "pair_match", **PLANTED}


@functools.cache
def found(name: str) -> dict:
    return discover(scrubber(name), ("bos", "chars", "eos"), False, TARGET, 80, 0, lambda r: scrub_verdict(r, TARGET))


@pytest.mark.parametrize("name", ["planted", "label", "count"])
def test_the_search_lands_on_the_planted_feature(name: str) -> None:
    boundary = found(name)["boundaries"][0]
    assert boundary["keep"] == {"bos": "none", "chars": PLANTED_AFTER_LAYER_0[name], "eos": "none"}
    assert boundary["result"]["verdict"] == "supported"
    assert boundary["result"]["n_draws"] == 4 and boundary["result"]["n_rows"] == len(scrubber(name).examples)
    assert boundary["sanity_all_recovered"] == pytest.approx(1.0, abs=1e-4)
    tried = [s for s in boundary["path"] if s["group"] == "chars" and s["kind"] == "single"]
    assert [s["accepted"] for s in tried] == [False] * (len(tried) - 1) + [True]
    planted_bits = tried[-1]["bits"]
    assert all(s["bits"] <= planted_bits for s in tried)  # coarser (or as coarse) first, and each one failed
    assert [s["feature"] for s in tried][0] == "none"
    joined = [s for s in boundary["path"] if s["group"] == "chars" and s["kind"] == "joined"]
    assert all(not s["accepted"] and s["bits"] < planted_bits and "+" in s["feature"] for s in joined)


def test_a_joined_feature_is_found_where_the_readout_needs_two() -> None:
    """The flagcount model reads pair 0's flag (at character 1) and the count: each alone fails at the characters,
    the single feature that holds both (mismatch_set) passes, and the joined pass then finds the coarser join.
    Searched apart, the second half needs only the count: the split is kept."""
    boundary = found("flagcount")["boundaries"][0]
    assert boundary["result"]["verdict"] == "supported" and not boundary["budget_exhausted"]
    # pair 0's flag is read at character 1 only: the second half needs nothing but the count
    assert boundary["keep"] == {"bos": "none", "eos": "none", "first_half": PLANTED["flagcount"],
                                "second_half": "n_mismatches"}
    steps = {s["feature"]: s for s in boundary["path"] if s["group"] == "chars"}
    assert not steps["pair_match"]["accepted"] and not steps["n_mismatches"]["accepted"]
    assert steps["mismatch_set"]["accepted"] and steps["mismatch_set"]["kind"] == "single"
    join = steps["pair_match+n_mismatches"]
    assert join["kind"] == "joined" and join["accepted"] and join["bits"] < steps["mismatch_set"]["bits"]
    assert all(not s["accepted"] for s in steps.values() if s["kind"] == "joined" and s is not join)


def test_the_split_is_dropped_when_no_half_goes_coarser() -> None:
    for name in ("planted", "label", "count"):
        boundary = found(name)["boundaries"][0]
        assert "chars" in boundary["keep"] and not {"first_half", "second_half"} & set(boundary["keep"])


def test_local_scrubs_reject_the_label_where_each_position_holds_its_own_pair_flag() -> None:
    """All at once, the label looks fine on the planted model (the donors bring flags of their own); one pair
    at a time it does not."""
    s = scrubber("planted")
    result = s.scrub(Hypothesis("label", 0, {"chars": "label", "bos": "none", "eos": "none"}))
    assert result["recovered_constant"] >= TARGET and result["recovered"] >= TARGET
    assert result["local"]["recovered"] < 0.8
    assert scrub_verdict(result, TARGET) == "fails"
    flags = s.scrub(Hypothesis("flags", 0, {"chars": "pair_match", "bos": "none", "eos": "none"}))
    assert flags["local"]["recovered"] == pytest.approx(1.0, abs=1e-3)


def test_the_label_fails_where_the_model_needs_the_count() -> None:
    s = scrubber("count")
    label = s.scrub(Hypothesis("label", 0, {"chars": "label", "bos": "none", "eos": "none"}))
    count = s.scrub(Hypothesis("count", 0, {"chars": "n_mismatches", "bos": "none", "eos": "none"}))
    assert scrub_verdict(label, TARGET) == "fails" and scrub_verdict(count, TARGET) == "supported"
    assert count["recovered"] == pytest.approx(1.0, abs=1e-4) and count["accuracy_recovered"] == pytest.approx(1.0)


def test_the_decoy_is_loud_causally_inert_and_rejected() -> None:
    s = scrubber("label")
    resid = s.pool.resid[0][s.pool.own]  # after layer 0, analysis rows
    spread = resid[:, 1:9].flatten(0, 1).std(dim=0)
    assert int(spread.argmax()) == FLAGDEC  # the loudest string-dependent direction of the residual
    silenced = resid.clone()
    silenced[:, :, FLAGDEC] = 0.0
    tokens = s.tokens
    from palindrome_lens.attribution.common import resume_logit_diff

    assert torch.allclose(resume_logit_diff(s.model, silenced, tokens, 0), torch.from_numpy(s.model_diff), atol=1e-5)
    decoy = s.scrub(Hypothesis("own_flag", 0, {"chars": "pair_match", "bos": "none", "eos": "none"}))
    assert scrub_verdict(decoy, TARGET) == "fails"
    assert found("label")["boundaries"][0]["keep"]["chars"] == "label"


def test_verdict_gates_both_scales_both_sides_local_control_and_self_draws() -> None:
    good = {"recovered": 0.97, "recovered_constant": 0.95, "accuracy_recovered": 0.96, "control": -0.5,
            "constant": 0.85, "self_draw_share": 0.01, "local": {"recovered": 0.98, "accuracy_recovered": 0.97}}
    assert scrub_verdict(good, TARGET) == "supported"
    for key, value, verdict in (("recovered_constant", 0.86, "fails"), ("recovered", 0.88, "fails"),
                                ("accuracy_recovered", 0.89, "fails"), ("recovered_constant", 1.11, "fails"),
                                ("accuracy_recovered", 1.2, "fails"), ("self_draw_share", 0.6, "inconclusive"),
                                ("control", 0.9, "inconclusive"), ("recovered", None, "undefined")):
        assert scrub_verdict({**good, key: value}, TARGET) == verdict, key
    assert scrub_verdict({**good, "local": {"recovered": 0.84, "accuracy_recovered": 0.97}}, TARGET) == "fails"
    assert scrub_verdict({**good, "local": {"recovered": 0.98, "accuracy_recovered": 1.15}}, TARGET) == "fails"
    assert scrub_verdict({**good, "recovered": 0.97, "constant": 0.98}, TARGET) == "fails"  # below a constant
    assert scrub_verdict({**good, "control": None}, TARGET) == "supported"  # nothing kept to disagree on
    # the control fails when it misses the loss gate on either scale
    assert scrub_verdict({**good, "control": 0.95, "control_constant": 0.5}, TARGET) == "supported"
    assert scrub_verdict({**good, "control": 0.95, "control_constant": 0.93}, TARGET) == "inconclusive"


def test_candidates_follow_the_group_and_what_a_causal_position_can_see() -> None:
    assert "pair_match" in candidates("chars", False) and "pair_match" not in candidates("bos", False)
    assert candidates("bos", False)[0] == "none" and "label" in candidates("eos", False)
    causal = candidates("second_half", True)
    assert "visible_pair_match" in causal and "char" in causal and "pair_match" not in causal


def test_screening_rows_are_class_balanced_and_seeded() -> None:
    label = np.array([True] * 300 + [False] * 900)
    rows = screening_rows(label, 3)
    assert label[rows].sum() == len(rows) // 2 and len(set(rows)) == len(rows)
    assert (rows == screening_rows(label, 3)).all() and not (rows == screening_rows(label, 4)).all()


def test_the_budget_bounds_the_search_and_is_said() -> None:
    result = discover(scrubber("planted"), ("bos", "chars", "eos"), False, TARGET, 2, 0,
                      lambda r: scrub_verdict(r, TARGET))
    assert result["evaluated"] <= 2
    first = result["boundaries"][0]
    assert first["budget_exhausted"] and first["keep"]["bos"] == "all"
    assert any("budget ran out" in s for s in discovered_sentences(result, TARGET))


def test_sentences_state_the_discovered_features_with_their_figures() -> None:
    text = discovered_sentences(found("count"), TARGET)
    assert "after layer 0, each character position carries only how many mirrored pairs of the string are broken " \
           "(n_mismatches)" in text[0]
    layer0 = text[1]
    assert layer0.startswith("After layer 0,") and "Coarser features fail at each character position: label" in layer0
    assert "100.0% of the loss" in layer0


@pytest.mark.parametrize("name", ["planted", "flagcount"])
def test_skipping_pair_alone_scrubs_below_the_band_changes_no_step_of_the_search(name: str,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The search skips a scrub's pair-alone scrubs when a global share is below the screen band. Run again with
    every pair scrubbed alone, each step (feature, screen verdict, whether a full scrub ran, its verdict, acceptance)
    and each boundary's result must be the same, and some step must have been skipped (or the test tests nothing)."""
    skipping = found(name)
    s = scrubber(name)
    every = s.scrub
    monkeypatch.setattr(s, "scrub", lambda *a, local_from=None, **k: every(*a, **k))
    everything = discover(s, ("bos", "chars", "eos"), False, TARGET, 80, 0, lambda r: scrub_verdict(r, TARGET))
    monkeypatch.undo()

    def steps(doc: dict) -> list:
        return [(b["after_layer"], st["group"], st["feature"], st["screen"]["verdict"], st["full"] is not None,
                 (st["full"] or {}).get("verdict"), st["accepted"]) for b in doc["boundaries"] for st in b["path"]]

    assert steps(skipping) == steps(everything)
    assert [b["keep"] for b in skipping["boundaries"]] == [b["keep"] for b in everything["boundaries"]]
    assert [b["result"]["recovered"] for b in skipping["boundaries"]] == [b["result"]["recovered"]
                                                                          for b in everything["boundaries"]]
    skipped = [st for b in skipping["boundaries"] for st in b["path"] if st["screen"]["local_skipped"]]
    assert skipped and all(st["screen"]["verdict"] == "fails" and st["full"] is None for st in skipped)
    assert not any(st["screen"]["local_skipped"] for b in everything["boundaries"] for st in b["path"])
