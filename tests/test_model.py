"""The model on a real (tiny, untrained) TransformerLens module: shapes, PAD masking, save/load, public API."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from palindrome_lens import load_classifier
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import TokenizerError
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import CONFIG, WEIGHTS, save_classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import ModelParams

LENGTHS = [3, 4, 5, 6]
TEXTS = ["abc", "abca", "abcba", "dcbbcd", "aab", "dddd"]  # several lengths -> padded batches


def tiny_model(seed: int = 0, n_layers: int = 2, normalization: str = "LN"):
    """(native module, bridge over its weights, tokenizer, config) for a 4-letter alphabet."""
    tokenizer = Tokenizer("abcd", max(LENGTHS), add_eos=True)
    params = ModelParams(n_layers=n_layers, d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu",
                         normalization=normalization, attn_only=False, n_ctx=None)
    config = model_config(params, tokenizer, seed, LENGTHS)
    native = new_native_model(config)
    return native, wrap_native(native, config), tokenizer, config


def alone(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The string's tokens with no padding at all: [BOS] chars [EOS]."""
    return tokenizer.encode([text])[:, : len(text) + 2]


def test_logits_have_shape_batch_pos_2() -> None:
    native, bridge, tokenizer, _ = tiny_model()
    tokens = tokenizer.encode(TEXTS)
    assert bridge(tokens).shape == (len(TEXTS), tokenizer.width, 2)
    assert native(tokens).shape == (len(TEXTS), tokenizer.width, 2)


@pytest.mark.parametrize("normalization", ["LN", "none"])
def test_padded_batch_equals_each_string_alone(normalization: str) -> None:
    _, bridge, tokenizer, _ = tiny_model(normalization=normalization)
    padded = tokenizer.encode(TEXTS)
    assert (padded == tokenizer.pad_id).any(), "the batch must contain padding for this test to mean anything"
    with torch.inference_mode():
        batch_logits, batch_cache = bridge.run_with_cache(padded)
        plain_logits = bridge(padded)
        for i, text in enumerate(TEXTS):
            n = len(text) + 2
            single_logits, single_cache = bridge.run_with_cache(alone(tokenizer, text))
            torch.testing.assert_close(batch_logits[i, :n], single_logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(plain_logits[i, :n], single_logits[0], atol=1e-5, rtol=1e-5)
            for layer in range(2):
                for name in ("hook_resid_post", "hook_attn_out", "hook_mlp_out"):
                    key = f"blocks.{layer}.{name}"
                    torch.testing.assert_close(batch_cache[key][i, :n], single_cache[key][0], atol=1e-5, rtol=1e-5)
                pattern = batch_cache[f"blocks.{layer}.attn.hook_pattern"][i]
                assert bool((pattern[:, :, n:] == 0).all()), "PAD keys must get no attention"
                torch.testing.assert_close(pattern[:, :n, :n], single_cache[f"blocks.{layer}.attn.hook_pattern"][0],
                                           atol=1e-5, rtol=1e-5)


def test_training_mask_matches_the_bridge_mask() -> None:
    """The native module trains with attention_mask (before it is wrapped); the bridge masks with hooks."""
    tokenizer = Tokenizer("abcd", max(LENGTHS), add_eos=True)
    params = ModelParams(2, 16, 2, None, 32, "relu", "LN", False, None)
    config = model_config(params, tokenizer, 0, LENGTHS)
    native = new_native_model(config)
    tokens = tokenizer.encode(TEXTS)
    with torch.inference_mode():
        trained_view = native(tokens, attention_mask=tokens != tokenizer.pad_id)[:, 0]
        unmasked = native(tokens)[:, 0]
        analysed_view = wrap_native(native, config)(tokens)[:, 0]
    torch.testing.assert_close(trained_view, analysed_view, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked, analysed_view, atol=1e-4), "padding must matter when not masked"


def test_save_load_round_trip_gives_identical_logits(tmp_path) -> None:
    native, bridge, tokenizer, config = tiny_model(seed=3)
    save_classifier(bridge, tokenizer, config, tmp_path / "model")
    assert json.loads((tmp_path / "model" / CONFIG).read_text()) == config
    clf = load_classifier(tmp_path / "model")
    tokens = tokenizer.encode(TEXTS)
    with torch.inference_mode():
        expected = native(tokens, attention_mask=tokens != tokenizer.pad_id)[:, 0]
        assert torch.equal(clf.model(tokens)[:, 0], bridge(tokens)[:, 0])
    torch.testing.assert_close(clf.logits(TEXTS), expected, atol=1e-6, rtol=1e-6)
    assert clf.config == config and clf.tokenizer == tokenizer
    # Raw weights: LayerNorm parameters are saved as trained, not folded into the next layer.
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "model" / WEIGHTS))
    assert torch.equal(saved["blocks.0.ln1.weight"], native.layers[0].ln1.weight.detach())


