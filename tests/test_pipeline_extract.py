"""End to end: `dvc repro extract` on the tiny profile (generate, tokenize, train, extract) in a temp copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from palindrome_lens.activations import load_cache, load_examples, load_manifest, verify_sources
from palindrome_lens.data.parquet import read_table
from palindrome_lens.hooks import full_hook_names
from palindrome_lens.model.classifier import load_classifier
from tests.conftest import make_repo_copy, run, tiny_params


def _digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_dvc_repro_extract_on_the_tiny_profile(tmp_path, monkeypatch) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    run(["dvc", "repro", "extract"], repo)
    out = repo / "data" / "activations"
    params = tiny_params()["extract"]

    manifest = load_manifest(out)
    clf = load_classifier(repo / "data" / "model")
    names = full_hook_names(params["hooks"], clf.config["n_layers"])
    assert sorted(manifest.hooks) == sorted(names) and manifest.dtype == params["dtype"]
    assert list(manifest.raw["data"]["sha256"]) == ["data/raw/test.parquet"]  # paths as the stage sees them
    monkeypatch.chdir(repo)
    verify_sources("data/activations", "data/model", ["data/raw/test.parquet"])

    examples = load_examples(out / "examples.parquet")
    test = read_table(repo / "data" / "raw" / "test.parquet").to_pandas()
    assert len(examples) == manifest.n_examples
    assert set(examples.loc[examples["role"].isna(), "text"]) <= set(test["text"])
    n_lengths = len(tiny_params()["data"]["lengths"])
    assert examples["pair_id"].nunique() == params["n_pairs"] * n_lengths

    # The trained model's activations, read from disk, equal a live run_with_cache on the same batches.
    texts = examples["text"].tolist()
    batch = params["batch_size"]
    for start in range(0, len(texts), batch):
        stop = min(start + batch, len(texts))
        cache = load_cache(out, clf, examples=range(start, stop))
        _, live = clf.model.run_with_cache(clf.encode(texts[start:stop]))
        for name in names:
            assert torch.equal(cache[name], live[name]), name
    cache = load_cache(out, clf)
    assert cache.decompose_resid().shape[1] == len(texts)
    assert cache.stack_head_results().shape[0] == clf.config["n_layers"] * clf.config["n_heads"]

    # Up to date for DVC, and a rerun writes the same bytes.
    assert "changed" not in run(["dvc", "status", "extract"], repo).stdout
    before = _digest(out)
    run(["dvc", "repro", "-f", "-s", "extract"], repo)
    assert _digest(out) == before


def test_extract_without_a_model_is_a_clear_error(repo_copy) -> None:
    proc = run(["python", "-m", "stages.extract"], repo_copy, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "data/model: model directory not found" in proc.stderr and "Traceback" not in proc.stderr
