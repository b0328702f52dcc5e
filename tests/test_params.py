"""Bad params: each gives a clear error naming the key and value, and the stage writes nothing."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from palindrome_lens.errors import ParamsError
from palindrome_lens.params import declared_params, known_keys, load_stage_params, validate
from tests.conftest import ROOT, make_repo_copy, run, tiny_params


def _with(path: str, value):
    params = copy.deepcopy(tiny_params())
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return params


_DELETE = object()

BAD = [
    ("data.alphabet", "", r"data\.alphabet: '' .*non-empty"),
    ("data.alphabet", "abca", r"data\.alphabet: 'abca' .*distinct.*'a'"),
    ("data.alphabet", 12, r"data\.alphabet: 12"),
    ("data.lengths", [1, 5], r"data\.lengths: 1 is too short; lengths must be >= 2"),
    ("data.lengths", "10", r"data\.lengths: '10' .*list of integers"),
    ("data.lengths", [5.5], r"data\.lengths: \[5\.5\] .*integer"),
    ("data.n_train", 0, r"data\.n_train: 0 .*>= 1"),
    ("data.n_val", -3, r"data\.n_val: -3 .*>= 1"),
    ("data.n_test", 10**9, r"data\.n_test: 1000000000 .*distinct"),
    ("data.negative_mix", {"near1": 0.5, "near2": 0.2, "random": 0.2, "redraw": 0.0}, r"data\.negative_mix: .*sum to 1"),
    ("data.negative_mix", {"near1": 1.2, "near2": -0.2, "random": 0.0, "redraw": 0.0},
     r"data\.negative_mix\.near1: 1\.2"),
    ("data.negative_mix", {"near1": 0.8, "near3": 0.2, "random": 0.0, "redraw": 0.0}, r"near3: unknown kind"),
    ("data.negative_mix", {"near1": 0.8, "near2": 0.2, "random": 0.0}, r"data\.negative_mix\.redraw is missing"),
    ("data.redraw_probability", 0, r"data\.redraw_probability: 0 .*> 0"),
    ("model.attention_dir", "sideways", r"model\.attention_dir: 'sideways' .*bidirectional, causal"),
    ("model.readout", "cls", r"model\.readout: 'cls' .*bos, eos"),
    ("data.negative_mix", {1: 0.5, "a": 0.5}, r"data\.negative_mix\.1: unknown kind"),  # YAML keys can be numbers
    ("data.palindrome_fraction", 1e-309, r"data\.n_val: 200 is too small; .*palindrome share \(1e-309\)"),
    ("data.palindrome_fraction", 1.5, r"data\.palindrome_fraction: 1\.5 .*<= 1"),
    ("seed", 1.5, r"seed: 1\.5 .*integer"),
    ("seed", "zero", r"seed: 'zero' .*integer"),
    ("data.alphabett", "abc", r"data\.alphabett: unknown key; known keys in data are alphabet, lengths"),
    ("modle", {}, r"modle: unknown key in params.yaml; known top-level keys are seed, device, data"),
    ("data.alphabet", _DELETE, r"data\.alphabet is missing"),
    ("tokenize.add_eos", "yes", r"tokenize\.add_eos: 'yes' .*true or false"),
    ("model.d_model", 15, r"model\.d_model: 15 does not divide into model\.n_heads 2"),
    ("model.act_fn", "tanh", r"model\.act_fn: 'tanh' .*one of relu, gelu"),
    ("model.n_ctx", 4, r"model\.n_ctx: 4 is too small .*>= 8"),
    ("train.batch_size", 0, r"train\.batch_size: 0 .*>= 1"),
    ("train.lr", 0, r"train\.lr: 0 .*> 0"),
    ("device", "tpu", r"^device: 'tpu' .*auto, cpu, cuda"),
    ("extract.hooks", ["hook_embed", "blocks.0.hook_nope"], r"extract\.hooks: 'blocks\.0\.hook_nope' .*valid hooks are"),
    ("extract.dtype", "bfloat16", r"extract\.dtype: 'bfloat16' .*float32, float16"),
    ("report.hist_bins", 1, r"report\.hist_bins: 1 .*>= 2"),
    ("report.n_examples", -1, r"report\.n_examples: -1"),
    ("model.attention_dir", "causal", r"model\.readout: 'bos' is not allowed with model\.attention_dir 'causal'"),
    ("attribute.ablation", "zero", r"attribute\.ablation: 'zero' .*resample, mean"),
    ("attribute.faithfulness_target", 0, r"attribute\.faithfulness_target: 0 .*> 0"),
    ("attribute.hypotheses", [{"name": "x", "claim": "", "after_layer": 0, "keep": {"bos": "pair_match"}}],
     r"attribute\.hypotheses\[0\]\.keep\.bos: 'pair_match' .*character positions only"),
    ("attribute.hypotheses", [{"name": "x", "claim": "", "after_layer": 0, "keep": {"middle": "none"}}],
     r"attribute\.hypotheses\[0\]\.keep\.middle: .*not a position group"),
    ("attribute.hypotheses", [{"name": "x", "claim": "", "after_layer": 0, "keep": {"chars": "all", "centre": "all"}}],
     r"attribute\.hypotheses\[0\]\.keep: .*not both"),
    ("data.n_test", 8, r"data\.n_test: 8 is too small; .*near2 share \(0\.1\) gets no examples .*at least 20"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_bad_value_names_key_value_and_rule(key, value, message) -> None:
    with pytest.raises(ParamsError, match=message):
        validate(_with(key, value))


def test_eos_readout_needs_an_eos_token() -> None:
    params = _with("model.readout", "eos")
    params["tokenize"]["add_eos"] = False
    with pytest.raises(ParamsError, match=r"model\.readout: 'eos' is not allowed with tokenize\.add_eos false"):
        validate(params)
    params["tokenize"]["add_eos"] = True
    assert validate(params).model.readout == "eos"


def test_tiny_and_default_profiles_are_valid() -> None:
    validate(tiny_params())
    validate(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_every_stage_declares_only_known_keys_and_reads_only_declared_ones() -> None:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for stage in spec["stages"]:
        assert set(declared_params(stage, ROOT / "dvc.yaml")) <= set(known_keys())
    p = load_stage_params("tokenize", ROOT)
    assert p.data.alphabet
    with pytest.raises(ParamsError, match=r"data\.n_train is read by this stage but not declared"):
        _ = p.data.n_train
    with pytest.raises(ParamsError, match="seed"):
        _ = p.seed


def test_every_key_is_declared_by_some_stage() -> None:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    declared = {key for stage in spec["stages"].values() for key in stage.get("params", [])}
    assert declared == set(known_keys())


@pytest.mark.parametrize(("key", "value"), [("data.lengths", [1]), ("data.alphabet", "aa"), ("data.n_test", 0)])
def test_stage_with_bad_params_exits_nonzero_and_writes_nothing(tmp_path, key, value) -> None:
    repo = make_repo_copy(tmp_path / "repo", _with(key, value))
    proc = run(["python", "-m", "stages.generate"], repo, check=False)
    assert proc.returncode == 2
    assert key in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / "data" / "raw").exists()


def _outside(bounds, side: str):
    """A value just past one side of a rule's range (the bound itself when that side is open)."""
    if side == "lo":
        if bounds.lo_open:
            return bounds.lo
        return bounds.lo - 1 if bounds.integral else bounds.lo - 0.01 * max(1.0, abs(bounds.lo))
    return bounds.hi + 1 if bounds.integral else bounds.hi + 0.01 * max(1.0, abs(bounds.hi))


