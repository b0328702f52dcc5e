"""The ladder of programs against known answers. Each test was checked against its bug made by hand:
- the algorithm level is exact on the planted model (its readout head's salience is one number and its evidence
  one number per position and match status, by construction) and on the lopsided model it is not, while the
  characters level is (the flag's strength is set by the position's own letter: an own-character offset);
- a level's numbers are summaries of the read tables (per-position means), not numbers fitted to the logits:
  fitting them would change them;
- the combination level's CP decomposition recovers a table that is additive plus rank 2 by construction at
  every position: a factorisation that drops a position misses it there;
- the full level's tables merged per mirrored pair give the per-position tables' numbers exactly (odd and even
  lengths, with a pair set from another string), in half the entries: a merge that swaps the right position's
  own and mirror characters, or drops the centre, is off;
- the interventions that keep a pair's match status: on the lopsided model the characters level follows the
  model's change exactly, the exact check and the algorithm level score 0 (they cannot see a character)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ground_truth import ALPHABET, KEY, LENGTH, planted_classifier

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.explanation.constants import rounded
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.ladder import (
    compress_pair_tables,
    emulation_entry,
    expand_pair_table,
    ladder,
    level_tables,
    merged_pairs,
    pair_masks,
)
from palindrome_lens.explanation.tables import read_tables
from tests.test_explanation_mutations import VALUE_NORM, explained

LEVELS = {level.name: level for level in ladder(rank=2, context_dims=2)}


def expanded(clf, level: str) -> tuple[dict, dict]:
    """(the read L1H0 tables, the same tables as the level writes them)."""
    torch.set_num_threads(1)
    tables = read_tables(clf.model, clf.tokenizer, LENGTH, 2, 2, 256, seed=0)
    entry = emulation_entry(level_tables(LEVELS[level], tables, rounded), LENGTH, len(ALPHABET))
    read = next(h for h in tables.heads if h.name == "L1H0")
    return ({"salience": read.salience, "evidence": read.evidence},
            next(h for h in entry["heads"] if h["name"] == "L1H0"))


def test_the_algorithm_level_is_exact_on_the_planted_model() -> None:
    read, level = expanded(planted_classifier(Tokenizer(ALPHABET, LENGTH, add_eos=True)), "algorithm")
    for name in ("salience", "evidence"):
        assert level[name] == pytest.approx(read[name], abs=1e-4), name
    n = len(ALPHABET)
    broken = ~np.eye(n, dtype=bool)
    assert level["evidence"][:, broken] == pytest.approx(VALUE_NORM, abs=1e-4)  # a broken pair's flag, by construction
    assert level["evidence"][:, ~broken] == pytest.approx(0.0, abs=1e-4)


def test_on_the_lopsided_model_the_characters_level_is_exact_and_the_algorithm_level_is_not() -> None:
    clf = planted_classifier(Tokenizer(ALPHABET, LENGTH, add_eos=True), lopsided=True)
    read, algorithm = expanded(clf, "algorithm")
    _, characters = expanded(clf, "characters")
    salience = 20.0 * np.array([KEY[i + 1] for i in range(LENGTH)])  # known by construction, per position
    assert algorithm["salience"][:, 0, 0] == pytest.approx(salience, abs=1e-4)
    assert algorithm["salience"][:, 0, 1] == pytest.approx(salience, abs=1e-4)
    assert np.abs(algorithm["evidence"] - read["evidence"]).max() > 0.5 * VALUE_NORM  # it cannot tell a from d
    for name in ("salience", "evidence"):
        assert characters[name] == pytest.approx(read[name], abs=1e-4), name


def test_a_levels_numbers_are_per_position_means_of_the_read_tables(tmp_path: Path) -> None:
    _, result = explained()
    (tmp_path / "algorithm.py").write_text(result.levels["algorithm.py"])  # the written program, run on its own
    proc = subprocess.run([sys.executable, "-c", f"import json, algorithm; print(json.dumps(algorithm.TABLES[{LENGTH}]"
                           "['heads']))"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    whole = result.constants["lengths"][str(LENGTH)]["heads"]
    same, broken = pair_masks(LENGTH, len(ALPHABET))
    for written, read in zip(json.loads(proc.stdout), whole):
        for name in ("salience", "evidence"):
            table = np.asarray(read[name])
            assert written[name]["match"] == pytest.approx(
                [table[i][same[i]].mean() for i in range(LENGTH)], rel=1e-5, abs=1e-5), name
            assert written[name]["broken"] == pytest.approx(
                [table[i][broken[i]].mean() for i in range(LENGTH)], rel=1e-5, abs=1e-5), name


def test_the_combination_level_recovers_an_additive_plus_rank_two_table_at_every_position() -> None:
    rng = np.random.default_rng(0)
    length, n = 6, 5
    position, own, mirror = rng.normal(size=(length, 2)), rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    tables = []
    for weight in ([1.0, 0.5], [-0.7, 2.0]):  # two tables sharing the factors, as the readout heads' do
        t = (rng.normal(size=length)[:, None, None] + rng.normal(size=n)[None, :, None] + rng.normal(size=n)[None, None, :]
             + np.einsum("r,ir,ar,br->iab", np.array(weight), position, own, mirror))
        t[:, np.arange(n), np.arange(n)] = rng.normal(size=(length, n))  # matched pairs: their own numbers
        tables.append(t)
    forms, shared = compress_pair_tables(tables, LEVELS["combination"])
    _, broken = pair_masks(length, n)
    for table, form in zip(tables, forms):
        rebuilt = expand_pair_table(form, shared, length, n)
        for i in range(length):
            assert rebuilt[i][broken[i]] == pytest.approx(table[i][broken[i]], abs=1e-6), f"position {i}"
    assert all(np.abs(shared["position"]).sum(axis=1) > 0)


def test_the_combination_level_reaches_a_rank_above_the_number_of_positions() -> None:
    """A rank-6 table over 4 positions: each mode's leading singular vectors give at most 4 starting columns for
    the position mode, and columns started at zero stay zero under alternating least squares, so a padded start
    caps the decomposition at rank 4 and misses the table by about 1 (this draw converges to 1e-8)."""
    rng = np.random.default_rng(1)
    length, n, rank = 4, 8, 6
    position, own, mirror = rng.normal(size=(length, rank)), rng.normal(size=(n, rank)), rng.normal(size=(n, rank))
    tables = []
    for _ in range(2):
        t = np.einsum("r,ir,ar,br->iab", rng.normal(size=rank), position, own, mirror) + \
            rng.normal(size=length)[:, None, None]
        t[:, np.arange(n), np.arange(n)] = rng.normal(size=(length, n))
        tables.append(t)
    level = next(level for level in ladder(rank=rank, context_dims=0) if level.name == "combination")
    forms, shared = compress_pair_tables(tables, level)
    _, broken = pair_masks(length, n)
    for table, form in zip(tables, forms):
        assert expand_pair_table(form, shared, length, n)[broken] == pytest.approx(table[broken], abs=1e-5)


def random_doc(length: int, rng: np.random.Generator, merged: bool = False) -> dict:
    """Two readout heads with random (position, own, mirror) tables, a context head and a random readout."""
    n = len(ALPHABET)
    heads = []
    for name in ("L1H0", "L1H1"):
        salience, evidence = 2 * rng.normal(size=(length, n, n)), rng.normal(size=(length, n, n))
        heads.append({"name": name, "salience": salience, "evidence": evidence, "special": {"bos": [0.3, -0.2]}})
    context = [{"name": "L0H0", "salience": rng.normal(size=(length, n)), "value": rng.normal(size=(length, n, 1)),
                "special": {"bos": [0.1, [0.4]]}}]
    entry = {"heads": heads, "context": context, "gate": rng.normal(size=3), "readout": {
        side: rng.normal(size=1 + 3 + 6) for side in ("palindrome", "not_palindrome")}}
    return {"alphabet": [ord(c) for c in ALPHABET], "lengths": {str(length): entry}}


@pytest.mark.parametrize("length", [6, 7])
def test_merging_each_mirrored_pair_is_exact(length: int) -> None:
    rng = np.random.default_rng(length)
    doc = random_doc(length, rng)
    merged = json.loads(json.dumps(doc, default=lambda a: a.tolist()))
    for head in merged["lengths"][str(length)]["heads"]:
        s, e = merged_pairs(np.asarray(head["salience"]), np.asarray(head["evidence"]))
        assert s.shape == e.shape == ((length + 1) // 2, len(ALPHABET), len(ALPHABET))
        head["salience"], head["evidence"] = s.tolist(), e.tolist()
    texts = ["".join(rng.choice(list(ALPHABET), size=length)) for _ in range(300)]
    sources = ["".join(rng.choice(list(ALPHABET), size=length)) for _ in range(300)]
    whole, halved = Emulator(doc), Emulator(merged)
    assert halved.logit_diff(texts) == pytest.approx(whole.logit_diff(texts), abs=1e-10)
    for pair in range((length + 1) // 2):
        assert halved.logit_diff(texts, pair, sources) == pytest.approx(whole.logit_diff(texts, pair, sources), abs=1e-10)


def test_interventions_that_keep_the_match_status_need_the_characters() -> None:
    _, result = explained()
    graded = {(r["level"], r["kind"]): r for r in result.summary["graded"]}
    broken = {level: graded[(level, "broken")] for level in ("exact", "algorithm", "characters", "full")}
    assert broken["exact"]["spearman"] == 0.0 and broken["algorithm"]["spearman"] == 0.0
    assert broken["exact"]["sign_agreement"] == 0.0
    for level in ("characters", "full"):
        assert broken[level]["spearman"] > 0.99 and broken[level]["sign_agreement"] > 0.99, level
        assert broken[level]["n_above_noise"] > 0.5 * broken[level]["n"]
    # the wrong-pair control: the model does not move when the next pair is patched (one layer 0 mirror head)
    assert broken["characters"]["control_spearman"] is None or abs(broken["characters"]["control_spearman"]) < 0.2
    levels = result.summary["levels"]
    assert [r["name"] for r in levels] == [level.name for level in ladder(4, 2)] + ["layer_zero"]  # 4 letters: it
    # holds layer 0's weights, more than the full tables
    assert [r["n_total"] for r in levels] == sorted(r["n_total"] for r in levels)
