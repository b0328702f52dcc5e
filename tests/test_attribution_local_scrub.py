"""The one-pair ("local") scrubbing figure is the pair that fares worst, never the pooled one, in a world where the
two differ by construction: the lopsided hand-built model (tests/ground_truth.py) weighs its four pairs
unevenly (L1H0 gives 36%, 26%, 20% and 17% of its attention to pairs 0-3), so a broken pair it weighs least has
the least margin to lose, and keeping only the label there costs it the largest share of its loss."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hand_worlds import scrubber

from palindrome_lens.attribution.scrubbing import Hypothesis, on_scale
from palindrome_lens.attribution.summary import alone, scrub_facts, scrub_verdict, why
from palindrome_lens.report.formatting import pct

TARGET = 0.9


@functools.cache
def label_scrub() -> dict:
    return scrubber("lopsided").scrub(Hypothesis("label", 0, {"chars": "label", "bos": "none", "eos": "none"}))


def test_the_local_figure_is_the_weakest_pair_and_the_pooled_one_sits_apart() -> None:
    local = label_scrub()["local"]
    counted = {u["unit"]: u for u in local["units"] if u["matters"]}
    assert set(counted) == {"pair 0", "pair 1", "pair 2", "pair 3"}
    by_weight = [counted[f"pair {k}"]["recovered"] for k in range(4)]
    assert by_weight == sorted(by_weight, reverse=True)  # the less L1H0 weighs a pair, the more it costs
    assert local["worst_unit"] == "pair 3" and local["recovered"] == counted["pair 3"]["recovered"]
    pooled = on_scale(*(np.mean([u[k] for u in counted.values()]) for k in ("loss", "random_loss", "model_loss")))
    assert local["pooled_recovered"] == pytest.approx(pooled)
    assert local["pooled_recovered"] - local["recovered"] > 0.1  # this world tells the two figures apart
    worst_accuracy = min(u["accuracy_recovered"] for u in counted.values())
    assert local["accuracy_recovered"] == worst_accuracy < local["pooled_accuracy_recovered"]


def test_the_flat_figures_sentence_and_gate_carry_the_weakest_pair() -> None:
    result = label_scrub()
    local = result["local"]
    verdict = scrub_verdict(result, TARGET)
    facts = scrub_facts(result, verdict)
    assert (facts["local_recovered"], facts["local_accuracy_recovered"], facts["worst_unit"]) == (
        local["recovered"], local["accuracy_recovered"], "pair 3")
    assert alone(local) == (f"{pct(local['recovered'])} with each pair scrubbed alone (the weakest, pair 3; "
                            f"{pct(local['pooled_recovered'])} pooled)")
    assert verdict == "fails"
    reason = why(dict(facts, recovered_constant=1.0, recovered=1.0, accuracy_recovered=1.0), TARGET)
    assert reason == f"{pct(local['recovered'])} with pair 3 alone, below the 90%-110% band"