def _bounded() -> list[tuple[str, str]]:
    import dataclasses

    from palindrome_lens.params.core import GLOBALS, SECTIONS
    from palindrome_lens.params.rules import RULE

    out = [(key, side) for key, check in GLOBALS.items() for side in ("lo", "hi")
           if getattr(getattr(check, "bounds", None), side, None) is not None]
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            bounds = getattr(f.metadata[RULE], "bounds", None)
            out += [(f"{name}.{f.name}", side) for side in ("lo", "hi") if bounds and getattr(bounds, side) is not None]
    return out


@pytest.mark.parametrize(("key", "side"), _bounded())
def test_every_bounded_param_is_refused_on_each_side(key: str, side: str) -> None:
    import dataclasses

    from palindrome_lens.params.core import GLOBALS, SECTIONS
    from palindrome_lens.params.rules import RULE

    section, _, field = key.partition(".")
    check = GLOBALS[key] if not field else {f.name: f.metadata[RULE] for f in dataclasses.fields(SECTIONS[section])}[field]
    value = _outside(check.bounds, side)
    expected = f"{key}: {value!r} is not allowed; it must be " + ("<=" if side == "hi" else ">")
    with pytest.raises(ParamsError, match="^" + re.escape(expected)):
        validate(_with(key, value))


def test_bounds_cover_the_params_that_had_none_tested() -> None:
    assert {("attribute.faithfulness_target", "hi"), ("attribute.discovery_budget", "lo"),
            ("attribute.minimality_floor", "lo"), ("attribute.edge_floor", "hi")} <= set(_bounded())


HYPOTHESIS = {"name": "x", "claim": "", "after_layer": 0, "keep": {"chars": "pair_match"}}
BAD_HYPOTHESES = [
    ({"keep": {"chars": "pair_mach"}}, r"attribute\.hypotheses\[0\]\.keep\.chars: 'pair_mach' .*not a feature"),
    ({"keep": {"chars": "all+label"}}, r"keep\.chars: 'all\+label' .*cannot be joined"),
    ({"keep": {"eos": "visible_pair_match"}}, r"keep\.eos: 'visible_pair_match' .*character positions only"),
    ({"after_layer": 5}, r"attribute\.hypotheses\[0\]\.after_layer: 5 .*model has 2 layers \(model\.n_layers\), so it "
                         r"must be 0\.\.1"),
    ({"keep": {"first_half": "char", "centre": "char"}}, None),  # tiny lengths 5 and 6: a centre exists
]


@pytest.mark.parametrize(("change", "message"), BAD_HYPOTHESES)
def test_bad_hypotheses_are_params_errors_before_any_work(change: dict, message: str | None) -> None:
    params = _with("attribute.hypotheses", [{**HYPOTHESIS, **change}])
    if message is None:
        validate(params)
        return
    with pytest.raises(ParamsError, match=message):
        validate(params)


def test_a_group_the_strings_do_not_have_is_a_params_error() -> None:
    params = _with("attribute.hypotheses", [{**HYPOTHESIS, "keep": {"centre": "char"}}])
    params["data"]["lengths"] = [6]
    with pytest.raises(ParamsError, match=r"keep\.centre: 'char' .*no string has a centre character"):
        validate(params)
    params = _with("attribute.hypotheses", [{**HYPOTHESIS, "keep": {"eos": "label"}}])
    params["tokenize"]["add_eos"] = False
    with pytest.raises(ParamsError, match=r"keep\.eos: 'label' .*no \[EOS\] position"):
        validate(params)


def test_the_first_stage_catches_a_hypothesis_after_a_missing_layer(tmp_path) -> None:
    repo = make_repo_copy(tmp_path / "repo", _with("attribute.hypotheses", [{**HYPOTHESIS, "after_layer": 5}]))
    proc = run(["python", "-m", "stages.generate"], repo, check=False)
    assert proc.returncode == 2 and "attribute.hypotheses[0].after_layer: 5" in proc.stderr
    assert not (repo / "data" / "raw").exists()
