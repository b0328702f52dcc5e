"""The program template: rendered from a constants document with numbers chosen by hand, run in a fresh
interpreter (as a script and as a module), equal to the numpy emulation the stage measures with, safe with any
alphabet, and constants.json read back with errors that name the file and the key."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.constants import FORMAT, counts, load_constants
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.levels import merged_document, render_program
from palindrome_lens.explanation.readout import fit_gate, fit_side, n_fitted, quadratic_terms
from palindrome_lens.explanation.template import logic_lines

ALPHABET = "ab'\\"  # a quote and a backslash: the program holds code points, never pasted text
LENGTH = 4
A = len(ALPHABET)


def hand_doc() -> dict:
    """One readout head that looks evenly at every position (salience 0) and reads 1 from a broken pair (1.5 when
    its own character comes first in the alphabet: the tables know which side is which), times the position's
    number (so they know which position is which), a context head reading
    0.5 per 'b', a gate and linear readouts chosen so the logit is easy to work out."""
    own, mirror = np.meshgrid(np.arange(A), np.arange(A), indexing="ij")
    mismatch = np.where(own == mirror, 0.0, np.where(own < mirror, 1.5, 1.0))
    evidence = (mismatch[None] * np.arange(1, LENGTH + 1)[:, None, None]).tolist()  # position i weighs i + 1
    context_value = np.zeros((LENGTH, A, 1))
    context_value[:, ALPHABET.index("b"), 0] = 0.5
    features = 2  # one head's evidence, one context number
    width = 1 + features + features * (features + 1) // 2
    lengths = {str(LENGTH): {
        "heads": [{"name": "L1H0", "salience": np.zeros((LENGTH, A, A)).tolist(), "evidence": evidence,
                   "special": {"bos": [0.0, 0.0], "eos": [0.0, 0.0]}}],
        "context": [{"name": "L0H0", "salience": np.zeros((LENGTH, A)).tolist(), "value": context_value.tolist(),
                     "special": {"bos": [0.0, [0.0]], "eos": [-1e9, [0.0]]}}],
        "gate": [-12.0, 3.0],
        "readout": {"palindrome": [4.0, 0.0, 1.0] + [0.0] * (width - 3),
                    "not_palindrome": [-6.0, -3.0, 0.0] + [0.0] * (width - 3)}}}
    return {"format": FORMAT, "family": "pair_comparison", "hypothesis": "pair_flags", "after_layer": 0,
            "alphabet": [ord(c) for c in ALPHABET], "readout": "bos", "lengths": lengths, "counts": counts(lengths),
            "provenance": []}


def by_hand(text: str, read: str | None = None) -> float:
    """The same program worked out directly; the context reads `read` (default: `text`)."""
    seen = [(ALPHABET.index(text[i]), ALPHABET.index(text[LENGTH - 1 - i])) for i in range(LENGTH)]
    evidence = sum((i + 1) * (0.0 if a == b else 1.5 if a < b else 1.0)
                   for i, (a, b) in enumerate(seen)) / (LENGTH + 2)  # even attention over BOS, characters, EOS
    context = 0.5 * (read or text).count("b") / (LENGTH + 1)  # EOS gets no attention (salience -1e9)
    side = 1 / (1 + math.exp(-(3.0 - 12.0 * evidence)))
    return side * (4.0 + context) + (1 - side) * (-6.0 - 3.0 * evidence)


@pytest.fixture
def program_dir(tmp_path: Path) -> Path:
    (tmp_path / "program.py").write_text(render_program(hand_doc()))
    return tmp_path


def python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_program_runs_in_a_fresh_interpreter_and_computes_what_it_says(program_dir: Path) -> None:
    texts = ["abba", "abbb", "'\\\\'", "a'ba", "bbbb"]
    proc = python(["-c", "import json, program; print(json.dumps([program.logit_diff(t) for t in "
                         f"{texts!r}] + [program.is_palindrome('abba'), program.is_palindrome('abbb')]))"], program_dir)
    assert proc.returncode == 0, proc.stderr
    *values, pal, not_pal = json.loads(proc.stdout)
    # the full level merges each mirrored pair's two positions (log 2 and friends, kept to 7 significant digits)
    assert values == pytest.approx([by_hand(t) for t in texts], rel=1e-7, abs=1e-9)
    assert pal is True and not_pal is False
    cli = python(["program.py", "abbb"], program_dir)
    assert cli.returncode == 0 and cli.stdout.strip() == f"not a palindrome (logit difference {by_hand('abbb'):.4f})"
    assert python(["program.py", "abba"], program_dir).stdout.startswith("palindrome (")


def test_bad_input_is_a_clear_error_not_a_traceback(program_dir: Path) -> None:
    for bad in ("abc", "ab"):  # a character outside the alphabet; a length the model was not trained on
        proc = python(["program.py", bad], program_dir)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert python(["program.py"], program_dir).stderr.startswith("usage: ")


def test_an_intervention_sets_one_pair_and_matches_the_emulation(program_dir: Path) -> None:
    sys.path.insert(0, str(program_dir))
    try:
        import program  # noqa: PLC0415 - the generated module
    finally:
        sys.path.remove(str(program_dir))
        sys.modules.pop("program", None)
    emulator = Emulator(merged_document(hand_doc()))  # the numbers the program holds
    bases, sources = ["abba", "abbb", "bbbb", "a'ba"], ["bbbb", "abba", "abab", "''''"]
    for pair in (0, 1):
        told = [program.logit_diff(b, {pair: (s[pair], s[LENGTH - 1 - pair])}) for b, s in zip(bases, sources)]
        assert told == pytest.approx(emulator.logit_diff(bases, pair, sources), abs=1e-12)
    # pair 0 of 'abba' comparing ('b', 'a') (left, right): one broken pair, as in 'bbba', while the context still
    # reads 'abba'
    assert program.logit_diff("abba", {0: ("b", "a")}) == pytest.approx(by_hand("bbba", read="abba"), rel=1e-7)
    assert program.logit_diff("abba", {0: ("a", "b")}) == pytest.approx(by_hand("abbb", read="abba"), rel=1e-7)
    assert program.logit_diff("abba") == pytest.approx(emulator.logit_diff(["abba"])[0])


def test_the_logic_stays_short_and_only_numbers_enter_the_code() -> None:
    doc = hand_doc()
    source = render_program(doc)
    assert logic_lines(source) <= 110  # one template for every level: pair_entry and context_entry build the forms
    assert "'\\\\'" not in source.split("# ---- constants")[1]  # the alphabet appears as code points only
    hostile = copy.deepcopy(doc)
    hostile["lengths"][str(LENGTH)]["heads"][0]["name"] = 'L1H0"]; import os  #'
    with pytest.raises(DataFileError, match="head name"):
        render_program(hostile)
    hostile = copy.deepcopy(doc)
    hostile["lengths"][str(LENGTH)]["gate"][0] = float("nan")
    with pytest.raises(DataFileError, match="not finite"):
        render_program(hostile)


def test_counts_separate_read_from_fitted() -> None:
    doc = hand_doc()
    read = LENGTH * A * A * 2 + 4 + LENGTH * A * 2 + 2 * 2  # head tables + specials, context tables + specials
    assert doc["counts"] == {"read": read, "fitted": n_fitted(1, 2)} and n_fitted(1, 2) == 2 + 2 * 6


def test_constants_json_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "constants.json"
    with pytest.raises(DataFileError, match=r"constants\.json: the explanation's constants .* not found"):
        load_constants(path)
    path.write_text("{not json")
    with pytest.raises(DataFileError, match=r"constants\.json: not valid JSON"):
        load_constants(path)
    doc = hand_doc()
    path.write_text(json.dumps(doc))
    assert load_constants(path)["lengths"][str(LENGTH)]["gate"] == [-12.0, 3.0]
    broken = copy.deepcopy(doc)
    broken["lengths"][str(LENGTH)]["heads"][0]["evidence"] = [[0.0]]
    path.write_text(json.dumps(broken))
    with pytest.raises(DataFileError, match=r"constants\.json: lengths\.4\.heads\[0\]\.evidence has shape \(1, 1\)"):
        load_constants(path)
    del broken["alphabet"]
    path.write_text(json.dumps(broken))
    with pytest.raises(DataFileError, match=r"constants\.json: key 'alphabet' is missing"):
        load_constants(path)


def test_quadratic_terms_follow_the_programs_order() -> None:
    f = np.array([[2.0, 3.0]])
    assert quadratic_terms(f).tolist() == [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]


def test_the_fitted_readout_recovers_a_quadratic_and_a_gate() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 2))
    truth = np.array([1.0, -2.0, 0.5, 0.25, -1.0, 3.0])
    assert fit_side(f, quadratic_terms(f) @ truth) == pytest.approx(truth)
    gate = fit_gate(f[:, :1], f[:, 0] < 0.3)
    assert np.all((f[:, 0] * gate[0] + gate[1] > 0) == (f[:, 0] < 0.3))
    assert fit_side(f[:3], np.array([1.0, 2.0, 3.0])).tolist() == [2.0, 0, 0, 0, 0, 0]  # too few rows: the mean
