"""A leaner forward for training the TL-native module on unpadded batches.

TransformerLens's native forward does work that is a no-op for this model: `NativeAttention` always
builds a (pos, pos) block mask and applies it twice (`masked_fill` before and after the softmax) even
for bidirectional attention with no attention mask, projects Q, K and V with three small matmuls, and
`NativeModel` looks position embeddings up for a (batch, pos) grid of ids, so their backward scatters
batch x pos rows. On this model's tiny matrices those cost about 7% of a training step.

`lean_forward(model)` swaps in subclasses that skip them, for exactly the supported case (no mask or a
(batch, pos) padding mask, bidirectional, standard positions, no rotary, no GQA, no soft cap); anything
else goes to TL's own forward. The math is the same (fused QKV = the three projections side by side; positions
broadcast over the batch). Parameters, module names and the state dict are untouched, and the original
classes are restored on exit, so the saved and analysed model is the plain TL module. Equality of
outputs and gradients with TL's forward is tested.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.model_bridge.sources.native.model import NativeAttention, NativeModel
from transformer_lens.utilities.activation_functions import softcap_enabled


class LeanNativeAttention(NativeAttention):
    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                pattern_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, **kwargs
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if pattern_fn is not None or (attention_mask is not None and attention_mask.dim() != 2):
            return super().forward(hidden_states, attention_mask, position_ids, pattern_fn, **kwargs)
        batch, seq, _ = hidden_states.shape
        weight = torch.cat([self.q.weight, self.k.weight, self.v.weight])
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(hidden_states, weight, bias).view(batch, seq, 3, self.n_heads, self.d_head).permute(
            2, 0, 3, 1, 4
        )
        scores = torch.matmul(q, k.transpose(-2, -1)) / self.scale
        if attention_mask is None:
            pattern = torch.softmax(scores, dim=-1)
        else:  # a (batch, pos) padding mask, 1 = keep: as TL, rows with no key left get a zero pattern
            pad = ~attention_mask.bool()[:, None, None, :]
            pattern = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=-1).masked_fill(pad, 0.0)
        z = torch.matmul(pattern, v).transpose(1, 2).contiguous().view(batch, seq, -1)
        return self.o(z), pattern


class LeanNativeModel(NativeModel):
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        if position_ids is None and input_ids is not None:
            # (1, pos) broadcasts over the batch; TL's default expands to (batch, pos).
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        return super().forward(input_ids, attention_mask, position_ids, inputs_embeds, **kwargs)


def _lean_attention_ok(module: nn.Module) -> bool:
    return (
        type(module) is NativeAttention
        and not module.causal
        and module.rotary is None
        and module.kv_repeats == 1
        and not softcap_enabled(module.attn_scores_soft_cap)
    )


def _lean_model_ok(module: nn.Module) -> bool:
    return type(module) is NativeModel and module.pos is not None and module.rotary is None


@contextlib.contextmanager
def lean_forward(model: nn.Module) -> Iterator[int]:
    """Within the block, supported TL-native modules of `model` use the lean forwards; yields how many."""
    swaps = [(m, LeanNativeAttention, NativeAttention) for m in model.modules() if _lean_attention_ok(m)]
    swaps += [(m, LeanNativeModel, NativeModel) for m in model.modules() if _lean_model_ok(m)]
    for module, lean, _ in swaps:
        module.__class__ = lean
    try:
        yield len(swaps)
    finally:
        for module, _, original in swaps:
            module.__class__ = original
