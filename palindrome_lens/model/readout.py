"""Where the class is read: the position whose two logits are the classifier's output.

`bos` reads position 0 (every analysis of a bidirectional model so far); `eos` reads the [EOS] token
after the last character, the only position that sees the whole string under causal attention. The
readout lives with the model (`model.readout`), so every analysis finds it from the model alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.params.model import READOUTS


@dataclass(frozen=True)
class Readout:
    kind: str  # bos or eos
    pad_id: int

    def positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch,) the readout position of every row of (batch, pos) token ids."""
        if self.kind == "bos":
            return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        return (tokens != self.pad_id).sum(dim=-1).long() - 1  # [EOS] is the last real token


def install_readout(model: TransformerBridge, kind: str, pad_id: int) -> Readout:
    if kind not in READOUTS:
        raise ValueError(f"readout {kind!r} is not one of {', '.join(READOUTS)}")
    readout = Readout(kind, pad_id)
    model.readout = readout  # type: ignore[attr-defined]  # beside model.pad_mask
    return readout


def readout_of(model: TransformerBridge) -> Readout:
    """The model's readout (BOS for a bridge built without one)."""
    found = getattr(model, "readout", None)
    if isinstance(found, Readout):
        return found
    mask = getattr(model, "pad_mask", None)
    return Readout("bos", getattr(mask, "pad_id", 0))


def class_logits_at_readout(model: TransformerBridge, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(batch, 2) the class logits of (batch, pos, 2) logits at each row's readout position."""
    positions = readout_of(model).positions(tokens).to(logits.device)
    return logits[torch.arange(logits.shape[0], device=logits.device), positions]
