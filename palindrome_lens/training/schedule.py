"""Learning-rate schedule: linear warmup, then cosine decay to zero."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The multiplier of the base lr for optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_fraction: float) -> LambdaLR:
    """A scheduler stepped once per optimizer step; warmup covers `warmup_fraction` of the steps."""
    warmup_steps = round(total_steps * warmup_fraction)
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, total_steps, warmup_steps))
