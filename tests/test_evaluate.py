"""Evaluation: scoring a real tiny classifier, metric breakdowns, absent kinds, bad input files."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from palindrome_lens import load_classifier
from palindrome_lens.data.generate import SCHEMA, generate_splits
from palindrome_lens.data.parquet import write_table
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.data.tokens import tokenize_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import save_classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import validate
from palindrome_lens.training.evaluate import (
    PREDICTION_COLUMNS,
    aligned_tokens,
    class_logits,
    read_predictions,
    read_raw,
    score_table,
)
from palindrome_lens.training.metrics import bar_rows, confusion_labels, evaluation_metrics
from palindrome_lens.training.tracking import log_evaluation
from tests.conftest import ROOT, tiny_params


def raw_rows(rows: list[tuple[str, str, int | None]]) -> pa.Table:
    """A raw split from (text, kind, mismatch_pos); label/length/distance follow from the text."""
    texts = [r[0] for r in rows]
    distance = [sum(t[i] != t[-1 - i] for i in range(len(t) // 2)) for t in texts]
    return pa.table(
        {
            "text": texts,
            "label": [d == 0 for d in distance],
            "length": pa.array([len(t) for t in texts], pa.int32()),
            "distance": pa.array(distance, pa.int32()),
            "kind": [r[1] for r in rows],
            "mismatch_pos": pa.array([r[2] for r in rows], pa.int32()),
        },
        schema=SCHEMA,
    )


ROWS = [
    ("abba", "palindrome", None),
    ("abcba", "palindrome", None),
    ("abca", "near1", 1),
    ("abbc", "near1", 0),
    ("abcbb", "near1", 0),
    ("abcd", "near2", None),
    ("dcab", "random", None),
]


def logits_for(predict_palindrome: list[bool]) -> torch.Tensor:
    """Logits whose argmax is the given prediction, with a margin of 2."""
    return torch.tensor([[0.0, 2.0] if p else [2.0, 0.0] for p in predict_palindrome])


def test_scores_and_breakdowns() -> None:
    raw = raw_rows(ROWS)
    # Right on everything except "abca" (near1, mismatch_pos 1), called a palindrome.
    predicted = [True, True, True, False, False, False, False]
    table = score_table(raw, logits_for(predicted))
    assert table.column_names == list(PREDICTION_COLUMNS)
    assert table.column("text").to_pylist() == [r[0] for r in ROWS]
    assert table.column("prediction").to_pylist() == predicted
    assert table.column("correct").to_pylist() == [True, True, False, True, True, True, True]
    assert table.column("logit_diff").to_pylist() == [2.0, 2.0, 2.0, -2.0, -2.0, -2.0, -2.0]
    right, wrong = math.log(1 + math.exp(-2)), math.log(1 + math.exp(2))
    assert table.column("loss").to_pylist() == pytest.approx([right, right, wrong, right, right, right, right])
    assert table.column("prob_palindrome")[0].as_py() == pytest.approx(1 / (1 + math.exp(-2)))

    metrics = evaluation_metrics(table)
    assert metrics["n"] == 7 and metrics["accuracy"] == pytest.approx(6 / 7)
    assert metrics["loss"] == pytest.approx((6 * right + wrong) / 7)
    assert list(metrics["kind"]) == ["palindrome", "near1", "near2", "random"]
    assert metrics["kind"]["near1"] == {"n": 3, "accuracy": pytest.approx(2 / 3), "loss": pytest.approx((2 * right + wrong) / 3)}
    assert metrics["kind"]["palindrome"]["accuracy"] == 1.0
    assert set(metrics["distance"]) == {"0", "1", "2"} and metrics["distance"]["1"]["n"] == 3
    assert set(metrics["length"]) == {"4", "5"} and metrics["length"]["4"]["n"] == 5
    assert metrics["mismatch_pos"] == {
        "0": {"n": 2, "accuracy": 1.0, "loss": pytest.approx(right)},
        "1": {"n": 1, "accuracy": 0.0, "loss": pytest.approx(wrong)},
    }
    assert metrics["absent_kinds"] == []
    assert metrics["confusion"] == {"true_palindrome": 2, "false_palindrome": 1, "true_not_palindrome": 4,
                                    "false_not_palindrome": 0}

    actual, predicted = confusion_labels(table)
    assert len(actual) == len(predicted) == 7
    assert ("not palindrome", "palindrome") in zip(actual, predicted)
    plots = bar_rows(metrics)
    assert plots["accuracy_by_kind"][1] == {"kind": "near1", "accuracy": pytest.approx(2 / 3), "n": 3}
    assert [r["mismatch_pos"] for r in plots["accuracy_by_mismatch_pos"]] == ["0", "1"]
    assert [r["length"] for r in plots["accuracy_by_length"]] == ["4", "5"]


def test_a_split_missing_kinds_still_evaluates() -> None:
    raw = raw_rows([r for r in ROWS if r[1] in ("palindrome", "random")])
    table = score_table(raw, logits_for([True, True, False]))
    metrics = evaluation_metrics(table)
    assert metrics["absent_kinds"] == ["near1", "near2"]
    assert set(metrics["kind"]) == {"palindrome", "random"} and metrics["mismatch_pos"] == {}
    assert bar_rows(metrics)["accuracy_by_mismatch_pos"] == []
    empty = evaluation_metrics(score_table(raw.slice(0, 0), torch.empty(0, 2)))
    assert empty["n"] == 0 and empty["absent_kinds"] == ["palindrome", "near1", "near2", "random"]


def _eval_outputs_declared() -> list[str]:
    """The metrics and plot files dvc.yaml declares for evaluate, relative to data/eval/."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]
    paths = stage["metrics"] + [next(iter(plot)) for plot in stage["plots"]]
    return sorted(path.removeprefix("data/eval/") for path in paths)


