"""The explain stage against a known answer: the hand-built model of tests/ground_truth.py (a mirror head, MLP 0
writing a mismatch flag, L1H0 at BOS averaging the flags, and loud inert decoys). The real stages run in a
temp copy (generate, tokenize, the planted model as data/model, extract, attribute, explain). Its program must
decide like the model on every string, follow its logit difference within a class, and align exactly: IIA 1
for every pair's variable at the residual stream and at MLP 0 (the planted writer), its controls near chance;
and the generated program.py must run on its own in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ground_truth import ALPHABET, LENGTH, run_planted

from tests.conftest import make_repo_copy, tiny_params

pytestmark = pytest.mark.slow  # five real stages on the hand-built model


def _params() -> dict:
    params = tiny_params()
    params["data"].update({"alphabet": ALPHABET, "lengths": [LENGTH], "n_train": 400, "n_val": 20, "n_test": 200})
    params["extract"].update({"n_per_group": 10, "n_pairs": 4})
    params["attribute"].update({"n_adversarial": 20, "search_budget": 1000})
    params["explain"].update({"n_fit": 400, "n_interchange": 300})
    return params


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo_copy(tmp_path_factory.mktemp("truth") / "repo", _params())
    run_planted(repo, ["extract", "attribute", "explain"])
    return repo / "data" / "explanation"


def test_the_program_decides_like_the_planted_model_everywhere(explained: Path) -> None:
    summary = json.loads((explained / "summary.json").read_text())
    family = summary["family"]  # from the hypothesis search: pair_match at the characters after layer 0
    assert family["name"] == "pair_comparison" and family["hypothesis"] == "discovered_after_layer_0"
    assert family["keep"]["chars"] == "pair_match" and family["source"] == "discovered"
    for part in ("test", "edits"):
        figures = summary["agreement"][part]
        assert figures["agreement"] == 1.0 and figures["model_errors"] == 0 and figures["program_errors"] == 0
    # within the non-palindromes the planted logit is 2 - 16 x (share of broken characters): the program follows it
    assert summary["agreement"]["test"]["by_class"]["not_palindrome"]["r2"] > 0.999
    assert summary["runs_program"] and summary["sentences"][0].startswith("The model runs this program.")


def test_every_pair_variable_aligns_exactly_and_its_control_does_not(explained: Path) -> None:
    iia = pd.DataFrame(json.loads((explained / "summary.json").read_text())["interchange"])
    aligned, control = iia[iia["kind"] == "aligned"], iia[iia["kind"] == "control"]
    assert set(aligned["node"]) == {"blocks.0.hook_resid_post", "0_mlp_out"}  # the residual stream and the writer
    assert len(aligned) == 2 * (LENGTH // 2) and (aligned["n_changed"] >= 20).all()
    assert (aligned["iia_changed"] == 1.0).all() and (aligned["iia_all"] == 1.0).all()
    assert (control["iia_changed"] <= 0.5).all() and len(control) == len(aligned)


def test_the_generated_program_runs_alone_and_gives_the_measured_numbers(explained: Path) -> None:
    table = pd.read_parquet(explained / "agreement.parquet")
    sample = table.iloc[:: max(1, len(table) // 40)]
    code = ("import json, sys, program; texts = json.load(sys.stdin); "
            "print(json.dumps([program.logit_diff(t) for t in texts]))")
    proc = subprocess.run([sys.executable, "-I", "-c", code.replace("import json, sys, program",
                                                                   "import json, sys; sys.path.insert(0, '.'); import program")],
                          cwd=explained, input=json.dumps(sample["text"].tolist()), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == pytest.approx(sample["program_logit_diff"].tolist(), abs=1e-9)
    palindrome = "abcddcba"
    cli = subprocess.run([sys.executable, "-I", "program.py", palindrome], cwd=explained, capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.startswith("palindrome (logit difference 2.0")
