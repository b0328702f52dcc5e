"""The feature ceiling (explanation/ceiling.py) against a known answer: on the lopsided hand-built model every
table is exact by construction, so what a program computes from its tables must be what the model computes,
number for number: the readout heads' attention and per-position evidence, and the features they make (read at
another layer, projected on another direction or with the sign flipped, they are off); and the model's logit
difference is linear in them, so every variant of the ceiling follows it exactly within each class."""

from __future__ import annotations

import numpy as np
import pytest
from ground_truth import ALPHABET, LENGTH

from palindrome_lens.explanation.ceiling import VARIANTS, model_reading, table_reading
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.tables import read_tables
from tests.test_explanation_mutations import explained


def test_on_the_lopsided_model_the_models_reading_is_the_programs() -> None:
    clf, result = explained()
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0)
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list(ALPHABET), size=LENGTH)) for _ in range(200)]
    own = model_reading(clf.model, clf.encode(texts), tables, 64)
    program = Emulator(result.constants)
    from_tables = table_reading(program, texts, own.context)
    assert own.weights.shape == from_tables.weights.shape == (200, len(tables.heads), LENGTH + 2)
    assert own.weights == pytest.approx(from_tables.weights, abs=1e-5)
    assert own.evidence[:, 0] == pytest.approx(from_tables.evidence[:, 0], abs=1e-4)  # L1H0, the comparing head
    features = program.features(texts)
    assert np.ptp(features[:, 0]) > 10.0  # L1H0's evidence moves with the string: the comparison can fail
    assert own.features() == pytest.approx(features, abs=1e-4)


def test_every_ceiling_variant_follows_the_lopsided_model_and_is_said() -> None:
    _, result = explained()
    assert set(result.summary["ceiling"]) == set(VARIANTS)
    for variant, sets in result.summary["ceiling"].items():
        assert sets["edits"]["spearman"] > 0.999 and sets["edits"]["r2"] > 0.999, variant
    assert any(s.startswith("Fed the model's own features") for s in result.summary["sentences"])
