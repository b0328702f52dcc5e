"""The figures that say how much of the model the program reproduces, on numbers worked out by hand: agreement,
the model's own errors (recall, precision), R^2 and Spearman within each class beside the exact check, and the
gate on "the model runs this program" with each of its conditions failing in turn."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from palindrome_lens.explanation.agreement import figures, r_squared, spearman
from palindrome_lens.explanation.sentences import verdict, weakest_pair
from palindrome_lens.params import validate
from tests.conftest import tiny_params


def frame(label: list[bool], model: list[float], program: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"label": label, "model_logit_diff": model, "program_logit_diff": program, "kind": "x"})


def test_within_class_figures_ignore_the_gap_between_classes() -> None:
    # palindromes lean 9, 10, 11 and the program follows exactly; the rest -9, -10, -11 and it reverses them
    f = figures(frame([True] * 3 + [False] * 3, [9, 10, 11, -9, -10, -11], [9, 10, 11, -11, -10, -9]), {})
    assert f["by_class"]["palindrome"]["r2"] == pytest.approx(1.0)
    assert f["by_class"]["not_palindrome"]["r2"] == pytest.approx(1 - 8 / 2)  # residuals 4+0+4 over 2
    assert f["by_class"]["not_palindrome"]["spearman"] == pytest.approx(-1.0)
    assert f["r2"] == pytest.approx((1.0 - 3.0) / 2) and f["spearman"] == pytest.approx(0.0)
    assert f["agreement"] == 1.0


def test_the_exact_check_outputs_one_value_per_class_and_scores_no_better_than_zero() -> None:
    f = figures(frame([True] * 3 + [False] * 3, [9, 10, 11, -9, -10, -11], [9, 10, 11, -9, -10, -11]),
                {True: 9.5, False: -10.0})
    assert f["by_class"]["palindrome"]["baseline_r2"] == pytest.approx(1 - (0.25 + 0.25 + 2.25) / 2)
    assert f["by_class"]["not_palindrome"]["baseline_r2"] == pytest.approx(0.0)
    assert f["baseline_spearman"] == 0.0
    assert r_squared(np.zeros(3), np.ones(3)) is None and spearman(np.arange(3.0), np.ones(3)) is None


def test_errors_are_counted_against_the_label() -> None:
    # strings 0-3 are not palindromes; the model calls 0, 1 and 2 palindromes (three errors); the program 1, 2, 3
    f = figures(frame([False] * 4 + [True], [1, 2, 3, -1, 5], [1, 2, -3, 4, 5]), {})
    assert (f["model_errors"], f["program_errors"], f["errors_reproduced"]) == (3, 3, 2)
    assert f["error_recall"] == pytest.approx(2 / 3) and f["error_precision"] == pytest.approx(2 / 3)
    assert f["agreement"] == pytest.approx(3 / 5) and f["baseline_agreement"] == pytest.approx(2 / 5)
    assert f["baseline_error_recall"] == 0.0


def passing() -> tuple[dict, pd.DataFrame]:
    base = {"n": 100, "agreement": 1.0, "baseline_agreement": 1.0, "model_errors": 30, "program_errors": 30,
            "errors_reproduced": 27, "error_recall": 0.9, "error_precision": 0.9, "r2": 0.7, "spearman": 0.86,
            "baseline_r2": -0.1, "baseline_spearman": 0.0}
    agreement = {"test": dict(base, model_errors=0, program_errors=0, error_recall=None, error_precision=None),
                 "edits": base}
    iia = pd.DataFrame([{"alignment": "resid", "node": "blocks.0.hook_resid_post", "kind": k, "iia_changed": v}
                        for k, v in (("aligned", 0.99), ("aligned", 0.97), ("control", 0.35))])
    return agreement, iia


PROGRAM = {"logic_lines": 82, "n_read": 100, "n_fitted": 33}


def test_the_sentence_says_runs_this_program_only_when_every_gate_passes() -> None:
    params = validate(tiny_params()).explain
    agreement, iia = passing()
    runs, sentence = verdict(agreement, iia, params, PROGRAM)
    assert runs and sentence.startswith("The model runs this program.")
    failures = {  # each spoils one gate: (edits figures to change, IIA column to set)
        "decision agreement on single edits": ({"agreement": 0.99}, None),
        "the model's own errors": ({"error_recall": 0.5}, None),
        "alignment": ({}, [0.99, 0.9, 0.35]),
        "the control": ({}, [0.99, 0.97, 0.6]),
    }
    for name, (edits, column) in failures.items():
        a, i = copy.deepcopy(agreement), iia.copy()
        a["edits"].update(edits)
        if column is not None:
            i["iia_changed"] = column
        runs, sentence = verdict(a, i, params, PROGRAM)
        assert not runs and f"({name.strip()} below target)" in sentence, name
        assert sentence.startswith("The program (data/explanation/program.py: 82 lines") and "What it reproduces" in sentence
    # fewer model errors than explain.min_errors: recall and precision cannot be judged, and the sentence says so
    a = copy.deepcopy(agreement)
    a["edits"].update({"model_errors": 19, "errors_reproduced": 0, "error_recall": 0.0, "error_precision": None,
                       "program_errors": 0})
    runs, sentence = verdict(a, iia, params, PROGRAM)
    assert runs and "too few to judge recall and precision by: the gate needs at least 20" in sentence
    a["edits"]["model_errors"] = 0  # none at all (the default model): still not judged, and said so
    runs, sentence = verdict(a, iia, params, PROGRAM)
    assert runs and "misclassifies none of them (too few to judge recall and precision by: the gate needs at least " \
        "20) and neither does the program" in sentence
    a["edits"]["model_errors"] = 20
    assert not verdict(a, iia, params, PROGRAM)[0]
    # a control that never tested anything (no decision-changing pair) is not a control that passed
    i = iia.copy()
    i.loc[i["kind"] == "control", "iia_changed"] = float("nan")
    runs, sentence = verdict(agreement, i, params, PROGRAM)
    assert not runs and "(the control below target)" in sentence


def test_the_weakest_pair_is_where_the_model_errs_and_the_constants_may_say_why() -> None:
    edits = pd.DataFrame({"label": False, "length": 6, "pair_pos": [0, 0, 1, 1, 2, 2],
                          "model_logit_diff": [-5.0, -5.0, 1.0, -4.0, -6.0, -6.0],
                          "model_correct": [True, True, False, True, True, True],
                          "program_correct": [True, True, False, True, True, True]})
    constants = pd.DataFrame([{"length": 6, "pair": p, "head": "L1H0", "table": t, "gap": g}
                              for p, (s, e) in enumerate([(3.0, 2.0), (1.0, 2.5), (3.0, 3.0)])
                              for t, g in (("salience", s), ("evidence", e))])
    w = weakest_pair(edits, constants)
    assert (w["pair"], w["by"], w["reader"]) == (1, "errors", "L1H0")
    assert w["singled_out"] and w["lowest"] == {"evidence": 0, "salience": 1}