def test_public_api_on_a_tiny_model(tmp_path, monkeypatch) -> None:
    _, bridge, tokenizer, config = tiny_model(seed=1)
    save_classifier(bridge, tokenizer, config, tmp_path / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    clf = load_classifier(os.path.join("..", "model"))
    proba = clf.predict_proba(TEXTS)
    pred = clf.predict(TEXTS)
    assert proba.shape == (len(TEXTS), 2) and pred.shape == (len(TEXTS),) and pred.dtype == np.bool_
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(pred, proba[:, 1] > proba[:, 0])
    assert clf.model is not None and clf.tokenizer.alphabet == "abcd"
    with pytest.raises(TokenizerError, match="'z'"):
        clf.predict(["abz"])
    with pytest.raises(TokenizerError, match="length 2"):
        clf.predict(["ab"])  # shorter than anything trained on
    with pytest.raises(TokenizerError):
        clf.predict(["abcdabcd"])  # longer than the tokenizer takes
    with pytest.raises(TokenizerError):
        clf.predict("abcba")  # a bare string, not a list


def causal_eos_model(seed: int = 0):
    tokenizer = Tokenizer("abcd", max(LENGTHS), add_eos=True)
    params = ModelParams(n_layers=2, d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu", normalization="LN",
                         attn_only=True, n_ctx=None, attention_dir="causal", readout="eos")
    config = model_config(params, tokenizer, seed, LENGTHS)
    native = new_native_model(config)
    return native, wrap_native(native, config), tokenizer, config


def test_a_causal_model_reads_the_class_at_eos_of_every_length(tmp_path) -> None:
    native, bridge, tokenizer, config = causal_eos_model()
    assert config["attention_dir"] == "causal" and config["readout"] == "eos"
    save_classifier(bridge, tokenizer, config, tmp_path / "model")
    clf = load_classifier(tmp_path / "model")
    tokens = tokenizer.encode(TEXTS)  # padded: EOS sits at a different position per length
    eos = torch.tensor([len(t) + 1 for t in TEXTS])
    assert (tokens[torch.arange(len(TEXTS)), eos] == tokenizer.eos_id).all()
    with torch.inference_mode():
        full = native(tokens, attention_mask=tokens != tokenizer.pad_id)
    torch.testing.assert_close(clf.logits(TEXTS), full[torch.arange(len(TEXTS)), eos], atol=1e-6, rtol=1e-6)
    # causal: what a string's EOS sees cannot depend on anything after it, padding included
    for text, logits in zip(TEXTS, clf.logits(TEXTS)):
        with torch.inference_mode():
            alone_logits = native(alone(tokenizer, text))[0, len(text) + 1]
        torch.testing.assert_close(logits, alone_logits, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():  # and no position attends to a later one
        _, cache = clf.model.run_with_cache(tokenizer.encode(["abcd"]))
    pattern = cache["blocks.0.attn.hook_pattern"][0]
    assert torch.equal(pattern.triu(1), torch.zeros_like(pattern))


def test_a_bos_config_keeps_its_bytes_and_old_configs_read_at_bos(tmp_path) -> None:
    """A BOS readout is the default: configs written without the key (before it existed) still load, and a new
    BOS config has no readout key, so models trained on the default params keep their bytes."""
    _, bridge, tokenizer, config = tiny_model()
    assert "readout" not in config and config["attention_dir"] == "bidirectional"
    save_classifier(bridge, tokenizer, config, tmp_path / "model")
    clf = load_classifier(tmp_path / "model")
    assert clf.model.readout.kind == "bos"
    broken = dict(config, readout="middle")
    (tmp_path / "model" / CONFIG).write_text(json.dumps(broken))
    from palindrome_lens.errors import DataFileError

    with pytest.raises(DataFileError, match="readout is 'middle'; it must be one of bos, eos"):
        load_classifier(tmp_path / "model")
