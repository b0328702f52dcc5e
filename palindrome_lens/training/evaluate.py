"""Score a saved classifier on a labelled split: one row per example with its logits and prediction.

Evaluation goes through the TransformerBridge that `load_classifier` returns (the model the analysis
stages use), with no attention mask passed: the PAD mask that lives with the model does the masking.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm import tqdm

from palindrome_lens.data.generate import SCHEMA as RAW_SCHEMA
from palindrome_lens.data.parquet import read_table
from palindrome_lens.data.tokens import load_tokens
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.classifier import PALINDROME, Classifier
from palindrome_lens.model.readout import class_logits_at_readout
from palindrome_lens.stage import tqdm_disabled

RAW_COLUMNS = {f.name: f.type for f in RAW_SCHEMA}
SCORE_SCHEMA = pa.schema(
    [
        ("logit_not_palindrome", pa.float32()),
        ("logit_palindrome", pa.float32()),
        ("logit_diff", pa.float32()),  # logit_palindrome - logit_not_palindrome
        ("prob_palindrome", pa.float32()),
        ("prediction", pa.bool_()),  # True = predicted palindrome
        ("correct", pa.bool_()),
        ("loss", pa.float32()),  # cross-entropy of the true label
    ]
)
PREDICTION_COLUMNS = {**RAW_COLUMNS, **{f.name: f.type for f in SCORE_SCHEMA}}


def read_raw(path: str | os.PathLike[str]) -> pa.Table:
    """A raw split (generate stage output) with every column the breakdowns need."""
    return read_table(path, RAW_COLUMNS)


def read_predictions(path: str | os.PathLike[str]) -> pa.Table:
    """data/eval/predictions.parquet, checked for every column consumers rely on."""
    return read_table(path, PREDICTION_COLUMNS)


def aligned_tokens(raw: pa.Table, raw_path: str | os.PathLike[str],
                   tokens_path: str | os.PathLike[str]) -> torch.Tensor:
    """The token rows of `tokens_path` in the order of `raw`, checked to belong to it."""
    tokens, labels, row_id = load_tokens(tokens_path)
    n = raw.num_rows
    if tokens.shape[0] != n or not torch.equal(torch.sort(row_id).values, torch.arange(n)):
        raise DataFileError(
            f"{tokens_path}: its row_id column does not cover the {n} rows of {raw_path} exactly once; "
            "rerun the tokenize stage"
        )
    order = torch.argsort(row_id)
    tokens, labels = tokens[order], labels[order]
    raw_labels = torch.from_numpy(raw.column("label").to_numpy(zero_copy_only=False).astype(np.int64))
    if not torch.equal(labels, raw_labels):
        raise DataFileError(f"{tokens_path}: labels differ from {raw_path}; rerun the tokenize stage")
    return tokens


@torch.inference_mode()
def class_logits(classifier: Classifier, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(n, 2) float32 class logits at the readout (BOS or EOS) on the CPU, batch by batch on the model's device."""
    if tokens.shape[1] != classifier.tokenizer.width:
        raise DataFileError(
            f"token rows are {tokens.shape[1]} wide but the model's tokenizer is {classifier.tokenizer.width} wide; "
            "the model was trained on other data (rerun dvc repro)"
        )
    device = classifier.device
    out = []
    batches = tokens.split(batch_size)
    for chunk in tqdm(batches, desc="evaluate", unit="batch", disable=tqdm_disabled()):
        chunk = chunk.to(device)
        out.append(class_logits_at_readout(classifier.model, classifier.model(chunk), chunk).float())
    return torch.cat(out).cpu() if out else torch.empty(0, 2)


def score_table(raw: pa.Table, logits: torch.Tensor) -> pa.Table:
    """`raw`'s columns plus SCORE_SCHEMA's, one row per example."""
    labels = torch.from_numpy(raw.column("label").to_numpy(zero_copy_only=False).astype(np.int64))
    prediction = logits.argmax(dim=-1) == PALINDROME
    loss = F.cross_entropy(logits, labels, reduction="none")
    scores = {
        "logit_not_palindrome": logits[:, 1 - PALINDROME],
        "logit_palindrome": logits[:, PALINDROME],
        "logit_diff": logits[:, PALINDROME] - logits[:, 1 - PALINDROME],
        "prob_palindrome": torch.softmax(logits, dim=-1)[:, PALINDROME],
        "prediction": prediction,
        "correct": prediction == labels.bool(),
        "loss": loss,
    }
    table = raw.select(list(RAW_COLUMNS))
    for field in SCORE_SCHEMA:
        table = table.append_column(field, pa.array(scores[field.name].numpy(), type=field.type))
    return table
