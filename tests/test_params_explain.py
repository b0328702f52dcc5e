"""The `explain` params: every bound has a bad value on each side (named in the error with the key and what is
allowed) and its edge values pass; the explain stage validates before doing any work."""

from __future__ import annotations

import copy

import pytest

from palindrome_lens.errors import ParamsError
from palindrome_lens.params import validate
from tests.conftest import make_repo_copy, run, tiny_params

# key: (values that must fail, the message they give, edge values that must pass)
BOUNDS = {
    "n_contexts": ([0, 1025], r"must be (>= 1|<= 1024)", [1, 1024]),
    "context_dims": ([-1, 9], r"must be (>= 0|<= 8)", [0, 8]),
    "n_fit": ([9, 1_000_001], r"must be (>= 10|<= 1000000)", [10, 1_000_000]),
    "n_fit_edits": ([-1, 100_001], r"must be (>= 0|<= 100000)", [0, 100_000]),
    "n_interchange": ([0, 1_000_001], r"must be (>= 1|<= 1000000)", [1, 1_000_000]),
    "rank": ([0, 65], r"must be (>= 1|<= 64)", [1, 64]),
    "n_graded": ([1, 100_001], r"must be (>= 2|<= 100000)", [2, 100_000]),
    "failure_chars": ([0, 9], r"must be (>= 1|<= 8)", [1, 8]),
    "failure_proposals": ([0, 1_000_001], r"must be (>= 1|<= 1000000)", [1, 1_000_000]),
    "failure_random_edits": ([0, 10_000_001], r"must be (>= 1|<= 10000000)", [1, 10_000_000]),
    "min_errors": ([0, 1_000_001], r"must be (>= 1|<= 1000000)", [1, 1_000_000]),
    "spearman_target": ([-1.1, 1.1], r"must be (>= -1|<= 1)", [-1.0, 1.0]),
    "r2_target": ([-1.1, 1.1], r"must be (>= -1|<= 1)", [-1.0, 1.0]),
    "batch_size": ([0, (1 << 20) + 1], r"must be (>= 1|<= 1048576)", [1, 1 << 20]),
    "agreement_target": ([0, 1.01], r"must be (> 0|<= 1)", [1e-9, 1.0]),
    "error_recall_target": ([-0.1, 1.1], r"must be (>= 0|<= 1)", [0.0, 1.0]),
    "error_precision_target": ([-0.1, 1.1], r"must be (>= 0|<= 1)", [0.0, 1.0]),
    "iia_target": ([0.0, 1.5], r"must be (> 0|<= 1)", [1e-9, 1.0]),
    "iia_control_max": ([-0.01, 1.01], r"must be (>= 0|<= 1)", [0.0, 1.0]),
}
FAMILY = ("family", "string_level", r"explain\.family: 'string_level' is not allowed; it must be one of auto, pair_comparison")
INTEGERS = {"n_contexts", "context_dims", "n_fit", "n_fit_edits", "n_interchange", "batch_size", "rank", "n_graded",
            "failure_chars", "failure_proposals", "failure_random_edits", "min_errors"}


def with_explain(key: str, value: object) -> dict:
    params = copy.deepcopy(tiny_params())
    params["explain"][key] = value
    return params


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, (bad, _, _) in BOUNDS.items() for v in bad])
def test_each_side_of_every_bound_fails_with_the_key_and_the_rule(key: str, value: object) -> None:
    with pytest.raises(ParamsError, match=rf"^explain\.{key}: {value!r} is not allowed; it {BOUNDS[key][1]}"):
        validate(with_explain(key, value))


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, (_, _, good) in BOUNDS.items() for v in good])
def test_the_edge_values_pass(key: str, value: object) -> None:
    assert getattr(validate(with_explain(key, value)).explain, key) == value


@pytest.mark.parametrize("key", sorted(INTEGERS))
def test_integer_keys_refuse_other_types(key: str) -> None:
    for value in (2.5, "8", True):
        with pytest.raises(ParamsError, match=rf"^explain\.{key}: .* must be an integer"):
            validate(with_explain(key, value))


def test_the_family_is_auto_or_a_template() -> None:
    key, value, message = FAMILY
    with pytest.raises(ParamsError, match=message):
        validate(with_explain(key, value))
    assert validate(with_explain(key, "pair_comparison")).explain.family == "pair_comparison"


def test_every_key_is_checked_and_unknown_keys_are_refused() -> None:
    assert set(BOUNDS) | {FAMILY[0]} == set(tiny_params()["explain"])
    with pytest.raises(ParamsError, match=r"explain\.n_context: unknown key; known keys in explain are family, n_contexts"):
        validate(with_explain("n_context", 8))


def test_the_stage_refuses_bad_params_before_any_work(tmp_path) -> None:
    repo = make_repo_copy(tmp_path / "repo", with_explain("iia_target", 0))
    proc = run(["python", "-m", "stages.explain"], repo, check=False)
    assert proc.returncode == 2 and "explain.iia_target: 0 is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr and not (repo / "data" / "explanation").exists()
