"""The attribute stage against a known answer: a hand-built model (tests/ground_truth.py) whose circuit is
planted, with loud decoys that nothing reads. The real stages run in a temp copy of the project
(generate, tokenize, then the planted model saved as data/model, then extract and attribute), and the
stage must recover the planted nodes and edges exactly, name no decoy, reach faithfulness 1, support
the true algorithm under causal scrubbing with a control that fails, and expose zero ablation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from ground_truth import ALPHABET, CIRCUIT, DECOYS, EDGES, LENGTH, run_planted

from tests.conftest import make_repo_copy, tiny_params


def _params() -> dict:
    params = tiny_params()
    params["data"].update({"alphabet": ALPHABET, "lengths": [LENGTH], "n_train": 200, "n_val": 20, "n_test": 200})
    params["extract"].update({"n_per_group": 40, "n_pairs": 16})
    params["attribute"].update({"n_adversarial": 20, "search_budget": 1000})
    return params


@pytest.fixture(scope="module")
def attributed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo_copy(tmp_path_factory.mktemp("truth") / "repo", _params())
    run_planted(repo, ["extract", "attribute"])
    return repo / "data" / "attribution"


def test_the_planted_model_is_right_on_every_string(attributed: Path) -> None:
    summary = json.loads((attributed / "summary.json").read_text())
    assert summary["accuracy"] == 1.0 and summary["balanced_accuracy"] == 1.0


def test_recovers_the_planted_nodes_and_no_decoy(attributed: Path) -> None:
    circuit = json.loads((attributed / "circuit.json").read_text())
    found = {n["name"] for n in circuit["nodes"] if n["role"] == "circuit"}
    assert found == CIRCUIT
    assert not {n["component"] for n in circuit["nodes"]} & DECOYS
    assert circuit["faithfulness"] == pytest.approx(1.0, abs=1e-3)
    assert circuit["completeness"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert all(m["value"] > 0.9 for m in circuit["minimality"].values())
    assert circuit["search"]["method"] == "exhaustive" and circuit["search"]["reached"]
    assert any("The decision is carried by L0H0@chars, 0_mlp_out@chars and L1H0@bos" in s
               for s in circuit["sentences"])


def test_recovers_exactly_the_planted_edges(attributed: Path) -> None:
    circuit = json.loads((attributed / "circuit.json").read_text())
    found = {(e["from"], e["to"], e["via"]): e["effect"] for e in circuit["edges"]}
    assert set(found) == set(EDGES)
    for edge, effect in EDGES.items():
        assert found[edge] == pytest.approx(effect, abs=1e-3), edge
    # every other measured edge, decoys included, carries nothing
    table = pd.read_parquet(attributed / "edges.parquet")
    planted = {f"{s}|{r}|{v}" for s, r, v in EDGES}
    rest = table[~(table["sender"] + "|" + table["receiver"] + "|" + table["via"]).isin(planted)]
    assert len(rest) > 50 and rest["effect"].abs().max() < 1e-3


def test_the_decoys_are_loud_but_inert(attributed: Path) -> None:
    summary = json.loads((attributed / "summary.json").read_text())
    ev = summary["evidence"]
    assert summary["mirror_scores"]["L0H1"] > 0.99 and summary["mirror_scores"]["L0H0"] > 0.99  # both mirror heads
    for decoy in ("L0H1", "L1H1"):
        assert abs(ev[decoy]["resample_ablation_margin_loss"]) < 1e-3, decoy
        assert abs(ev[decoy]["mean_ablation_margin_loss"]) < 1e-3, decoy
        assert not ev[decoy]["in_circuit"]
    # zero ablation shifts every answer by L1H1's constant: balanced accuracy falls to chance
    assert ev["L1H1"]["zero_ablation_balanced_accuracy"] == pytest.approx(0.5)
    assert ev["L1H1"]["resample_ablation_balanced_accuracy"] == 1.0
    assert any(s.startswith("Zero ablation misleads for L1H1") for s in summary["sentences"])
    # the essential mirror head loses the margin under both unbiased ablations (the old stratified mean
    # made this number negative)
    assert ev["L0H0"]["resample_ablation_margin_loss"] > 0.5 and ev["L0H0"]["mean_ablation_margin_loss"] > 0.5
    dla = pd.read_parquet(attributed / "dla.parquet")
    loud = dla[dla["component"] == "L1H1"]["value"]
    assert loud.abs().min() > 4.9  # the largest direct logit attribution of all, and it means nothing


def test_scrubbing_supports_the_planted_algorithm_and_its_control_fails(attributed: Path) -> None:
    circuit = json.loads((attributed / "circuit.json").read_text())
    result = {r["name"]: r for r in circuit["scrubbing"]}["pair_flags"]
    assert result["recovered"] == pytest.approx(1.0, abs=1e-3)
    assert result["control"] < result["constant"] and result["control"] < 0
    assert result["verdict"] == "supported"


def test_the_hypothesis_search_lands_on_the_planted_pair_flags(attributed: Path) -> None:
    circuit = json.loads((attributed / "circuit.json").read_text())
    after0 = circuit["discovered"]["boundaries"][0]
    assert after0["keep"] == {"bos": "none", "chars": "pair_match", "eos": "none"}
    assert after0["result"]["verdict"] == "supported" and after0["result"]["recovered"] == pytest.approx(1.0, abs=1e-3)
    tried = [s for s in after0["path"] if s["group"] == "chars"]
    assert tried[-1]["feature"] == "pair_match" and tried[-1]["accepted"]
    assert tried[0]["feature"] == "none" and all(s["bits"] <= tried[-1]["bits"] and not s["accepted"] for s in tried[:-1])
    summary = json.loads((attributed / "summary.json").read_text())
    assert summary["discovered"][0]["keep"]["chars"] == "pair_match"
    assert any("after layer 0, each character position carries only whether its mirrored pair matches (pair_match)"
               in s for s in circuit["sentences"])
