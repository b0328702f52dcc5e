"""Known answers that realistic bugs of the explain stage would change. Each test here was checked against its bug
made by hand (it went red with the bug and green without):
- the readout tables read at the mirror position, or a table entry's (own, mirror) swapped on the right side:
  the lopsided hand-built model (tests/ground_truth.py) attends unevenly and raises a flag whose strength is set
  by the position's own letter, so its tables are known by construction and no longer mirror-symmetric;
- the readout fitted to the labels instead of the model's logits: on that model the logit difference of a
  non-palindrome is exactly linear in the program's evidence, so the program must follow it within the class;
- error recall and precision with their denominators swapped: the model and the program make different
  numbers of errors;
- the alignment gate passing when a variable's IIA is NaN (no decision-changing pair to test it on)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import pytest
import torch
from ground_truth import ALPHABET, KEY, LENGTH, STRENGTH, planted_classifier
from hand_worlds import explain_params_and_splits

from palindrome_lens.attribution.adversarial import adversarial_search, choose_palindromes
from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.explanation import explain
from palindrome_lens.explanation.agreement import figures
from palindrome_lens.explanation.program import run_program
from palindrome_lens.explanation.sentences import iia_facts, verdict
from palindrome_lens.explanation.tables import read_tables
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.params import validate
from tests.conftest import tiny_params

CIRCUIT = {"scrubbing": [{"name": "pair_flags", "after_layer": 0, "keep": {"chars": "pair_match"},
                          "verdict": "supported"}],
           "nodes": [{"name": "0_mlp_out@chars", "component": "0_mlp_out", "layer": 0, "positions": "chars",
                      "role": "circuit"}]}
VALUE_NORM = (16.0**2 + 1.0) ** 0.5  # L1H0 writes -16 to LOGIT and +1 to AGG per unit of flag


@functools.cache
def lopsided() -> Classifier:
    torch.set_num_threads(1)
    return planted_classifier(Tokenizer(ALPHABET, LENGTH, add_eos=True), lopsided=True)


def test_the_lopsided_models_tables_are_its_keys_and_flag_strengths_at_every_position() -> None:
    """Salience at position i is 20 KEY[i + 1] whatever the pair holds; evidence for (own a, mirror b) is the flag
    the position's own letter raises, STRENGTH[a] x |value|, and 0 for a matched pair. A key read at the mirror
    position reverses the salience; (own, mirror) swapped on the right side gives the right half STRENGTH[b]."""
    clf = lopsided()
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0)
    head = {h.name: h for h in tables.heads}["L1H0"]
    n = len(ALPHABET)
    salience = np.broadcast_to(20.0 * np.array([KEY[i + 1] for i in range(LENGTH)])[:, None, None], (LENGTH, n, n))
    own, mirror = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    flag = np.where(own != mirror, np.array(STRENGTH)[own], 0.0)
    assert head.salience == pytest.approx(salience, abs=1e-4)
    assert head.evidence == pytest.approx(np.broadcast_to(VALUE_NORM * flag, (LENGTH, n, n)), abs=1e-4)
    assert head.special["bos"] == pytest.approx((0.0, 0.0), abs=1e-4)
    assert head.special["eos"] == pytest.approx((0.0, 0.0), abs=1e-4)
    # the test can tell: the right half of a pair differs from its left half read the other way round
    assert not np.allclose(head.salience[LENGTH - 1], head.salience[0])
    assert not np.allclose(head.evidence[LENGTH - 1], head.evidence[0].T)


@functools.cache
def explained() -> tuple:
    params, splits = explain_params_and_splits()
    clf = lopsided()
    edits = adversarial_search(clf.model, clf.tokenizer, choose_palindromes(splits["test"], 10, 0), 256)
    return clf, explain(clf, CIRCUIT, splits["train"], splits["test"], edits, params.explain, seed=0)


def test_the_program_follows_the_lopsided_models_logit_within_each_class() -> None:
    """The model's logit difference is 2 - 16 x (attention-weighted flags): exactly linear in the program's
    evidence, so a program whose tables are read right and whose readout is fitted to the model's logits
    reproduces it; one fitted to the labels outputs one value per class, and tables read at the wrong position
    or the wrong way round weigh a broken pair's two flags wrongly."""
    clf, result = explained()
    summary = result.summary
    for part in ("test", "edits"):
        f = summary["agreement"][part]
        assert f["agreement"] == 1.0 and f["model_errors"] == 0 and f["program_errors"] == 0, part
        not_palindrome = f["by_class"]["not_palindrome"]
        assert not_palindrome["model_std"] > 1.0  # the model leans differently on each broken string
        assert not_palindrome["r2"] > 0.999 and not_palindrome["spearman"] > 0.999, part
    # the strings the lopsided model tells apart from their mirror image: the program does too, to the number
    texts = ["bacddcaa", "aacddcab", "dbcddcba", "abcddcbd", "abcdacba", "abcadcba", "cbcddcbd", "dbcddcbc"]
    model = forward_logit_diff(clf.model, clf.encode(texts), 64).numpy()
    assert len(set(np.round(model, 3))) == len(texts)
    assert run_program(result.program, texts) == pytest.approx(model, abs=1e-3)


