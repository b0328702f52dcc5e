"""Adversarial search: every single-character edit, labelled from its text, scored like the classifier."""

from __future__ import annotations

import numpy as np
from test_attribution_world import ALPHABET, world

from palindrome_lens.attribution.adversarial import (
    adversarial_by_position,
    adversarial_search,
    choose_palindromes,
    single_edits,
)
from palindrome_lens.data.strings import distance


def test_choice_is_seeded_and_takes_test_palindromes() -> None:
    test = world("ln").test
    a, b, c = choose_palindromes(test, 7, seed=0), choose_palindromes(test, 7, seed=0), choose_palindromes(test, 7, 1)
    assert a == b and a != c and len(a) == len(set(a)) == 7
    assert all(distance(t) == 0 and t in set(test["text"]) for t in a)
    assert len(choose_palindromes(test, 10_000, seed=0)) == int((test["distance"] == 0).sum())


def test_every_single_edit_once() -> None:
    edits = single_edits(["abcba", "abba"], ALPHABET)
    assert len(edits) == (5 + 4) * (len(ALPHABET) - 1)
    assert not edits.duplicated(["source_id", "text"]).any()
    for row in edits.itertuples():
        assert sum(x != y for x, y in zip(row.source, row.text)) == 1
        assert row.label == (distance(row.text) == 0)
        assert row.text[row.position] == row.new and row.source[row.position] == row.old
    # only the centre of an odd-length palindrome keeps it a palindrome
    assert set(edits.loc[edits["label"], "position"]) == {2} and edits["label"].sum() == len(ALPHABET) - 1


def test_scores_match_the_classifier_and_sort_worst_first() -> None:
    w = world("ln")
    sources = choose_palindromes(w.test, 4, seed=0)
    table = adversarial_search(w.model, w.clf.tokenizer, sources, batch_size=13)
    logits = w.clf.logits(table["text"].tolist())
    assert np.allclose(table["logit_diff"], (logits[:, 1] - logits[:, 0]).numpy(), atol=1e-5)
    assert (np.diff(table["margin"].to_numpy()) >= 0).all() and list(table["rank"]) == list(range(len(table)))
    assert (table["correct"] == (table["margin"] > 0)).all()
    assert (table["predicted"] == (table["logit_diff"] > 0)).all()
    source = w.clf.logits(sources)
    assert np.allclose(table.groupby("source_id")["source_logit_diff"].first(),
                       (source[:, 1] - source[:, 0]).numpy(), atol=1e-5)
    by_pos = adversarial_by_position(table)
    assert by_pos["n"].sum() == int((~table["label"]).sum())
    assert by_pos["accuracy"].between(0, 1).all() and set(by_pos["pair_pos"]) == {0, 1, 2}
