"""The ladder's layer_zero level (layer 1's readout heads read each position's own layer-0 output) against known
answers. Each test was checked against its bug made by hand:
- on a random model with LayerNorm everywhere, the level's salience and evidence per position are the model's own
  keys and values at layer 1 read along the level's directions (blocks.1.attn.hook_k / hook_v): leaving out MLP 0
  or layer 1's LayerNorm is off by far more than the tolerance;
- the same on an attention-only causal model read at [EOS] (layer 0 without an MLP, as ARENA's);
- on the lopsided hand-built model the level is exact by construction: salience 20 KEY[p] at character position p
  and evidence STRENGTH[own] |(-16, 1)| at a broken pair's positions, 0 at a matched one, in any context;
- the written program computes what the numpy twin computes, interchange interventions included: a twin that
  patches one of the pair's two positions only disagrees.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ground_truth import ALPHABET, KEY, LENGTH, STRENGTH
from test_model import tiny_model

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import AnalysisError
from palindrome_lens.explanation import layer_zero
from palindrome_lens.explanation.emulate import alphabet_codes
from palindrome_lens.explanation.ladder import ladder
from palindrome_lens.explanation.layer_zero import check_reading, read_zero, zero_applies, zero_marks
from palindrome_lens.explanation.levels import build_ladder
from palindrome_lens.explanation.tables import read_tables
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import ModelParams
from tests.test_explanation_mutations import explained, lopsided


def random_strings(alphabet: str, length: int, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(alphabet[i] for i in row) for row in rng.integers(len(alphabet), size=(n, length))]


def attention_only_model(seed: int) -> Classifier:
    tokenizer = Tokenizer("abcd", 6, add_eos=True)
    params = ModelParams(n_layers=2, d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu",
                         normalization="LN", attn_only=True, n_ctx=None, attention_dir="causal", readout="eos")
    config = model_config(params, tokenizer, seed, [6])
    return Classifier(wrap_native(new_native_model(config), config), tokenizer, config)


def test_an_attention_only_causal_models_layer_zero_is_its_own_keys_and_values() -> None:
    torch.set_num_threads(1)
    clf = attention_only_model(seed=4)
    tables = read_tables(clf.model, clf.tokenizer, 6, 2, 0, 256, seed=0, reader_layers=[1])
    reading = read_zero(clf.model, clf.tokenizer, tables, 256)
    assert zero_applies(clf.model, [1]) and reading.spread.w_in.shape[1] == 0 and reading.spread.causal
    assert check_reading(clf.model, clf.tokenizer, reading, random_strings("abcd", 6, 64, seed=1), 256) < 1e-5


def test_the_levels_salience_and_evidence_are_the_models_own_keys_and_values_at_layer_1() -> None:
    torch.set_num_threads(1)
    _, bridge, tokenizer, config = tiny_model(seed=3)
    clf = Classifier(bridge, tokenizer, config)
    tables = read_tables(clf.model, tokenizer, 6, 2, 0, 256, seed=0, reader_layers=[1])
    reading = read_zero(clf.model, tokenizer, tables, 256)
    assert zero_applies(clf.model, [1]) and [h.name for h in reading.heads] == ["L1H0", "L1H1"]
    texts = random_strings(tokenizer.alphabet, 6, 64, seed=1)
    assert check_reading(clf.model, tokenizer, reading, texts, 256) < 1e-5
    without_ln = layer_zero.ZeroReading(reading.spread, None, reading.heads)
    with pytest.raises(AnalysisError, match="differ from the model's own keys"):
        check_reading(clf.model, tokenizer, without_ln, texts, 256)
    no_mlp = layer_zero.ZeroReading(dataclasses.replace(reading.spread, w_out=np.zeros_like(reading.spread.w_out),
                                                        b_out=np.zeros_like(reading.spread.b_out)),
                                    reading.ln_read, reading.heads)
    with pytest.raises(AnalysisError, match="differ from the model's own keys"):
        check_reading(clf.model, tokenizer, no_mlp, texts, 256)


def test_on_the_lopsided_model_the_level_is_exact_in_every_context() -> None:
    torch.set_num_threads(1)
    clf = lopsided()
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 0, 256, seed=0)
    reading = read_zero(clf.model, clf.tokenizer, tables, 256)
    texts = random_strings(ALPHABET, LENGTH, 200, seed=2)
    codes = np.array([[ALPHABET.index(c) for c in t] for t in texts])
    (salience, evidence), *_ = (m for h, m in zip(reading.heads, zero_marks(reading, codes)) if h.name == "L1H0")
    assert salience == pytest.approx(np.broadcast_to([20 * KEY[p] for p in range(1, LENGTH + 1)], salience.shape),
                                     abs=1e-4)
    mirror = codes[:, ::-1]
    expected = np.where(codes != mirror, np.array(STRENGTH)[codes] * 257**0.5, 0.0)
    assert np.abs(evidence) == pytest.approx(expected, abs=1e-4)


def _module(source: str, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_written_program_and_its_twin_agree_with_a_pair_set_from_another_string(tmp_path: Path) -> None:
    clf, result = explained()
    names = [row["name"] for row in result.summary["levels"]]
    row = result.summary["levels"][names.index("layer_zero")]
    assert [r["n_total"] for r in result.summary["levels"]] == sorted(r["n_total"] for r in result.summary["levels"])
    assert row["agreement_test"] == 1.0 and row["r2_edits"] > 0.999  # exact by construction (test above)
    torch.set_num_threads(1)
    tables = {LENGTH: read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0)}
    readings = {LENGTH: read_zero(clf.model, clf.tokenizer, tables[LENGTH], 256)}
    fit = random_strings(ALPHABET, LENGTH, 400, seed=4)
    logits = np.array([2.0 if t == t[::-1] else -2.0 - i % 7 for i, t in enumerate(fit)])
    doc = json.loads(json.dumps(result.constants))
    level = next(lv for lv in ladder(2, 2, layer_zero=True) if lv.name == "layer_zero")
    built = build_ladder([level], tables, doc, 1000, fit, logits, {True: 2.0, False: -3.0}, readings)[0]
    program = _module(built.source, tmp_path, "layer_zero_program")
    bases, sources = random_strings(ALPHABET, LENGTH, 30, seed=5), random_strings(ALPHABET, LENGTH, 30, seed=6)
    for pair in (0, 3):
        twin = built.logit_diff(bases, pair, sources)
        written = [program.logit_diff(b, {pair: (s[pair], s[LENGTH - 1 - pair])}) for b, s in zip(bases, sources)]
        assert written == pytest.approx(twin, abs=1e-6), pair
        assert not np.allclose(twin, built.logit_diff(bases)), "the intervention changes the readout"


def test_the_emulators_character_codes_are_each_characters_index_in_the_alphabet() -> None:
    alphabet = "zqé0a'"  # unsorted, with a non-ASCII letter and a quote
    texts = random_strings(alphabet, 7, 300, seed=8)
    assert alphabet_codes(texts, alphabet).tolist() == [[alphabet.index(c) for c in t] for t in texts]
    with pytest.raises(KeyError, match="b"):
        alphabet_codes(["zzbzz"], alphabet)
    with pytest.raises(ValueError, match="one length"):
        alphabet_codes(["zz", "zzz"], alphabet)
