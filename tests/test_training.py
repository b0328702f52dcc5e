"""The training loop on real tiny data: schedule, batches, a run that learns, determinism, dvclive files."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.parquet import write_table
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.data.tokens import tokenize_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import WEIGHTS, save_classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import Params, validate
from palindrome_lens.training.batches import index_batches, load_token_set, token_set
from palindrome_lens.training.lean_forward import lean_forward
from palindrome_lens.training.schedule import warmup_cosine, warmup_cosine_factor
from palindrome_lens.training.tracking import LiveLogger
from palindrome_lens.training.train import (
    TrainingError,
    evaluate_set,
    make_optimizer,
    n_steps,
    train_native,
)
from tests.conftest import tiny_params

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    """Tiny-profile params, tokenizer and token sets (train, val), generated in memory."""
    params = validate(tiny_params())
    splits = generate_splits(params.data, params.seed)
    tokenizer = Tokenizer(params.data.alphabet, max(params.data.lengths), params.tokenize.add_eos)

    def as_set(split: str):
        table = splits[split]
        tokens = tokenizer.encode(table.column("text").to_pylist())
        labels = torch.from_numpy(table.column("label").to_numpy(zero_copy_only=False).astype(np.int64))
        return token_set(tokens, labels, tokenizer.pad_id, CPU)

    return params, tokenizer, as_set("train"), as_set("val")


def fresh_model(params: Params, tokenizer: Tokenizer, seed: int):
    config = model_config(params.model, tokenizer, seed, list(params.data.lengths))
    return new_native_model(config), config


@pytest.mark.parametrize("padded", [False, True])
def test_lean_forward_equals_transformer_lens(tiny, padded: bool) -> None:
    """Training's lean forward gives TL's logits and gradients; TL's classes come back afterwards."""
    params, tokenizer, train, _ = tiny
    tokens = train.tokens[:64]
    if not padded:
        tokens = tokens[(tokens != tokenizer.pad_id).all(dim=1)]
    assert bool((tokens == tokenizer.pad_id).any()) == padded and len(tokens) > 8
    mask = tokens != tokenizer.pad_id if padded else None
    results = []
    for lean in (False, True):
        model, _ = fresh_model(params, tokenizer, 5)
        classes = [type(m) for m in model.modules()]
        with lean_forward(model) if lean else contextlib.nullcontext() as swapped:
            if lean:
                assert swapped == params.model.n_layers + 1
                assert type(model).__name__ == "LeanNativeModel"
            logits = model(tokens, attention_mask=mask)
            logits[:, 0].logsumexp(-1).sum().backward()
        assert [type(m) for m in model.modules()] == classes
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (tl_logits, tl_grads), (lean_logits, lean_grads) = results
    real = (tokens != tokenizer.pad_id)[..., None]
    torch.testing.assert_close(lean_logits * real, tl_logits * real, atol=1e-5, rtol=1e-5)
    assert tl_grads.keys() == lean_grads.keys()
    for name in tl_grads:
        torch.testing.assert_close(lean_grads[name], tl_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_warmup_then_cosine_decay() -> None:
    total, warmup = 100, 10
    factors = [warmup_cosine_factor(s, total, warmup) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[warmup - 1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:warmup], factors[1:warmup]))
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1 :]))
    assert factors[-1] < 0.01
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    scheduler = warmup_cosine(optimizer, total, 0.1)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.5 * f for f in factors])
    assert warmup_cosine_factor(0, 10, 0) == 1.0  # no warmup: start at the full lr


