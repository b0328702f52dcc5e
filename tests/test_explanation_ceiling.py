"""The feature ceiling (explanation/ceiling.py) against a known answer: on the lopsided hand-built model every
table is exact by construction, so the features a program computes from its tables must be the model's own
features, number for number (a head output read at another layer, projected on another direction or with its
sign flipped, is off); and the model's logit difference is linear in them, so the ceiling's readout follows it
exactly within each class."""

from __future__ import annotations

import numpy as np
import pytest
from ground_truth import ALPHABET, LENGTH

from palindrome_lens.explanation.ceiling import model_features
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.tables import read_tables
from tests.test_explanation_mutations import explained


def test_on_the_lopsided_model_the_model_features_are_the_programs() -> None:
    clf, result = explained()
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0)
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list(ALPHABET), size=LENGTH)) for _ in range(200)]
    own = model_features(clf.model, clf.encode(texts), tables, 64)
    program = Emulator(result.constants).features(texts)
    assert own.shape == program.shape == (200, len(tables.heads) + tables.context_directions.shape[0])
    assert np.ptp(program[:, 0]) > 10.0  # L1H0's evidence moves with the string: the comparison can fail
    assert own == pytest.approx(program, abs=1e-4)


def test_the_ceiling_follows_the_lopsided_model_and_is_said() -> None:
    _, result = explained()
    edits = result.summary["ceiling"]["edits"]
    assert edits["spearman"] > 0.999 and edits["r2"] > 0.999
    assert any(s.startswith("Fed the model's own features") for s in result.summary["sentences"])
