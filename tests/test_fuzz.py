"""Fuzzing: random inputs either work or raise the project's own clear error, never a raw traceback."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import PalindromeLensError, ParamsError
from palindrome_lens.params import Params, known_keys, validate
from tests.conftest import tiny_params

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.text(max_size=12)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_values)
def test_params_loader_on_arbitrary_yaml(raw) -> None:
    try:
        validate(raw)
    except ParamsError as exc:
        message = str(exc)
        assert "params.yaml" in message or any(k.split(".")[0] in message for k in known_keys())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(known_keys()), yaml_values)
def test_params_loader_on_one_corrupted_key(key: str, value) -> None:
    params = copy.deepcopy(tiny_params())
    node, parts = params, key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    try:
        assert isinstance(validate(params), Params)
    except ParamsError as exc:
        message = str(exc)
        # The message names the corrupted key, or the key it conflicts with (e.g. n_ctx vs lengths).
        assert key in message or any(k in message for k in known_keys() if k.split(".")[0] in ("data", "model"))


@settings(max_examples=300)
@given(st.lists(st.text(max_size=12), max_size=8))
def test_tokenizer_on_arbitrary_unicode(texts: list[str]) -> None:
    tok = Tokenizer("abcdefgh", max_length=10)
    try:
        ids = tok.encode(texts)
    except PalindromeLensError as exc:
        assert repr(exc)
        return
    assert tok.decode(ids) == texts


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from palindrome_lens import load_classifier
    from palindrome_lens.model.bridge import new_native_model, wrap_native
    from palindrome_lens.model.classifier import save_classifier
    from palindrome_lens.model.config import model_config
    from palindrome_lens.params import load_params_file
    from tests.conftest import ROOT

    tok = Tokenizer("abcdefgh", max_length=6)
    config = model_config(load_params_file(ROOT / "tests" / "tiny_params.yaml").model, tok, 0, [5, 6])
    directory = tmp_path_factory.mktemp("fuzz") / "model"
    save_classifier(wrap_native(new_native_model(config), config), tok, config, directory)
    return load_classifier(directory)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(alphabet="abcdefgh", min_size=5, max_size=6), st.text(max_size=9)), max_size=6))
def test_predict_on_arbitrary_strings(classifier, texts: list[str]) -> None:
    try:
        predicted = classifier.predict(texts)
        proba = classifier.predict_proba(texts)
    except PalindromeLensError as exc:
        bad = [t for t in texts if len(t) not in (5, 6) or set(t) - set("abcdefgh")]
        assert bad and repr(exc)
        return
    assert predicted.shape == (len(texts),) and predicted.dtype == bool
    assert proba.shape == (len(texts), 2)
    assert (abs(proba.sum(axis=1) - 1) < 1e-5).all()
    assert ((proba[:, 1] > 0.5) == predicted).all() or (abs(proba[:, 1] - 0.5) < 1e-6).any()
