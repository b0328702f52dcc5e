"""PAD masking that lives with the model.

TransformerLens patching and `run_with_hooks` pass no attention mask, so the mask is installed as
permanent hooks: a pre-hook on the embedding sees the token ids and records which keys are padding,
and a hook on every `attn.hook_pattern` zeroes attention to those keys and renormalises. A padded
string then gives the same activations at its real positions as the string alone, in every kind of
forward pass (plain call, run_with_cache, run_with_hooks, patching). The mask hook runs first
(prepend), so caches and patching hooks see the masked pattern.
"""

from __future__ import annotations

import torch
from transformer_lens.model_bridge import TransformerBridge


class PadMask:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.keep: torch.Tensor | None = None  # (batch, pos) float, 1 = real token

    def record(self, module: torch.nn.Module, args: tuple) -> None:
        tokens = args[0] if args else None
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.int64, torch.int32):
            self.keep = None
            return
        keep = tokens != self.pad_id
        self.keep = None if bool(keep.all()) else keep.to(torch.float32)

    def apply(self, pattern: torch.Tensor, hook: object) -> torch.Tensor | None:
        if self.keep is None or self.keep.shape[0] != pattern.shape[0]:
            return None
        masked = pattern * self.keep.to(pattern.dtype)[:, None, None, :]
        return masked / masked.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(pattern.dtype).tiny)


def install_pad_mask(model: TransformerBridge, pad_id: int) -> PadMask:
    mask = PadMask(pad_id)
    model.embed.register_forward_pre_hook(mask.record)
    for block in model.blocks:
        block.attn.hook_pattern.add_hook(mask.apply, is_permanent=True, prepend=True)
    model.pad_mask = mask  # type: ignore[attr-defined]  # keeps it discoverable on the model
    return mask
