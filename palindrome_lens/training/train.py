"""The training loop: AdamW + warmup/cosine + gradient clipping on the plain TL-native module.

The native module has no hooks, so it trains at close to plain-PyTorch speed; the saved and analysed
model is the TransformerBridge over the same weights. PAD keys are masked with `attention_mask`, which
matches the bridge's permanent `hook_pattern` mask exactly. Losses and accuracies are accumulated on
the device and read back only every `log_every` steps, so CUDA is not synchronised on every step.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import TrainParams
from palindrome_lens.stage import tqdm_disabled
from palindrome_lens.training.batches import TokenSet, index_batches
from palindrome_lens.training.lean_forward import lean_forward
from palindrome_lens.training.schedule import warmup_cosine

BOS = 0  # where the class logits are read unless a set says otherwise (TokenSet.readout)
LOG_EVERY = 10  # steps per logged train-loss point and progress-bar refresh


class TrainingError(PalindromeLensError):
    """Training went wrong in a way params can fix (e.g. the loss diverged)."""


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    n: int


@dataclass(frozen=True)
class TrainSummary:
    steps: int
    n_examples: int
    train_loss: float  # mean over the last logged window
    train_accuracy: float
    val: EvalResult
    train_seconds: float  # optimisation only, validation passes excluded
    eval_seconds: float

    @property
    def examples_per_s(self) -> float:
        return self.n_examples / self.train_seconds if self.train_seconds > 0 else 0.0


class TrainLogger(Protocol):
    def log_train(self, step: int, loss: float, accuracy: float) -> None: ...

    def log_val(self, step: int, result: EvalResult) -> None: ...


def n_steps(params: TrainParams) -> int:
    """Optimizer steps for the budget: every batch is full, so at least n_examples are seen."""
    return max(1, math.ceil(params.n_examples / params.batch_size))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (embeddings and projections), not on biases or LayerNorm.

    The fused implementation exists for CPU and CUDA and is the fastest on both for many small tensors.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def at_readout(logits: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """(batch, 2) class logits: at BOS (positions None), or at each row's readout position."""
    if positions is None:
        return logits[:, BOS]
    return logits[torch.arange(logits.shape[0], device=logits.device), positions]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, labels: torch.Tensor,
               mask: torch.Tensor | None, grad_clip: float, positions: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch; returns (loss, n_correct) as detached device tensors (no sync)."""
    logits = at_readout(model(tokens, attention_mask=mask), positions)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    return loss.detach(), (logits.detach().argmax(dim=-1) == labels).sum()


@torch.inference_mode()
def evaluate_set(model: nn.Module, data: TokenSet, batch_size: int = 4096) -> EvalResult:
    """Mean loss and accuracy of `model` (native or bridge-like, called as model(tokens, attention_mask))."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=data.tokens.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.tokens.device)
    for start in range(0, len(data), batch_size):
        rows = slice(start, start + batch_size)
        tokens, labels = data.tokens[rows], data.labels[rows]
        positions = None if data.readout is None else data.readout[rows]
        logits = at_readout(model(tokens, attention_mask=data.mask(tokens)), positions).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(dim=-1) == labels).sum()
    model.train(was_training)
    return EvalResult(loss=loss_sum.item() / len(data), accuracy=correct.item() / len(data), n=len(data))


@contextlib.contextmanager
def training_mode(model: nn.Module) -> Iterator[None]:
    """What every training step runs under, undone on exit: the lean forward (lean_forward.py) and, on CUDA,
    deterministic kernels (the embedding backward and cuBLAS workspace). The CPU kernels used here are
    deterministic already, and torch's deterministic mode slows them by about 4%, so it stays off there."""
    on_cuda = any(p.is_cuda for p in model.parameters())
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if on_cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with lean_forward(model):
            yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def train_native(model: nn.Module, train: TokenSet, val: TokenSet, params: TrainParams, seed: int,
                 logger: TrainLogger | None = None, desc: str = "train") -> TrainSummary:
    """Train `model` in place on `train` (same device), validating on `val` every `params.eval_every` steps.

    Same model init, data, params and seed -> the same weights, bit for bit (on one device type).
    """
    device = train.tokens.device
    steps = n_steps(params)
    optimizer = make_optimizer(model, params.lr, params.weight_decay)
    scheduler = warmup_cosine(optimizer, steps, params.warmup_fraction)
    generator = torch.Generator().manual_seed(seed)
    window_loss = torch.zeros((), device=device)
    window_correct = torch.zeros((), dtype=torch.int64, device=device)
    window_steps, train_loss, train_accuracy = 0, float("nan"), float("nan")
    val_result = EvalResult(float("nan"), float("nan"), len(val))
    train_seconds = eval_seconds = 0.0
    model.train()
    bar = tqdm(total=steps * params.batch_size, unit="ex", unit_scale=True, desc=desc, disable=tqdm_disabled())
    with training_mode(model), bar:
        started = time.perf_counter()
        for step, index in enumerate(index_batches(len(train), params.batch_size, steps, generator, device), 1):
            tokens, labels = train.tokens[index], train.labels[index]
            positions = None if train.readout is None else train.readout[index]
            loss, correct = train_step(model, optimizer, tokens, labels, train.mask(tokens), params.grad_clip,
                                       positions)
            scheduler.step()
            window_loss += loss
            window_correct += correct
            window_steps += 1
            bar.update(params.batch_size)
            last = step == steps
            if step % LOG_EVERY == 0 or last:
                train_loss = window_loss.item() / window_steps
                if not math.isfinite(train_loss):
                    raise TrainingError(
                        f"the training loss is {train_loss} at step {step}; lower train.lr or train.grad_clip"
                    )
                train_accuracy = window_correct.item() / (window_steps * params.batch_size)
                window_loss.zero_()
                window_correct.zero_()
                window_steps = 0
                if logger is not None:
                    logger.log_train(step, train_loss, train_accuracy)
            if step % params.eval_every == 0 or last:
                train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                val_result = evaluate_set(model, val)
                eval_seconds += time.perf_counter() - started
                if logger is not None:
                    logger.log_val(step, val_result)
                started = time.perf_counter()
            if step % LOG_EVERY == 0 or last:
                bar.set_postfix(loss=f"{train_loss:.4f}", acc=f"{train_accuracy:.4f}",
                                val_acc=f"{val_result.accuracy:.4f}", refresh=False)
        train_seconds += time.perf_counter() - started
    model.eval()
    return TrainSummary(
        steps=steps,
        n_examples=steps * params.batch_size,
        train_loss=train_loss,
        train_accuracy=train_accuracy,
        val=val_result,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
    )
