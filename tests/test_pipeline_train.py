"""The real `dvc repro evaluate` on the tiny profile in a temp copy: outputs, dvc metrics/plots, reruns."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

from palindrome_lens import load_classifier
from palindrome_lens.training.evaluate import PREDICTION_COLUMNS
from tests.conftest import make_repo_copy, run, tiny_params

pytestmark = pytest.mark.slow  # dvc repro train and evaluate

TRAIN_PLOTS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")
EVAL_PLOTS = ("sklearn/confusion", "custom/accuracy_by_kind", "custom/accuracy_by_length", "custom/accuracy_by_mismatch_pos")


def test_repro_train_and_evaluate(tmp_path) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    for stage, missing in (("train", "data/tokens/tokenizer.json"), ("evaluate", "data/model")):
        proc = run(["python", "-m", f"stages.{stage}"], repo, check=False)
        assert proc.returncode == 2 and missing in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    run(["dvc", "repro", "evaluate"], repo)
    params = tiny_params()

    model = repo / "data" / "model"
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    clf = load_classifier(model)
    assert clf.config["n_layers"] == params["model"]["n_layers"] and clf.lengths == params["data"]["lengths"]

    train_metrics = json.loads((repo / "data" / "train" / "metrics.json").read_text())
    steps = -(-params["train"]["n_examples"] // params["train"]["batch_size"])
    assert train_metrics["step"] == steps and train_metrics["n_examples"] == steps * params["train"]["batch_size"]
    for name in TRAIN_PLOTS:
        with open(repo / "data" / "train" / "plots" / "metrics" / f"{name}.tsv", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert int(rows[-1]["step"]) == steps

    eval_dir = repo / "data" / "eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["n"] == params["data"]["n_test"]
    assert metrics["accuracy"] >= 0.75, f"the tiny model should learn well above chance: {metrics['accuracy']}"
    assert set(metrics["kind"]) == {"palindrome", "near1", "near2", "random"} and metrics["absent_kinds"] == []
    assert set(metrics["length"]) == {str(n) for n in params["data"]["lengths"]}
    assert set(metrics["mismatch_pos"]) == {"0", "1", "2"}  # pairs of lengths 5 and 6
    predictions = pq.read_table(eval_dir / "predictions.parquet")
    assert predictions.num_rows == params["data"]["n_test"]
    assert predictions.column_names == list(PREDICTION_COLUMNS)
    raw = pq.read_table(repo / "data" / "raw" / "test.parquet")
    assert predictions.column("text").to_pylist() == raw.column("text").to_pylist()
    assert sum(predictions.column("correct").to_pylist()) == round(metrics["accuracy"] * metrics["n"])
    assert clf.predict(raw.column("text").to_pylist()[:50]).tolist() == predictions.column("prediction").to_pylist()[:50]

    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    files = shown[""]["data"]
    assert files["data/eval/metrics.json"]["data"]["kind"]["near1"]["accuracy"] == metrics["kind"]["near1"]["accuracy"]
    assert files["data/train/metrics.json"]["data"]["val"]["accuracy"] == train_metrics["val"]["accuracy"]
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)["data"]
    for name in TRAIN_PLOTS:
        assert f"data/train/plots/metrics/{name}.tsv" in plots
    for name in EVAL_PLOTS:
        assert f"data/eval/plots/{name}.json" in plots
    assert json.loads(run(["dvc", "status", "evaluate", "--json"], repo).stdout) == {}

    # Same params -> byte-identical model and curves.
    before = {p: (repo / p).read_bytes() for p in ("data/model/model.safetensors", "data/model/config.json",
                                                   "data/train/plots/metrics/train/loss.tsv")}
    run(["dvc", "repro", "--force", "--single-item", "train"], repo)
    assert {p: (repo / p).read_bytes() for p in before} == before
    assert json.loads(run(["dvc", "status", "evaluate", "--json"], repo).stdout) == {}