def test_error_recall_and_precision_divide_by_the_models_and_the_programs_errors() -> None:
    # strings 0-5 are not palindromes; the model calls 0, 1 palindromes (two errors), the program 0, 2, 3, 4 (four)
    label = [False] * 6 + [True, True]
    model = [1.0, 2.0, -3.0, -1.0, -2.0, -4.0, 5.0, 6.0]
    program = [1.0, -2.0, 3.0, 1.0, 2.0, -4.0, 5.0, -6.0]  # and it misses a palindrome (string 7)
    f = figures(pd.DataFrame({"label": label, "model_logit_diff": model, "program_logit_diff": program,
                              "kind": "x"}), {})
    assert (f["model_errors"], f["program_errors"], f["errors_reproduced"]) == (2, 5, 1)
    assert f["error_recall"] == pytest.approx(1 / 2) and f["error_precision"] == pytest.approx(1 / 5)
    assert f["agreement"] == pytest.approx(3 / 8)


def passing() -> tuple[dict, pd.DataFrame]:
    base = {"n": 100, "agreement": 1.0, "baseline_agreement": 1.0, "model_errors": 10, "program_errors": 10,
            "errors_reproduced": 9, "error_recall": 0.9, "error_precision": 0.9, "r2": 0.7, "spearman": 0.86,
            "baseline_r2": -0.1, "baseline_spearman": 0.0}
    agreement = {"test": dict(base, model_errors=0, program_errors=0, error_recall=None, error_precision=None),
                 "edits": base}
    rows = [("resid", "blocks.0.hook_resid_post", k, v) for k, v in
            (("aligned", 0.99), ("aligned", 0.97), ("aligned", 1.0), ("control", 0.35), ("control", 0.3),
             ("control", 0.4))]
    rows += [("writer", "0_mlp_out", "aligned", 1.0), ("writer", "0_mlp_out", "control", 0.3)]
    iia = pd.DataFrame([{"alignment": a, "node": n, "kind": k, "iia_changed": v} for a, n, k, v in rows])
    return agreement, iia


PROGRAM = {"logic_lines": 82, "n_read": 100, "n_fitted": 33}


@pytest.mark.parametrize("nan_at", [[1], [0, 1, 2]])
def test_a_variable_whose_iia_is_nan_fails_the_alignment_gate(nan_at: list[int]) -> None:
    """NaN: no (base, source) pair changed the decision, so the variable was never tested; the others passing
    does not make up for it."""
    params = validate(tiny_params()).explain
    agreement, iia = passing()
    assert verdict(agreement, iia, params, PROGRAM)[0]
    untested = iia.copy()
    aligned = np.flatnonzero((untested["alignment"] == "resid") & (untested["kind"] == "aligned"))
    untested.loc[aligned[nan_at], "iia_changed"] = float("nan")
    facts = iia_facts(untested, "resid")
    assert facts["untested"] == len(nan_at) and facts["n_variables"] == 3
    runs, sentence = verdict(copy.deepcopy(agreement), untested, params, PROGRAM)
    assert not runs and "(alignment below target)" in sentence
