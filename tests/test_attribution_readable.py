"""Where the comparison is made, against known answers: the planted model compares each pair in layer 0 (MLP 0
writes the flag that L1H0 reads); the chain model (tests/ground_truth_chain.py) only moves the mirror's letter in
layer 0 and compares in layer 1, with a loud decoy flag after layer 0 that nothing reads. Causal scrubbing finds
"whether the pair matches" after both of the chain's layers (the letters determine it); the read test must say
spread after layer 0 (no single direction carries the flag) and read after layer 1, the decoy must not pass for the comparison, and the explain
stage must compile the chain's program after layer 1."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from ground_truth_chain import DECFLAG
from hand_worlds import classifier, explain_params_and_splits, scrubber

from palindrome_lens.attribution.adversarial import adversarial_search, choose_palindromes
from palindrome_lens.attribution.discovery import discover
from palindrome_lens.attribution.readable import directions, read_test, verdict
from palindrome_lens.attribution.summary import chain_sentence, scrub_verdict
from palindrome_lens.explanation.family import choose_family
from palindrome_lens.explanation.run import explain

TARGET = 0.9


@functools.cache
def found(name: str) -> dict:
    s = scrubber(name)
    result = discover(s, ("bos", "chars", "eos"), False, TARGET, 120, 0, lambda r: scrub_verdict(r, TARGET))
    for boundary in result["boundaries"]:
        boundary["read"] = read_test(s, boundary["after_layer"], 0, TARGET)
    return result


def test_the_chain_model_carries_the_pairs_after_layer_0_and_writes_their_flags_after_layer_1() -> None:
    first, second, last = found("chain")["boundaries"]
    assert first["keep"]["chars"] == second["keep"]["chars"] == "pair_match"  # what scrubbing alone says
    assert first["verdict"] == second["verdict"] == "supported"
    assert first["read"]["whole"] == pytest.approx(1.0) and first["read"]["flag"] <= 0.05
    assert first["read"]["verdicts"]["flag"] == "spread"
    assert second["read"]["flag"] >= 0.95 and second["read"]["verdicts"]["flag"] == "read"
    assert last["keep"]["bos"] == "label" and last["read"]["verdicts"]["flag"] == "not needed"


def test_the_decoy_flag_is_the_loudest_difference_after_layer_0_and_moves_nothing() -> None:
    mean, _ = directions(scrubber("chain"), 0, "flag", 8)
    assert all(int(np.abs(mean[pos].numpy()).argmax()) == DECFLAG for pos in range(1, 9))
    assert found("chain")["boundaries"][0]["read"]["flag"] <= 0.05


def test_the_planted_model_compares_in_layer_0() -> None:
    first, second = found("planted")["boundaries"]
    assert first["read"]["flag"] == pytest.approx(1.0) and first["read"]["verdicts"]["flag"] == "read"
    assert first["read"]["control"] <= 0.05
    assert second["read"]["verdicts"]["flag"] == "not needed"


def test_the_program_goes_after_the_layer_that_compares() -> None:
    for name, layer in (("chain", 1), ("planted", 0)):
        choice = choose_family({"discovered": found(name)})
        assert (choice.name, choice.after_layer) == ("pair_comparison", layer), name
    text = chain_sentence(found("chain")["boundaries"])
    assert text.index("no single direction per position carries") < text.index("after layer 1") \
        < text.index("compared, the pair flags")


def test_the_verdict_needs_the_ceiling_and_a_control_that_fails() -> None:
    assert verdict(0.99, 1.0, 0.02, TARGET) == "read"
    assert verdict(0.99, 1.0, 0.5, TARGET) == "inconclusive"
    assert verdict(0.5, 1.0, 0.0, TARGET) == "spread"
    assert verdict(0.0, 0.3, 0.0, TARGET) == "not needed"
    assert verdict(None, 1.0, 0.0, TARGET) == "undefined"


def test_the_chain_model_is_compiled_as_a_chain_and_its_program_is_exact() -> None:
    params, splits = explain_params_and_splits()
    clf = classifier("chain")
    edits = adversarial_search(clf.model, clf.tokenizer, choose_palindromes(splits["test"], 10, 0), 256)
    result = explain(clf, {"discovered": found("chain"), "nodes": []}, splits["train"], splits["test"], edits,
                     params.explain, seed=0)
    summary = result.summary
    assert summary["family"]["after_layer"] == 1 and summary["passing_level"] == "algorithm"
    row = next(r for r in summary["levels"] if r["name"] == "algorithm")
    assert row["agreement_test"] == 1.0 and row["r2_test"] > 0.999 and row["iia_min"] == 1.0
    assert "Layer 0 brings each character position what it needs of its mirror's character; layer 1" in result.program
    assert "writes each pair's flag in one direction that the readout reads" in result.program
