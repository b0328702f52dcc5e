"""Fuzzing: random inputs either work or raise the project's own clear error, never a raw traceback.

The params fuzzers start from a valid profile and break one thing, so every section's checks are reached
(a random mapping stops at the first unknown or missing top-level key). They check the public behaviour
only: what `validate` returns, or what its ParamsError says.
"""

from __future__ import annotations

import copy
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import PalindromeLensError, ParamsError
from palindrome_lens.params import known_keys, validate
from tests.conftest import ROOT, tiny_params

PROFILES = {"tiny": tiny_params(), "default": yaml.safe_load((ROOT / "params.yaml").read_text())}
TOP_LEVEL = list(dict.fromkeys(key.split(".")[0] for key in known_keys()))

# Rules that span two keys report the conflict under the other key, with that key's value: the split
# sizes against what the alphabet, lengths and mixes can supply, and d_model against n_heads.
CROSS_KEY = {
    "data.alphabet": {"data.n_test"},
    "data.lengths": {"data.n_val", "data.n_test"},
    "data.n_val": {"data.n_test"},
    "data.palindrome_fraction": {"data.n_val", "data.n_test"},
    "data.negative_mix": {"data.n_val", "data.n_test"},
    "model.n_heads": {"model.d_model"},
    "model.attention_dir": {"model.readout"},  # causal attention needs the EOS readout
}

yaml_keys = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.booleans())  # YAML keys need not be strings
yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(yaml_keys, inner, max_size=4)),
    max_leaves=12,
)


def _get(params: Mapping[str, Any], key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        node = node[part]
    return node


def _with(params: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(dict(params))
    *parents, last = key.split(".")
    node = changed
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


def _near(base: Any) -> st.SearchStrategy[Any]:
    """Values of the base value's own type, often valid, so the success path and the bounds are exercised."""
    if isinstance(base, bool):
        return st.booleans()
    if isinstance(base, int):
        return st.one_of(st.integers(-2, max(2 * base, 10)), st.sampled_from([True, float(base), 2**64]))
    if isinstance(base, float):
        return st.one_of(st.floats(-0.5, 2.0), st.integers(-1, 3),
                         st.sampled_from([math.nan, math.inf, -math.inf, 5e-324, 1e-308, True]))
    if isinstance(base, str):
        return st.one_of(st.just(base), st.text(alphabet=base + "AZ !-", max_size=len(base) + 3))
    if base is None:
        return st.one_of(st.none(), st.integers(-1, 64))
    if isinstance(base, list):
        return st.lists(st.one_of(st.sampled_from(base), yaml_scalars), max_size=len(base) + 2)
    if isinstance(base, Mapping):
        keys = list(base)
        fractions = st.lists(st.floats(0.0, 1.0), min_size=len(keys), max_size=len(keys)).filter(lambda f: sum(f) > 0)
        return st.one_of(
            fractions.map(lambda f: {k: v / sum(f) for k, v in zip(keys, f)}),  # sums to 1
            st.fixed_dictionaries({k: st.one_of(st.floats(0.0, 1.0), st.integers(0, 1)) for k in keys}),
            st.dictionaries(st.one_of(st.sampled_from(keys), yaml_keys), st.one_of(st.floats(-0.2, 1.2), st.integers(0, 1)),
                            max_size=len(keys) + 1),
        )
    raise AssertionError(f"no strategy for {base!r}")


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a value as written in params.yaml fits a field's annotation (a list stands for a tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin in (Mapping, dict):
        return isinstance(value, Mapping) and all(_conforms(k, args[0]) and _conforms(v, args[1])
                                                  for k, v in value.items())
    if hint is Any:
        return True
    raise AssertionError(f"the fuzzer does not know the annotation {hint!r}")


def _hint(params: Any, key: str) -> Any:
    *sections, name = key.split(".")
    owner = _get_attr(params, sections)
    return typing.get_type_hints(type(owner))[name]


def _get_attr(obj: Any, parts: list[str]) -> Any:
    for part in parts:
        obj = getattr(obj, part)
    return obj


def _named(message: str) -> str:
    """The key a message starts with: `key: ...` or `key is missing ...`."""
    match = re.match(r"[^\s:]+", message)
    assert match, message
    return match.group(0)


def _shows(message: str, key: str, value: Any, base: Any) -> bool:
    """The message is `key: <the bad value> ...`: the value as written, the bad element of a list, a too-long
    alphabet summarised, or fractions that do not sum to 1 as the numbers they were read as."""
    shown = [value]
    if isinstance(value, str):
        shown.append(f"<{len(value)} characters>")
    if isinstance(value, list):
        shown += value
    if isinstance(value, Mapping) and isinstance(base, Mapping) and set(value) == set(base):
        shown.append({k: float(value[k]) for k in base})
    return any(message.startswith(f"{key}: {v!r}") for v in shown)


def _says_what_is_allowed(message: str) -> bool:
    return bool(message.partition("; ")[2].strip())


def check_rejection(message: str, key: str, value: Any, base: Mapping[str, Any]) -> None:
    """A ParamsError for `key` set to `value` in the valid profile `base`: it names exactly the key (or the one
    entry of a mapping that is wrong), repeats the value and says what is allowed; or it is a rule that spans
    two keys and names the other key with its value."""
    assert _says_what_is_allowed(message), f"{key}={value!r}: {message}"
    if isinstance(value, Mapping) and isinstance(_get(base, key), Mapping) and _names_an_entry(
            message, key, value, _get(base, key)):
        return
    named = _named(message)
    if named.startswith(f"{key}["):  # one element of a list of records, named by its index
        return
    if named == key:
        assert _shows(message, key, value, _get(base, key)), f"{key}={value!r}: {message}"
    else:
        assert named in CROSS_KEY.get(key, ()), f"{key}={value!r} was reported under {named}: {message}"
        assert message.startswith(f"{named}: {_get(base, named)!r}"), message


def _names_an_entry(message: str, key: str, value: Mapping[Any, Any], base: Mapping[Any, Any]) -> bool:
    """`key.entry: unknown ...`, `key.entry: <its value> ...` or `key.entry is missing` for the right entry.
    (Entries are matched by prefix: a YAML key may hold spaces or colons.)"""
    for entry, written in value.items():
        if message.startswith(f"{key}.{entry}: "):
            rest = message[len(f"{key}.{entry}: "):]
            assert rest.startswith("unknown") or rest.startswith(repr(written)), message
            return True
    absent = [entry for entry in base if entry not in value]
    return any(message.startswith(f"{key}.{entry} is missing") for entry in absent)


def check_acceptance(result: Any, key: str, value: Any) -> None:
    """A valid value comes back as given and fits the field's type."""
    stored = _get_attr(result, key.split("."))
    assert _conforms(value, _hint(result, key)), f"{key}: accepted {value!r}, which is not a {_hint(result, key)}"
    expected = tuple(value) if isinstance(value, list) else value
    assert (dict(stored) if isinstance(stored, Mapping) else stored) == expected, (key, value, stored)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PROFILES)), st.sampled_from(known_keys()), st.data())
