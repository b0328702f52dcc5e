"""`model` (read by train): the shape of the TransformerLens model."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.errors import ParamsError
from palindrome_lens.params.rules import Section, boolean, choice, integer, optional, rule

ACT_FNS = ("relu", "gelu", "silu", "gelu_new")
NORMALIZATIONS = ("LN", "none")
ATTENTION_DIRS = ("bidirectional", "causal")
READOUTS = ("bos", "eos")


@dataclass(frozen=True)
class ModelParams(Section):
    name = "model"
    n_layers: int = rule(integer(lo=1, hi=48))
    d_model: int = rule(integer(lo=1, hi=4096))
    n_heads: int = rule(integer(lo=1, hi=64))
    d_head: int | None = rule(optional(integer(lo=1, hi=4096)))  # null: d_model / n_heads
    d_mlp: int = rule(integer(lo=1, hi=65536))
    act_fn: str = rule(choice(ACT_FNS))
    normalization: str = rule(choice(NORMALIZATIONS))
    attn_only: bool = rule(boolean())
    n_ctx: int | None = rule(optional(integer(lo=3, hi=4096)))  # null: the tokenizer's padded width
    attention_dir: str = rule(choice(ATTENTION_DIRS), default="bidirectional")
    readout: str = rule(choice(READOUTS), default="bos")  # where the class logits are read: BOS or EOS

    def check_together(self) -> None:
        if self.attention_dir == "causal" and self.readout == "bos":
            raise ParamsError(
                "model.readout: 'bos' is not allowed with model.attention_dir 'causal'; under causal attention "
                "BOS sees nothing but itself, so read the class at 'eos' (the only position that sees the whole string)"
            )
        if self.d_head is None and self.d_model % self.n_heads:
            raise ParamsError(
                f"model.d_model: {self.d_model} does not divide into model.n_heads {self.n_heads} heads; "
                "choose a multiple of n_heads or set model.d_head"
            )

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads
