"""Known answer for the string-level family: the hand-built spread model (tests/ground_truth_spread.py) computes the
label at every character position in layer 0 (its heads copy the whole string everywhere, MLP 0 counts the broken
pairs), so the string-level program, which is layer 0 read from the model plus a small fitted readout, must decide
like it on every string and give its logits within a tight tolerance. Controls that must fail: the count variant
(whose answer is the parity of the count, which a monotone gate on the count cannot give) and the program with one
head's W_O zeroed (pair 3 is then never seen broken)."""

from __future__ import annotations

import copy
import functools
import itertools
from pathlib import Path

import numpy as np
import torch
from ground_truth_spread import ALPHABET, LENGTH, spread_classifier

from palindrome_lens.attribution.adversarial import adversarial_search, choose_palindromes
from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.explanation import explain
from palindrome_lens.explanation.program import run_program
from palindrome_lens.explanation.run import Explanation, fit_strings, model_size, write_explanation
from palindrome_lens.explanation.string_run import build_string_level
from palindrome_lens.explanation.string_template import render_string_level
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import ModelParams, validate
from palindrome_lens.report.explanation_inputs import load_explanation
from palindrome_lens.report.pages.explanation import explanation_page
from tests.conftest import tiny_params

LOGIT_TOLERANCE = 1e-3  # the fitted gate's logistic never reaches exactly 0 or 1 (the model's logits are +-2)


def circuit(feature: str, layer: int = 0) -> dict:
    return {"discovered": {"boundaries": [{"after_layer": layer, "verdict": "supported",
                                           "keep": {"bos": "none", "chars": feature, "eos": "none"}}]}}


@functools.cache
def explained(variant: str, layer: int = 0) -> tuple:
    torch.set_num_threads(1)
    raw = tiny_params()
    raw["data"].update({"alphabet": ALPHABET, "lengths": [LENGTH], "n_train": 300, "n_val": 20, "n_test": 200})
    raw["explain"].update({"n_fit": 300})
    params = validate(raw)
    splits = {name: t.to_pandas() for name, t in generate_splits(params.data, seed=0).items()}
    clf = spread_classifier(Tokenizer(ALPHABET, LENGTH, add_eos=True), variant)
    edits = adversarial_search(clf.model, clf.tokenizer, choose_palindromes(splits["test"], 10, 0), 256)
    feature = {"label": "label", "count": "n_mismatches"}[variant]
    result = explain(clf, circuit(feature, layer), splits["train"], splits["test"], edits, params.explain, seed=0)
    return clf, result, params.explain, fit_strings(splits["train"], params.explain, [LENGTH], ALPHABET, 0)


@functools.cache
def every_string() -> list[str]:
    return ["".join(p) for p in itertools.product(ALPHABET, repeat=LENGTH)]


def level(result: Explanation, name: str) -> dict:
    return next(r for r in result.summary["levels"] if r["name"] == name)


def test_the_spread_models_string_level_program_is_exact_on_every_string() -> None:
    clf, result, _, fit = explained("label")
    summary = result.summary
    assert summary["family"]["name"] == "string_level" and summary["program"]["layer0_check_max_difference"] < 1e-6
    assert [r["name"] for r in summary["levels"]] == ["exact", "string_level"]
    row = level(result, "string_level")
    assert row["passes"] and row["agreement_test"] == 1.0 and row["agreement_edits"] == 1.0
    assert row["gates"]["alignment"] is None and row["gates"]["the control"] is None  # not applicable, said so
    assert row["n_fitted"] == 15 and row["file"] == "programs/string_level.py"
    assert summary["program_level"] == "exact"  # the smallest level passing: this model is the exact check
    assert any("not applicable" in s for s in summary["sentences"])
    texts = every_string()
    model = forward_logit_diff(clf.model, clf.encode(texts), 4096).numpy()
    assert set(np.round(model, 4)) == {-2.0, 2.0}
    # the numpy twin the stage measures with (rebuilt on the stage's fit strings: the same level), on all 65,536 strings
    built, _ = build_string_level(clf, [LENGTH], fit, forward_logit_diff(clf.model, clf.encode(fit), 4096).numpy()
                                    .astype(np.float64), 1, 4096)
    # in blocks of 4,096 strings (each string's twin logit is its own): all 65,536 at once take 2.7 GB and 5x the time
    twin = np.concatenate([built.logit_diff(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
    assert ((twin > 0) == (model > 0)).all()
    assert np.abs(twin - model).max() < LOGIT_TOLERANCE
    # the written program, run on its own, on every string with at most one broken pair (and a sample of the rest)
    one_broken = [t for t in texts if sum(t[i] != t[-1 - i] for i in range(LENGTH // 2)) <= 1]
    sample = one_broken[::7] + texts[::1009]
    written = run_program(result.levels["string_level.py"], sample)
    index = {t: i for i, t in enumerate(texts)}
    expected = model[[index[t] for t in sample]]
    assert ((written > 0) == (expected > 0)).all() and np.abs(written - expected).max() < LOGIT_TOLERANCE


def test_the_count_variant_gets_no_passing_string_level_program_and_the_summary_says_what_it_reproduces() -> None:
    """Its answer is the parity of the count (wrong on two broken pairs): a gate monotone in the readout can't say it."""
    _, result, params, _ = explained("count")
    row = level(result, "string_level")
    assert not row["passes"] and row["agreement_test"] < params.agreement_target
    assert result.summary["passing_level"] is None and not result.summary["runs_program"]
    assert "does not pass" in result.summary["headline"][0] and "What it reproduces" in result.summary["headline"][0]


def test_a_feature_found_after_a_later_layer_still_gets_layer_0_compiled_and_scored() -> None:
    """The 3-layer x 4-head case: the label holds only after layer 1, the template reads layer 0; the stage compiles
    and scores it anyway and says so first (here layer 0 is the whole story, so it passes)."""
    _, result, _, _ = explained("label", 1)
    assert result.summary["headline"][0].startswith("The search puts the string-level feature after layer 1, and this "
                                                    "template reads layer 0 only")
    assert result.program is not None and level(result, "string_level")["agreement_test"] == 1.0


def test_a_program_with_one_heads_output_zeroed_misses_every_break_at_its_pair() -> None:
    """Head 3 copies character 3 everywhere; without its values MLP 0 never sees pair (3, 4) broken."""
    _, result, _, _ = explained("label")
    constants = copy.deepcopy(result.constants["string_level"])
    w_o = np.asarray(constants["heads"]["w_o"])  # what head 3 writes from a character position
    w_o[3] = 0.0
    constants["heads"]["w_o"] = w_o.tolist()
    broken_at_3 = ["abcdacba", "abcabcba", "ddaabadd", "cccabccc"]
    palindromes = ["abcddcba", "aaaaaaaa"]
    assert (run_program(result.levels["string_level.py"], broken_at_3) < 0).all()  # as read: seen broken
    zeroed = run_program(render_string_level(constants), broken_at_3 + palindromes)
    assert (zeroed[:4] > 0).all()  # called palindromes: the break is invisible
    assert (zeroed[4:] > 0).all()


def test_the_string_level_files_are_written_read_back_and_shown(tmp_path: Path) -> None:
    _, result, _, _ = explained("label")
    write_explanation(tmp_path / "explanation", result)
    assert sorted(p.name for p in (tmp_path / "explanation" / "programs").iterdir()) == ["exact.py", "string_level.py"]
    inputs = load_explanation(tmp_path / "explanation")
    assert inputs.has_program and inputs.constants["family"] == "string_level"
    page = explanation_page(inputs, 3)
    assert "string-level family" in page.intro


def test_at_the_default_size_the_string_level_program_is_smaller_than_the_model() -> None:
    """Layer 0 is held as factors (the character and position parts of the residual stream, the heads' weights),
    not as tables per (position, character): at the default architecture (26 letters, length 10, d_model 32, two
    heads, d_mlp 128) 10,257 numbers, 38% of the model's 26,850 parameters; the tables were 46,449 (1.7 times).
    The factors still reproduce the model's layer 0 (the stage checks it on the fit strings)."""
    torch.set_num_threads(1)
    alphabet, length = "abcdefghijklmnopqrstuvwxyz", 10
    tokenizer = Tokenizer(alphabet, length, add_eos=True)
    params = ModelParams(n_layers=2, d_model=32, n_heads=2, d_head=None, d_mlp=128, act_fn="relu",
                         normalization="LN", attn_only=False, n_ctx=None)
    config = model_config(params, tokenizer, seed=0, lengths=[length])
    native = new_native_model(config)
    clf = Classifier(wrap_native(native, config), tokenizer, config)
    n_model = model_size(clf)
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list(alphabet), size=length)) for _ in range(300)]
    logits = forward_logit_diff(clf.model, clf.encode(texts), 512).numpy().astype(np.float64)
    built, gap = build_string_level(clf, [length], texts, logits, n_model, 512)
    assert n_model == 26_850 and gap < 1e-5
    assert built.n_read + built.n_fitted < 0.4 * n_model