def test_index_batches_are_seeded_full_permutations() -> None:
    def draw(seed: int) -> list[list[int]]:
        return [b.tolist() for b in index_batches(10, 4, 5, torch.Generator().manual_seed(seed), CPU)]

    batches = draw(7)
    assert all(len(b) == 4 for b in batches)
    flat = sum(batches, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # whole epochs
    assert draw(7) == batches and draw(8) != batches


def test_weight_decay_only_on_matrices(tiny) -> None:
    params, tokenizer, _, _ = tiny
    model, _ = fresh_model(params, tokenizer, 0)
    decayed, plain = make_optimizer(model, 1e-3, 0.1).param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_n_steps_covers_the_budget(tiny) -> None:
    train = tiny[0].train
    assert n_steps(dataclasses.replace(train, n_examples=100, batch_size=32)) == 4
    assert n_steps(dataclasses.replace(train, n_examples=1, batch_size=32)) == 1


@pytest.mark.slow  # a whole tiny-profile training run: about a minute on 2 cores
def test_short_training_run_learns(tiny) -> None:
    params, tokenizer, train, val = tiny
    model, _ = fresh_model(params, tokenizer, params.seed)
    before = evaluate_set(model, val)
    summary = train_native(model, train, val, params.train, params.seed)
    after = evaluate_set(model, val)
    assert summary.steps == math.ceil(params.train.n_examples / params.train.batch_size)
    assert summary.val == after
    assert after.loss < before.loss - 0.2
    assert after.accuracy >= 0.8, f"balanced classes: chance is 0.5, got {after.accuracy}"
    assert summary.examples_per_s > 0 and summary.train_seconds > 0


def test_same_seed_same_weights_bytes(tiny, tmp_path) -> None:
    params, tokenizer, train, val = tiny
    short = dataclasses.replace(params.train, n_examples=1500)
    outputs = []
    for run, seed in enumerate((params.seed, params.seed, params.seed + 1)):
        model, config = fresh_model(params, tokenizer, seed)
        train_native(model, train, val, short, seed)
        save_classifier(wrap_native(model, config), tokenizer, config, tmp_path / f"run{run}")
        outputs.append((tmp_path / f"run{run}" / WEIGHTS).read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_diverged_loss_is_a_clear_error(tiny) -> None:
    params, tokenizer, train, val = tiny
    model, _ = fresh_model(params, tokenizer, 0)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="train.lr"):
        train_native(model, train, val, dataclasses.replace(params.train, n_examples=320), 0)


def test_dvclive_files(tiny, tmp_path, monkeypatch) -> None:
    params, tokenizer, train, val = tiny
    monkeypatch.chdir(tmp_path)
    model, _ = fresh_model(params, tokenizer, 0)
    budget = dataclasses.replace(params.train, n_examples=64 * 25, batch_size=64, eval_every=10)
    logger = LiveLogger("live")
    summary = train_native(model, train, val, budget, 0, logger)
    metrics = logger.finish(summary)
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == metrics
    assert metrics["step"] == 25 and metrics["n_examples"] == 1600
    # timings vary run to run, so they stay out of a DVC output that must be byte-identical
    assert set(metrics) == {"step", "n_examples", "train", "val"}
    assert set(metrics["val"]) == {"loss", "accuracy", "n"} and set(metrics["train"]) == {"loss", "accuracy"}
    assert metrics["val"]["accuracy"] == summary.val.accuracy
    plots = tmp_path / "live" / "plots" / "metrics"
    for name, steps in (("train/loss", [10, 20, 25]), ("train/accuracy", [10, 20, 25]),
                        ("val/accuracy", [10, 20, 25]), ("val/loss", [10, 20, 25])):
        with open(plots / f"{name}.tsv", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert list(rows[0]) == ["step", name.split("/")[1]], "no timestamp column: reruns give the same bytes"
        assert [int(r["step"]) for r in rows] == steps
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / "live" / "dvc.yaml").exists()


def test_token_file_that_does_not_fit_the_tokenizer(tiny, tmp_path) -> None:
    params, tokenizer, _, _ = tiny
    table = generate_splits(params.data, params.seed)["val"]
    write_table(tokenize_table(table, tokenizer), tmp_path / "val.parquet")
    assert len(load_token_set(tmp_path / "val.parquet", tokenizer, CPU)) == table.num_rows
    wider = Tokenizer(params.data.alphabet, tokenizer.max_length + 2, True)
    with pytest.raises(DataFileError, match="val.parquet.*wide"):
        load_token_set(tmp_path / "val.parquet", wider, CPU)
    smaller = Tokenizer(params.data.alphabet[:3], tokenizer.max_length, True)
    with pytest.raises(DataFileError, match="vocabulary"):
        load_token_set(tmp_path / "val.parquet", smaller, CPU)


def test_training_reads_the_class_where_the_set_says() -> None:
    """BOS sets pick position 0; an EOS set picks each row's EOS, wherever its length puts it."""
    from palindrome_lens.training.train import at_readout

    tokenizer = Tokenizer("ab", max_length=4, add_eos=True)
    tokens = tokenizer.encode(["ab", "abba", "aba"])
    logits = torch.arange(3 * tokens.shape[1] * 2, dtype=torch.float32).reshape(3, tokens.shape[1], 2)
    bos = token_set(tokens, torch.tensor([0, 1, 1]), tokenizer.pad_id, CPU)
    eos = token_set(tokens, torch.tensor([0, 1, 1]), tokenizer.pad_id, CPU, readout="eos")
    assert bos.readout is None and eos.readout.tolist() == [3, 5, 4]
    assert torch.equal(at_readout(logits, bos.readout), logits[:, 0])
    assert torch.equal(at_readout(logits, eos.readout), logits[torch.arange(3), torch.tensor([3, 5, 4])])