def test_dvclive_writes_exactly_the_declared_metrics_and_plots(tmp_path) -> None:
    table = score_table(raw_rows(ROWS), logits_for([True, True, False, True, False, False, False]))
    metrics = evaluation_metrics(table)
    out = tmp_path / "eval"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "confusion.json").write_text("[]")  # an earlier layout: plots/ is replaced whole
    log_evaluation(out, table, metrics)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == _eval_outputs_declared()  # and no scratch folder is left behind
    assert (out / "metrics.json").read_text() == json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    confusion = json.loads((out / "plots" / "sklearn" / "confusion.json").read_text())
    assert confusion == [{"actual": a, "predicted": p} for a, p in zip(*confusion_labels(table))]
    assert {"actual": "not palindrome", "predicted": "palindrome"} in confusion
    for name, rows in bar_rows(metrics).items():
        assert json.loads((out / "plots" / "custom" / f"{name}.json").read_text()) == rows
    before = {name: (out / name).read_bytes() for name in written}
    log_evaluation(out, table, metrics)
    assert {name: (out / name).read_bytes() for name in written} == before


def test_files_with_wrong_columns_are_clear_errors(tmp_path) -> None:
    table = score_table(raw_rows(ROWS), logits_for([True] * 7))
    pq.write_table(table.drop_columns(["prob_palindrome"]), tmp_path / "predictions.parquet")
    with pytest.raises(DataFileError, match="predictions.parquet.*'prob_palindrome' is missing"):
        read_predictions(tmp_path / "predictions.parquet")
    pq.write_table(raw_rows(ROWS).drop_columns(["kind"]), tmp_path / "test.parquet")
    with pytest.raises(DataFileError, match="test.parquet.*'kind' is missing"):
        read_raw(tmp_path / "test.parquet")
    bad_type = raw_rows(ROWS).set_column(1, "label", pa.array(["yes"] * 7))
    pq.write_table(bad_type, tmp_path / "typed.parquet")
    with pytest.raises(DataFileError, match="'label' has type string"):
        read_raw(tmp_path / "typed.parquet")


def test_tokens_must_belong_to_the_raw_split(tmp_path) -> None:
    raw = raw_rows(ROWS)
    tokenizer = Tokenizer("abcd", 5, True)
    write_table(tokenize_table(raw, tokenizer), tmp_path / "tokens.parquet")
    assert torch.equal(aligned_tokens(raw, "raw", tmp_path / "tokens.parquet"), tokenizer.encode(raw["text"].to_pylist()))
    shuffled = tokenize_table(raw, tokenizer).take([3, 1, 0, 2, 6, 5, 4])
    write_table(shuffled, tmp_path / "shuffled.parquet")
    assert torch.equal(aligned_tokens(raw, "raw", tmp_path / "shuffled.parquet"), tokenizer.encode(raw["text"].to_pylist()))
    write_table(tokenize_table(raw.slice(0, 5), tokenizer), tmp_path / "short.parquet")
    with pytest.raises(DataFileError, match="short.parquet.*row_id"):
        aligned_tokens(raw, "raw", tmp_path / "short.parquet")
    flipped = raw.set_column(1, "label", pa.array([not v for v in raw["label"].to_pylist()]))
    write_table(tokenize_table(flipped, tokenizer), tmp_path / "flipped.parquet")
    with pytest.raises(DataFileError, match="labels differ"):
        aligned_tokens(raw, "raw", tmp_path / "flipped.parquet")


def test_evaluating_a_saved_model_matches_its_api(tmp_path) -> None:
    """Batched scoring through the bridge (padding, several lengths) equals Classifier.predict_proba."""
    params = validate(tiny_params())
    raw = generate_splits(params.data, params.seed)["test"]
    tokenizer = Tokenizer(params.data.alphabet, max(params.data.lengths), True)
    config = model_config(params.model, tokenizer, 0, list(params.data.lengths))
    save_classifier(wrap_native(new_native_model(config), config), tokenizer, config, tmp_path / "model")
    clf = load_classifier(tmp_path / "model")
    write_table(tokenize_table(raw, tokenizer), tmp_path / "tokens.parquet")
    logits = class_logits(clf, aligned_tokens(raw, "raw", tmp_path / "tokens.parquet"), batch_size=7)
    table = score_table(raw, logits)
    proba = clf.predict_proba(raw["text"].to_pylist())
    np.testing.assert_allclose(table["prob_palindrome"].to_numpy(), proba[:, 1], rtol=1e-5, atol=1e-6)
    assert table.num_rows == raw.num_rows
    with pytest.raises(DataFileError, match="wide"):
        class_logits(clf, torch.ones(3, tokenizer.width + 1, dtype=torch.int64), batch_size=4)
