"""End to end: `dvc repro attribute` on the tiny profile in a temp copy of the project (generate, tokenize,
train, extract, attribute), then determinism of the stage and that its params rerun only it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import commit_all, make_repo_copy, run, tiny_params


def _digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_dvc_repro_attribute_on_the_tiny_profile(tmp_path: Path) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    run(["dvc", "repro", "attribute"], repo)
    out = repo / "data" / "attribution"
    params = tiny_params()["attribute"]

    summary = json.loads((out / "summary.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == summary["files"]
    assert summary["dla_max_abs_error"] < 1e-4
    assert summary["patching"]["full_resid_pre_recovery_min"] == pytest.approx(1.0, abs=1e-4)
    circuit = json.loads((out / "circuit.json").read_text())
    assert summary["circuit_nodes"] == [n["name"] for n in circuit["nodes"] if n["role"] == "circuit"]
    assert circuit["search"]["target"] == params["faithfulness_target"]
    assert summary["adversarial"]["n_palindromes"] == params["n_adversarial"]
    assert summary["sentences"] == circuit["sentences"] and len(summary["sentences"]) >= 2
    dla = pd.read_parquet(out / "dla.parquet")
    examples = pd.read_parquet(repo / "data" / "activations" / "examples.parquet")
    assert dla["example_id"].nunique() == len(examples)
    totals = dla.groupby("example_id")["value"].sum()
    assert (totals - dla.groupby("example_id")["logit_diff"].first()).abs().max() < 1e-4

    # Same inputs, same bytes: force the stage to run again.
    before = _digest(out)
    commit_all(repo, "tiny results")
    run(["dvc", "repro", "--force", "--single-item", "attribute"], repo)
    assert _digest(out) == before
    assert "up to date" in run(["dvc", "status", "--with-deps", "attribute"], repo).stdout

    # An attribute param reruns attribute alone.
    changed = tiny_params()
    changed["attribute"]["faithfulness_target"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    status = run(["dvc", "status", "--json", "--with-deps", "attribute"], repo).stdout
    assert set(json.loads(status)) == {"attribute"}
    run(["dvc", "repro", "attribute"], repo)
    assert json.loads((out / "circuit.json").read_text())["search"]["target"] == 0.5
