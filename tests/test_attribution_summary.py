"""The circuit summary and the whole write_attribution run: head choice rule, faithfulness numbers, and the
files written from a real activation store (load_cache) -- complete, equal to a live cache, deterministic."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from test_attribution_world import ALPHABET, tiny_classifier, world

from palindrome_lens.activations import choose_examples, load_cache, load_examples, write_activations
from palindrome_lens.attribution.common import head_names, logit_diff
from palindrome_lens.attribution.dla import direct_logit_attribution
from palindrome_lens.attribution.run import NEEDED_HOOKS, analyse, needed_hooks, write_attribution
from palindrome_lens.attribution.summary import MIN_SCORE, choose_circuit, circuit_accuracy
from palindrome_lens.data.parquet import write_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.classifier import load_classifier, save_classifier
from palindrome_lens.params import KNOWN_HOOKS

PARAMS = {"n_adversarial": 3, "batch_size": 16, "max_circuit_heads": 2, "seed": 0}


def _evidence(scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"component": list(scores), "score": list(scores.values())})


def test_choose_circuit_rule() -> None:
    ev = _evidence({"L0H0": 0.5, "L0H1": 0.05, "L1H0": 0.9, "L1H1": 0.5})
    assert choose_circuit(ev, 3) == (["L1H0", "L0H0", "L1H1"], False)  # ties broken by name
    assert choose_circuit(ev, 1) == (["L1H0"], False)
    weak = _evidence({"L0H0": MIN_SCORE / 2, "L0H1": math.nan})
    assert choose_circuit(weak, 3) == (["L0H0"], True)


def test_circuit_accuracy_extremes() -> None:
    w = world("ln")
    heads = head_names(w.model)
    everything = circuit_accuracy(w.model, w.tokens, w.cache, w.examples, heads, batch_size=64)
    nothing = circuit_accuracy(w.model, w.tokens, w.cache, w.examples, [], batch_size=64)
    assert everything["others_ablated"] == everything["unablated"] == nothing["circuit_ablated"]
    assert nothing["others_ablated"] == everything["circuit_ablated"]
    diff = logit_diff(w.logits).numpy()
    assert everything["unablated"]["accuracy"] == pytest.approx(((diff > 0) == w.examples["label"].to_numpy()).mean())
    assert everything["n_distance_1"] == int((w.examples["distance"] == 1).sum())
    assert set(everything["unablated"]) == {"accuracy", "distance_1_accuracy", "palindrome_accuracy"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A saved model and its activation store, written by the activations library as the extract stage does."""
    root = tmp_path_factory.mktemp("attribution")
    clf = tiny_classifier("ln")
    save_classifier(clf.model, clf.tokenizer, clf.config, root / "model")
    clf = load_classifier(root / "model")
    test = world("ln").test
    write_table(pa.Table.from_pandas(test, preserve_index=False), root / "test.parquet")
    examples = choose_examples(pa.Table.from_pandas(test, preserve_index=False), 6, 3, 0, ALPHABET)
    write_activations(root / "acts", clf, examples, KNOWN_HOOKS, "float32", batch_size=11)
    summary = write_attribution(root / "out", clf, root / "acts", test, **PARAMS)
    return {"root": root, "clf": clf, "test": test, "summary": summary}


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_writes_every_table_and_a_json_summary(store) -> None:
    out = store["root"] / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == summary["files"]
    assert {"dla.parquet", "distributions.parquet", "attention.parquet", "mirror.parquet", "patching.parquet",
            "ablation.parquet", "pos_qk.parquet", "pos_embed.parquet", "pos_cosine.parquet",
            "adversarial.parquet"} <= set(summary["files"])
    assert summary["dla_max_abs_error"] < 1e-4
    assert summary["patching"]["full_resid_pre_recovery_min"] == pytest.approx(1.0, abs=1e-4)
    assert 1 <= len(summary["circuit_heads"]) <= PARAMS["max_circuit_heads"]
    assert set(summary["evidence"]) == set(head_names(store["clf"].model))
    assert all(isinstance(s, str) and s for s in summary["sentences"]) and len(summary["sentences"]) == 2
    assert summary["circuit_heads"][0] in summary["sentences"][0]
    assert summary["adversarial"]["n_palindromes"] == PARAMS["n_adversarial"]
    dla = pd.read_parquet(out / "dla.parquet")
    assert list(dla.columns[:6]) == ["example_id", "text", "kind", "label", "length", "component"]
    assert {"value", "logit_diff"} <= set(dla.columns)


def test_dla_from_the_store_equals_a_live_cache(store) -> None:
    clf, acts = store["clf"], store["root"] / "acts"
    examples = load_examples(acts / "examples.parquet")
    tokens = clf.encode(examples["text"].tolist())
    with torch.inference_mode():
        logits, live = clf.model.run_with_cache(tokens)
    stored = load_cache(acts, clf, hooks=needed_hooks(clf))
    a = direct_logit_attribution(clf.model, stored, examples, logit_diff(logits))
    b = direct_logit_attribution(clf.model, live, examples, logit_diff(logits))
    # equal up to float rounding: the store was written in batches of 11, the live cache in one batch
    assert np.allclose(a["value"], b["value"], atol=1e-5)
    written = pd.read_parquet(store["root"] / "out" / "dla.parquet")
    assert np.allclose(written["value"], a["value"], atol=1e-6)


def test_same_inputs_same_bytes(store) -> None:
    again = store["root"] / "again"
    write_attribution(again, store["clf"], store["root"] / "acts", store["test"], **PARAMS)
    assert _digests(again) == _digests(store["root"] / "out")


def test_missing_hook_is_a_clear_error(store, tmp_path: Path) -> None:
    clf = store["clf"]
    examples = choose_examples(pa.Table.from_pandas(store["test"], preserve_index=False), 2, 1, 0, ALPHABET)
    write_activations(tmp_path / "acts", clf, examples, ["hook_embed", "attn.hook_pattern"], "float32", 8)
    with pytest.raises(DataFileError, match="extract.hooks") as info:
        write_attribution(tmp_path / "out", clf, tmp_path / "acts", store["test"], **PARAMS)
    assert "hook_pos_embed" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert set(NEEDED_HOOKS) <= set(KNOWN_HOOKS)


@pytest.mark.parametrize("variant", ["attn_only", "no_ln"])
def test_analyse_runs_without_mlps_or_layernorm(variant: str) -> None:
    w = world(variant)
    result = analyse(w.clf, w.cache, w.examples, w.test, n_adversarial=2, batch_size=64, max_circuit_heads=2, seed=0)
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
        analyse(w.clf, w.cache, w.examples.iloc[1:], w.test, n_adversarial=1, batch_size=64, max_circuit_heads=1, seed=0)
