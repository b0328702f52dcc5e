"""`train` (read by train): the optimiser, schedule and budget."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.params.rules import Section, integer, number, rule


@dataclass(frozen=True)
class TrainParams(Section):
    name = "train"
    lr: float = rule(number(lo=0.0, hi=10.0, lo_open=True))
    weight_decay: float = rule(number(lo=0.0, hi=10.0))
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
    n_examples: int = rule(integer(lo=1))  # training budget in examples
    warmup_fraction: float = rule(number(lo=0.0, hi=1.0))
    grad_clip: float = rule(number(lo=0.0, lo_open=True))
    eval_every: int = rule(integer(lo=1))
