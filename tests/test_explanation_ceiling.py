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


def test_the_reading_is_taken_at_each_strings_readout_position(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lopsided model reads at BOS, so a reading taken at position 0 whatever the readout would pass the tests
    above; with the readout moved to a different position per string, the attention row and the layer-0 output
    must be those at that position (the model's own hooks, read here)."""
    import torch

    import palindrome_lens.explanation.ceiling as ceiling

    clf, _ = explained()
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0)
    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list(ALPHABET), size=LENGTH)) for _ in range(40)]
    tokens = clf.encode(texts)
    at = torch.arange(len(texts)) % tokens.shape[1]
    monkeypatch.setattr(ceiling, "readout_positions", lambda model, t: at[:len(t)])
    own = model_reading(clf.model, tokens, tables, 64)
    with torch.inference_mode():
        _, cache = clf.model.run_with_cache(tokens)
    rows = torch.arange(len(texts))
    pattern = cache["blocks.1.attn.hook_pattern"][rows, :, at].numpy()  # (n, H, key) at each readout query
    assert own.weights == pytest.approx(pattern, abs=1e-6)
    assert not np.allclose(own.weights[at.numpy() > 0], cache["blocks.1.attn.hook_pattern"][:, :, 0].numpy()[
        at.numpy() > 0], atol=1e-3)  # another position's row differs: the check can tell
    z = cache["blocks.0.attn.hook_z"][rows, at]  # (n, H, d_head)
    context = torch.einsum("nhd,hdm->nm", z, clf.model.W_O.detach()[0]) @ torch.from_numpy(
        tables.context_directions).float().T
    assert own.context == pytest.approx(context.numpy(), abs=1e-4)


def test_every_head_after_the_comparison_reads_and_each_is_read_at_its_own_layer() -> None:
    """The readout heads are every head after the comparison's layer (tables.reader_layers): on the 3-layer chain
    model, after layer 0 that is layer 1's heads and layer 2's. The model's reading of each must come from its own
    layer: the chain's layer 1 attends uniformly, its L2H0 evenly over the characters only."""
    import torch
    from hand_worlds import classifier

    from palindrome_lens.explanation.tables import reader_layers

    assert reader_layers(0, 3) == [1, 2] and reader_layers(1, 3) == [2] and reader_layers(0, 2) == [1]
    clf = classifier("chain")
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0, reader_layers=[1, 2])
    assert [h.name for h in tables.heads] == ["L1H0", "L1H1", "L2H0", "L2H1"]
    # each head's tables come from its own layer: layer 1's queries and keys are empty, L2H0's are not
    assert np.abs(tables.heads[0].salience).max() < 1e-6 and abs(tables.heads[0].special["bos"][0]) < 1e-6
    assert tables.heads[2].salience.min() > tables.heads[2].special["bos"][0] + 1.0  # L2H0 looks at characters
    rng = np.random.default_rng(2)
    texts = ["".join(rng.choice(list(ALPHABET), size=LENGTH)) for _ in range(30)]
    tokens = clf.encode(texts)
    own = model_reading(clf.model, tokens, tables, 64)
    with torch.inference_mode():
        _, cache = clf.model.run_with_cache(tokens)
    for i, (layer, head) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        assert own.weights[:, i] == pytest.approx(cache[f"blocks.{layer}.attn.hook_pattern"][:, head, 0].numpy(),
                                                  abs=1e-6)
        written = cache[f"blocks.{layer}.attn.hook_v"][:, :, head] @ clf.model.W_O.detach()[layer, head]
        assert own.evidence[:, i] == pytest.approx((written.numpy() @ tables.heads[i].direction), abs=1e-4)
    assert not np.allclose(own.weights[:, 0], own.weights[:, 2], atol=1e-3)  # the two layers attend differently
