"""The gated sentences, and the whole write_attribution run from a real activation store (load_cache):
complete, in the schemas, equal to a live cache, deterministic, with clear errors."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from test_attribution_world import ALPHABET, settings, tiny_classifier, world

from palindrome_lens.activations import choose_examples, load_cache, load_examples, write_activations
from palindrome_lens.attribution.common import balanced_mean, logit_diff, readout_positions
from palindrome_lens.attribution.dla import direct_logit_attribution
from palindrome_lens.attribution.run import analyse, needed_hooks, write_attribution
from palindrome_lens.attribution.schemas import SCHEMAS
from palindrome_lens.attribution.summary import scrub_verdict, sentences
from palindrome_lens.data.parquet import write_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.hooks import ATTRIBUTION_HOOKS, KNOWN_HOOKS
from palindrome_lens.model.classifier import load_classifier, save_classifier

SETTINGS = settings(n_adversarial=3, batch_size=16, search_budget=100)
DOC = {
    "nodes": [{"name": "embed@chars", "layer": -1}, {"name": "L0H0@chars", "layer": 0}, {"name": "L1H0@bos", "layer": 1}],
    "faithfulness": 0.95,
    "minimality": {"L0H0@chars": {"value": 0.8}, "L1H0@bos": {"value": 0.4}},
    "completeness": {"value": 0.03, "worst_k": "{L1H0@bos}"},
    "ablation": {"mode": "resample", "model": {"balanced_margin": 8.0, "balanced_accuracy": 1.0},
                 "circuit_only": {"balanced_margin": 7.6, "balanced_accuracy": 0.99}},
    "edges": [{"from": "L0H0@chars", "to": "L1H0@bos", "via": "v", "effect": 0.7},
              {"from": "L1H0@bos", "to": "logits", "via": "logits", "effect": 0.9}],
    "scrubbing": [],
}


def _sentences(**changes) -> list[str]:
    doc = copy.deepcopy(DOC)
    doc.update(changes)
    return sentences(doc, {"L0H0": {"in_circuit": True, "mirror_score": 0.9}}, target=0.9, floor=0.05)


def test_carried_by_only_when_faithful_and_every_node_minimal() -> None:
    first = _sentences()[0]
    assert first.startswith("The decision is carried by L0H0@chars and L1H0@bos") and "95.0%" in first
    weak = _sentences(minimality={"L0H0@chars": {"value": 0.8}, "L1H0@bos": {"value": 0.01}})[0]
    assert "carried by" not in weak and "L1H0@bos changes the margin by less than 0.05" in weak
    unfaithful = _sentences(faithfulness=0.6)[0]
    assert "carried by" not in unfaithful and unfaithful.startswith("No set of nodes found reaches faithfulness 0.9")
    no_margin = copy.deepcopy(DOC)
    no_margin["ablation"]["model"]["balanced_margin"] = -0.5
    assert sentences(no_margin, {}, 0.9, 0.05) == [
        "The model has no positive class-balanced margin (-0.50), so no circuit can be measured against it; "
        "no circuit claim is made."]


def test_edges_mirror_heads_and_completeness_carry_their_numbers() -> None:
    text = " ".join(_sentences())
    assert "L0H0@chars -> L1H0@bos (v) 0.70" in text and "L1H0@bos -> the logits 0.90" in text
    assert "L0H0 attends from each character to its mirror (mirror score 0.90)" in text
    assert "Completeness gap 0.03" in text
    assert "mirror" not in " ".join(sentences(DOC, {"L0H0": {"in_circuit": True, "mirror_score": 0.3}}, 0.9, 0.05))


def test_scrub_verdicts() -> None:
    assert scrub_verdict({"recovered": 0.95, "control": -0.5, "constant": 0.6}, 0.9) == "supported"
    assert scrub_verdict({"recovered": 0.5, "control": -0.5, "constant": 0.6}, 0.9) == "fails"
    assert scrub_verdict({"recovered": 0.95, "control": 0.95, "constant": 0.6}, 0.9) == "inconclusive"
    assert scrub_verdict({"recovered": None, "control": None, "constant": None}, 0.9) == "undefined"
    # most of the loss but too few answers kept, or no better than knowing nothing: not supported
    assert scrub_verdict({"recovered": 0.95, "accuracy_recovered": 0.7, "control": -0.5, "constant": 0.6}, 0.9) == "fails"
    assert scrub_verdict({"recovered": 0.92, "accuracy_recovered": 0.95, "control": -0.5, "constant": 0.93},
                         0.9) == "fails"
    assert scrub_verdict({"recovered": 0.95, "accuracy_recovered": 0.95, "control": -0.5, "constant": 0.6},
                         0.9) == "supported"
    doc = copy.deepcopy(DOC)
    doc["scrubbing"] = [{"name": "flags", "claim": "flags only", "recovered": 0.95, "recovered_constant": 0.5,
                         "accuracy_recovered": 0.4, "control": -0.2, "constant": 0.6, "self_draw_share": 0.0,
                         "local": {"recovered": 0.97, "accuracy_recovered": 0.96}, "verdict": "fails"}]
    text = sentences(doc, {}, 0.9, 0.05)[-1]
    assert text.startswith("Hypothesis 'flags': flags only.") and "recovers 95.0% of the loss" in text
    assert "50.0% on the scale from a constant predictor" in text and "40.0% of the balanced accuracy" in text
    assert "97.0% with each pair scrubbed alone" in text
    assert text.endswith("The hypothesis fails: 50.0% on the constant scale, below the 90%-110% band.")
    # a pair that fails alone fails the hypothesis, and the sentence names it beside the pooled figure
    doc["scrubbing"][0].update(recovered_constant=0.97, accuracy_recovered=0.96,
                               local={"recovered": 0.85, "accuracy_recovered": 0.96, "worst_unit": "pair 2",
                                      "pooled_recovered": 0.97})
    text = sentences(doc, {}, 0.9, 0.05)[-1]
    assert "85.0% with each pair scrubbed alone (the weakest, pair 2; 97.0% pooled)" in text
    assert text.endswith("The hypothesis fails: 85.0% with pair 2 alone, below the 90%-110% band.")
    doc["scrubbing"][0]["local"].update(recovered=1.15, pooled_recovered=1.05)
    text = sentences(doc, {}, 0.9, 0.05)[-1]
    assert "115.0% with each pair scrubbed alone (the farthest above 100%, pair 2; 105.0% pooled)" in text
    assert text.endswith("The hypothesis fails: 115.0% with pair 2 alone, above the 90%-110% band.")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A saved model and its activation store, written by the activations library as the extract stage does."""
    root = tmp_path_factory.mktemp("attribution")
    clf = tiny_classifier("ln")
    w = world("ln")
    if balanced_mean(np.where(w.examples["label"], w.diff.numpy(), -w.diff.numpy()), w.examples["label"]) < 0:
        # a random model may lean the wrong way; swapping its two logits makes its margin positive, so the
        # circuit numbers below are defined (faithfulness needs F(M) > 0)
        state = clf.model.state_dict()  # shares storage with the model
        with torch.no_grad():
            for name in ("unembed.weight", "unembed.bias"):
                state[name].copy_(state[name].flip(0))
    save_classifier(clf.model, clf.tokenizer, clf.config, root / "model")
    clf = load_classifier(root / "model")
    test = world("ln").test
    write_table(pa.Table.from_pandas(test, preserve_index=False), root / "test.parquet")
    examples = choose_examples(pa.Table.from_pandas(test, preserve_index=False), 6, 3, 0, ALPHABET)
    write_activations(root / "acts", clf, examples, KNOWN_HOOKS, "float32", batch_size=11)
    summary = write_attribution(root / "out", clf, root / "acts", test, SETTINGS, seed=0).summary
    return {"root": root, "clf": clf, "test": test, "summary": summary}


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_writes_every_table_in_its_schema_and_the_json_documents(store) -> None:
    out = store["root"] / "out"
    summary = json.loads((out / "summary.json").read_text())
    circuit = json.loads((out / "circuit.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == summary["files"]
    assert set(summary["files"]) == {f"{name}.parquet" for name in SCHEMAS} | {"summary.json", "circuit.json"}
    for name, schema in SCHEMAS.items():
        table = pd.read_parquet(out / f"{name}.parquet")
        assert list(table.columns) == schema.names, name
    assert summary["dla_max_abs_error"] < 1e-4
    assert summary["patching"]["full_resid_pre_recovery_min"] == pytest.approx(1.0, abs=1e-4)
    assert set(summary["evidence"]) == {f"L{layer}H{h}" for layer in range(2) for h in range(2)}
    assert summary["circuit_nodes"] == [n["name"] for n in circuit["nodes"] if n["role"] == "circuit"]
    assert summary["circuit_heads"] == list(dict.fromkeys(n.split("@")[0] for n in summary["circuit_nodes"]
                                                          if n.startswith("L")))
    assert summary["sentences"] == circuit["sentences"] and all(isinstance(x, str) and x for x in circuit["sentences"])
    assert circuit["format"] == "palindrome-lens/circuit/v2"
    assert set(circuit["minimality"]) == set(summary["circuit_nodes"])
    for edge in circuit["edges"]:
        assert {"from", "to", "via", "effect"} <= set(edge) and abs(edge["effect"]) >= SETTINGS.edge_floor
    assert [r["name"] for r in circuit["scrubbing"]] == [h["name"] for h in SETTINGS.hypotheses]
    assert summary["adversarial"]["n_palindromes"] == SETTINGS.n_adversarial
    # faithfulness is F(C) / F(M) as recorded beside it
    ab = circuit["ablation"]
    assert ab["model"]["balanced_margin"] > 0
    assert circuit["faithfulness"] == pytest.approx(ab["circuit_only"]["balanced_margin"] / ab["model"]["balanced_margin"])
    assert ab["constant_predictor"] == {"balanced_margin": 0.0, "balanced_accuracy": 0.5}
    json.dumps(circuit, allow_nan=False)


def test_dla_from_the_store_equals_a_live_cache(store) -> None:
    clf, acts = store["clf"], store["root"] / "acts"
    examples = load_examples(acts / "examples.parquet")
    tokens = clf.encode(examples["text"].tolist())
    with torch.inference_mode():
        logits, live = clf.model.run_with_cache(tokens)
    stored = load_cache(acts, clf, hooks=needed_hooks(clf))
    positions = readout_positions(clf.model, tokens)
    diff = logit_diff(logits, positions)
    a = direct_logit_attribution(clf.model, stored, examples, diff, positions)
    b = direct_logit_attribution(clf.model, live, examples, diff, positions)
    # equal up to float rounding: the store was written in batches of 11, the live cache in one batch
    assert np.allclose(a["value"], b["value"], atol=1e-5)
    written = pd.read_parquet(store["root"] / "out" / "dla.parquet")
    assert np.allclose(written["value"], a["value"], atol=1e-6)


def test_same_inputs_same_bytes(store) -> None:
    again = store["root"] / "again"
    write_attribution(again, store["clf"], store["root"] / "acts", store["test"], SETTINGS, seed=0)
    assert _digests(again) == _digests(store["root"] / "out")


def test_missing_hook_is_a_clear_error(store, tmp_path: Path) -> None:
    clf = store["clf"]
    examples = choose_examples(pa.Table.from_pandas(store["test"], preserve_index=False), 2, 1, 0, ALPHABET)
    write_activations(tmp_path / "acts", clf, examples, ["hook_embed", "attn.hook_pattern"], "float32", 8)
    with pytest.raises(DataFileError, match="extract.hooks") as info:
        write_attribution(tmp_path / "out", clf, tmp_path / "acts", store["test"], SETTINGS, seed=0)
    assert "hook_pos_embed" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert set(ATTRIBUTION_HOOKS) <= set(KNOWN_HOOKS)


@pytest.mark.parametrize("variant", ["attn_only", "no_ln"])
def test_analyse_runs_without_mlps_or_layernorm(variant: str) -> None:
    w = world(variant)
    result = analyse(w.clf, w.cache, w.examples, w.test, SETTINGS, seed=0)
    assert result.summary["dla_max_abs_error"] < 1e-4
    assert result.summary["patching"]["full_resid_pre_recovery_min"] == pytest.approx(1.0, abs=1e-4)
    components = set(result.tables["dla"]["component"])
    assert any(c.endswith("_mlp_out") for c in components) == (not w.model.cfg.attn_only)
    assert set(result.tables["patching"]["activation"]) == ({"resid_pre", "z"} if w.model.cfg.attn_only
                                                            else {"resid_pre", "z", "mlp_out"})
    json.dumps(result.summary, allow_nan=False)


def test_examples_must_match_the_cache() -> None:
    w = world("ln")
    with pytest.raises(DataFileError, match="example_id"):
        analyse(w.clf, w.cache, w.examples.iloc[1:], w.test, SETTINGS, seed=0)


def test_the_stage_fails_on_its_own_checks() -> None:
    from palindrome_lens.attribution.run import _check_dla, _check_patching
    from palindrome_lens.errors import AnalysisError

    dla = pd.DataFrame({"example_id": [0, 0, 1, 1], "value": [1.0, 2.0, -1.0, 0.5]})
    assert _check_dla(dla, np.array([3.0, -0.5])) == pytest.approx(0.0)
    with pytest.raises(AnalysisError, match="DLA check failed: the components of example 1"):
        _check_dla(dla, np.array([3.0, -0.4]))
    patching = pd.DataFrame({"activation": ["resid_pre"] * 2, "pos": [None, None], "mismatch_pos": [None, None],
                             "n": [4, 4], "recovery": [1.0, 0.9]})
    with pytest.raises(AnalysisError, match="patching check failed"):
        _check_patching(patching)
    assert _check_patching(patching.assign(recovery=[1.0, 1.0 - 1e-6]))["full_resid_pre_recovery_min"] < 1
