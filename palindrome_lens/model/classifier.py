"""The public API: `load_classifier("data/model")` -> `.predict(texts)`, `.predict_proba(texts)`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.atomic import atomic_dir
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError, TokenizerError
from palindrome_lens.model.bridge import build_bridge, load_weights, save_weights
from palindrome_lens.model.config import load_config, save_config
from palindrome_lens.model.readout import class_logits_at_readout

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
PALINDROME = 1  # index of the "palindrome" logit


@dataclass
class Classifier:
    """A trained model with its tokenizer. `model` is the TransformerBridge; the class logits are read at its
    readout position (BOS, or EOS for a causal model; `model.readout`)."""

    model: TransformerBridge
    tokenizer: Tokenizer
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def lengths(self) -> list[int]:
        return list(self.config.get("lengths", []))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TokenizerError("pass a list of strings, not a single string")
        texts = list(texts)
        tokens = self.tokenizer.encode(texts)
        if self.lengths:
            for text in texts:
                if len(text) not in self.lengths:
                    raise TokenizerError(
                        f"{text!r} has length {len(text)}; this model was trained on lengths {self.lengths}"
                    )
        return tokens

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], batch_size: int = 4096) -> torch.Tensor:
        """(n, 2) class logits at the readout position, on the CPU."""
        tokens = self.encode(texts)
        if len(tokens) == 0:  # TL's forward cannot take an empty batch
            return torch.empty(0, 2)
        out = []
        for chunk in tokens.split(batch_size):
            chunk = chunk.to(self.device)
            out.append(class_logits_at_readout(self.model, self.model(chunk), chunk).float().cpu())
        return torch.cat(out)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 2) probabilities: column 1 is P(palindrome)."""
        return torch.softmax(self.logits(texts), dim=-1).numpy()

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) bool: True = palindrome."""
        return (self.logits(texts).argmax(dim=-1) == PALINDROME).numpy()


def save_classifier(bridge: TransformerBridge, tokenizer: Tokenizer, config: dict[str, Any],
                    directory: str | os.PathLike[str]) -> None:
    """Weights, config and tokenizer together, atomically (the whole directory appears at once)."""
    with atomic_dir(directory) as tmp:
        save_weights(bridge, tmp / WEIGHTS)
        save_config(config, tmp / CONFIG)
        tokenizer.to_json(tmp / TOKENIZER)


def load_classifier(directory: str | os.PathLike[str], device: str | torch.device | None = None) -> Classifier:
    """Load a saved model directory (works from any working directory given its path)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFileError(f"{directory}: model directory not found")
    config = load_config(directory / CONFIG)
    tokenizer = Tokenizer.from_json(directory / TOKENIZER)
    if tokenizer.vocab_size != config["d_vocab"]:
        raise DataFileError(
            f"{directory / TOKENIZER}: vocabulary has {tokenizer.vocab_size} tokens but {directory / CONFIG} "
            f"says d_vocab={config['d_vocab']}; the tokenizer does not belong to this model"
        )
    if tokenizer.width > config["n_ctx"]:
        raise DataFileError(
            f"{directory / TOKENIZER}: width {tokenizer.width} exceeds the model's n_ctx {config['n_ctx']}"
        )
    if tokenizer.pad_id != config["pad_id"]:
        raise DataFileError(f"{directory / TOKENIZER}: pad_id differs from {directory / CONFIG}")
    state = load_weights(directory / WEIGHTS)
    bridge = build_bridge(config, state, device=device, source=str(directory / WEIGHTS))
    return Classifier(bridge, tokenizer, config)
