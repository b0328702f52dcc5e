"""Causal scrubbing: sources agree (or, for the control, disagree) on the kept feature at every position,
positions a hypothesis keeps whole are not touched, and a hypothesis that keeps everything leaves the
model as it is (so its test is undefined, not a success)."""

from __future__ import annotations

import numpy as np
import pytest
from test_attribution_world import world

from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.attribution.scrubbing import (
    Hypothesis,
    draw_sources,
    position_features,
    scrub,
    scrub_sources,
    scrubbed_logit_diff,
)


def test_draws_agree_or_disagree_on_every_code() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, (300, 6))
    codes[:, 0] = -1  # not scrubbed
    codes[7, 3] = 9  # a code nobody else has: the row keeps itself
    agree, disagree = draw_sources(codes, rng, True), draw_sources(codes, rng, False)
    assert (agree[:, 0] == -1).all() and (disagree[:, 0] == -1).all()
    for pos in range(1, 6):
        assert (codes[agree[:, pos], pos] == codes[:, pos]).all()
        other = np.arange(300) != 7 if pos == 3 else np.ones(300, dtype=bool)
        assert (agree[other, pos] != np.arange(300)[other]).all()
        assert (codes[disagree[:, pos], pos] != codes[:, pos]).all()
    assert agree[7, 3] == 7
    counts = np.bincount(agree[:, 1], minlength=300)
    assert counts.max() < 10  # spread over the pool, not one favourite row


def test_features_of_a_string() -> None:
    codes, feature = position_features(["abcxba", "abccba"], np.array([False, True]), 6, 8, True,
                                       {"chars": "pair_match"})
    assert codes[:, 1:7].tolist() == [[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert (codes[:, [0, 7]] == 0).all()  # bos and eos: left out, so resampled at random
    codes, _ = position_features(["abcxba"], np.array([False]), 6, 8, True, {"first_half": "char", "bos": "all"})
    assert codes[0, 0] == -1 and codes[0, 1:4].tolist() == [ord("a"), ord("b"), ord("c")]
    assert (codes[0, 4:] == 0).all()


def test_sources_follow_the_hypothesis_on_real_strings() -> None:
    w = world("ln")
    hypothesis = Hypothesis("flags", 0, {"chars": "pair_match"})
    texts = w.examples["text"].astype(str).to_numpy()
    for variant, agree in (("hypothesis", True), ("control", False)):
        src = scrub_sources(w.examples, w.tokens.shape[1], True, hypothesis, 0, variant, 0)
        for i in range(len(texts)):
            t = texts[i]
            for p in range(1, len(t) + 1):
                s = texts[src[i, p]]
                assert len(s) == len(t)
                same = (t[p - 1] == t[-p]) == (s[p - 1] == s[-p])
                assert same == agree or src[i, p] == i, (variant, t, s, p)


def test_keeping_everything_changes_nothing_and_is_undefined() -> None:
    w = world("ln")
    base = forward_logit_diff(w.model, w.tokens, 64).numpy()
    keep_all = Hypothesis("all", 0, {"bos": "all", "chars": "all", "eos": "all"})
    src = scrub_sources(w.examples, w.tokens.shape[1], True, keep_all, 0, "random", 0)
    assert (src == -1).all()
    assert np.allclose(scrubbed_logit_diff(w.model, w.tokens, w.cache, keep_all, src, 64), base, atol=1e-5)
    result = scrub(w.model, w.tokens, w.cache, w.examples, keep_all, 0, True, 64, base)
    assert result["recovered"] is None and result["runs"]["random"]["loss"] == pytest.approx(
        result["runs"]["model"]["loss"], abs=1e-5)


def test_scrubbing_from_random_strings_costs_something() -> None:
    w = world("ln")
    base = forward_logit_diff(w.model, w.tokens, 64).numpy()
    result = scrub(w.model, w.tokens, w.cache, w.examples, Hypothesis("flags", 0, {"chars": "pair_match"}), 0, True,
                   64, base)
    runs = result["runs"]
    assert abs(runs["random"]["loss"] - runs["model"]["loss"]) > 1e-3
    assert result["constant"] == pytest.approx((runs["random"]["loss"] - np.log(2))
                                               / (runs["random"]["loss"] - runs["model"]["loss"]))
