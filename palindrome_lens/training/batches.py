"""Token sets on the training device and a seeded stream of shuffled mini-batch indices."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.data.tokens import load_tokens
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.readout import Readout


@dataclass(frozen=True)
class TokenSet:
    """Token ids (n, width) and labels (n,) on one device. `padded` says whether any PAD occurs, so a
    batch from a one-length set can skip the attention mask (same result, less work). `readout` is each
    row's readout position, or None when the class is read at BOS (position 0 for every row)."""

    tokens: torch.Tensor
    labels: torch.Tensor
    pad_id: int
    padded: bool
    readout: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """The attention mask for a batch of this set (True = real token), or None if there is no PAD."""
        return tokens != self.pad_id if self.padded else None


def load_token_set(path: str | os.PathLike[str], tokenizer: Tokenizer, device: torch.device,
                   readout: str = "bos") -> TokenSet:
    """A token table (tokenize stage output) on `device`, checked against the tokenizer it must match."""
    tokens, labels, _ = load_tokens(path)
    if tokens.shape[0] == 0:
        raise DataFileError(f"{path}: no rows; rerun the generate and tokenize stages")
    if tokens.shape[1] != tokenizer.width:
        raise DataFileError(
            f"{path}: rows are {tokens.shape[1]} tokens wide but the tokenizer's width is {tokenizer.width}; "
            "rerun the tokenize stage"
        )
    if int(tokens.min()) < 0 or int(tokens.max()) >= tokenizer.vocab_size:
        raise DataFileError(f"{path}: token ids fall outside the vocabulary of {tokenizer.vocab_size}")
    return token_set(tokens, labels, tokenizer.pad_id, device, readout)


def token_set(tokens: torch.Tensor, labels: torch.Tensor, pad_id: int, device: torch.device,
              readout: str = "bos") -> TokenSet:
    padded = bool((tokens == pad_id).any())
    positions = None if readout == "bos" else Readout(readout, pad_id).positions(tokens).to(device)
    return TokenSet(tokens.to(device), labels.to(device), pad_id, padded, positions)


def index_batches(n: int, batch_size: int, n_batches: int, generator: torch.Generator,
                  device: torch.device) -> Iterator[torch.Tensor]:
    """`n_batches` full batches of row indices from back-to-back seeded permutations of range(n).

    A batch may span two epochs, so every batch has `batch_size` rows even when n is small.
    """
    buffer = torch.empty(0, dtype=torch.int64, device=device)
    for _ in range(n_batches):
        while buffer.shape[0] < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator).to(device)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]
