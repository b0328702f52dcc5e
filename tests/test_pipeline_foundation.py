"""The real `dvc repro` on the tiny profile: generate and tokenize, and key-by-key params tracking."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from palindrome_lens.data.tokenizer import Tokenizer
from tests.conftest import make_repo_copy, run, tiny_params


@pytest.mark.slow  # the whole tiny pipeline (shared fixture)
def test_generate_and_tokenize_outputs(tiny_pipeline) -> None:
    raw = {s: pq.read_table(tiny_pipeline / "data" / "raw" / f"{s}.parquet") for s in ("train", "val", "test")}
    params = tiny_params()["data"]
    assert [raw[s].num_rows for s in ("train", "val", "test")] == [params["n_train"], params["n_val"], params["n_test"]]
    assert raw["test"].column_names == ["text", "label", "length", "distance", "kind", "mismatch_pos"]
    tok = Tokenizer.from_json(tiny_pipeline / "data" / "tokens" / "tokenizer.json")
    assert tok.alphabet == params["alphabet"] and tok.max_length == max(params["lengths"])
    tokens = pq.read_table(tiny_pipeline / "data" / "tokens" / "test.parquet")
    texts = raw["test"].column("text").to_pylist()
    rows = tokens.column("row_id").to_pylist()
    decoded = tok.decode(tokens.column("tokens").to_pylist())
    assert decoded == [texts[r] for r in rows]
    assert tokens.column("label").to_pylist() == [raw["test"].column("label")[r].as_py() for r in rows]


@pytest.mark.slow  # dvc repro
def test_changing_a_tokenize_param_leaves_generate_up_to_date(tmp_path) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    run(["dvc", "repro", "tokenize"], repo)
    before = (repo / "data" / "raw" / "train.parquet").read_bytes()
    params = tiny_params()
    params["tokenize"]["add_eos"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], repo).stdout)
    assert "generate" not in status
    assert any("params.yaml" in json.dumps(change) for change in status.get("tokenize", []))
    run(["dvc", "repro", "tokenize"], repo)
    assert (repo / "data" / "raw" / "train.parquet").read_bytes() == before
    assert Tokenizer.from_json(repo / "data" / "tokens" / "tokenizer.json").add_eos is False


def test_generate_reruns_give_byte_identical_parquet(tmp_path) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    run(["python", "-m", "stages.generate"], repo)
    first = {p.name: p.read_bytes() for p in (repo / "data" / "raw").iterdir()}
    run(["python", "-m", "stages.generate"], repo)
    assert {p.name: p.read_bytes() for p in (repo / "data" / "raw").iterdir()} == first