def test_one_key_set_to_a_random_value(profile: str, key: str, data: st.DataObject) -> None:
    base = PROFILES[profile]
    value = data.draw(st.one_of(yaml_values, _near(_get(base, key))), label=key)
    try:
        result = validate(_with(base, key, value))
    except ParamsError as exc:
        check_rejection(str(exc), key, value, base)
    else:
        check_acceptance(result, key, value)


@pytest.mark.parametrize("key", known_keys())
def test_every_key_has_its_own_check(key: str) -> None:
    """A value no key accepts (a list holding a mapping) is reported under that key, in both profiles."""
    value = [{"not": "valid"}]
    for base in PROFILES.values():
        with pytest.raises(ParamsError) as raised:
            validate(_with(base, key, value))
        check_rejection(str(raised.value), key, value, base)
        named = _named(str(raised.value))
        assert named == key or named.startswith(f"{key}[0]."), named  # a list of records names the record's key


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PROFILES)), st.sampled_from(TOP_LEVEL), yaml_values)
def test_one_section_replaced_by_random_yaml(profile: str, section: str, value: Any) -> None:
    base = PROFILES[profile]
    try:
        result = validate(_with(base, section, value))
    except ParamsError as exc:
        named = _named(str(exc))
        assert named == section or named.startswith(f"{section}."), f"{section}={value!r}: {exc}"
        assert _says_what_is_allowed(str(exc)) or "is missing" in str(exc), str(exc)
    else:
        assert section in ("seed", "device") and getattr(result, section) == value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(yaml_values, st.dictionaries(st.one_of(st.sampled_from(TOP_LEVEL), yaml_keys), yaml_values)))
def test_random_yaml_is_refused_at_the_top_level(raw: Any) -> None:
    """Not a mapping, an unknown top-level key or a missing one: each is named."""
    with pytest.raises(ParamsError) as raised:
        validate(raw)
    message = str(raised.value)
    if not isinstance(raw, Mapping):
        assert message == f"params.yaml must be a mapping of sections, got {type(raw).__name__}"
        return
    unknown = [k for k in raw if k not in TOP_LEVEL]
    missing = [k for k in TOP_LEVEL if k not in raw]
    if unknown:
        assert message.startswith(f"{unknown[0]}: unknown key in params.yaml; known top-level keys are "
                                  f"{', '.join(TOP_LEVEL)}")
    elif missing:
        assert message.startswith(f"{missing[0]} is missing from params.yaml; it needs all of {', '.join(TOP_LEVEL)}")
    else:  # every top-level key present with random contents: the first bad one is named
        assert _named(message).split(".")[0] in TOP_LEVEL, message


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
