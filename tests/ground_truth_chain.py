"""A hand-built classifier whose comparison takes two layers: layer 0 moves each mirror letter, layer 1 compares,
layer 2 reads (test material; no tests here).

Strings of length 8 over `abcd`, tokens [BOS] c1..c8 [EOS], no LayerNorm, read at BOS, 3 layers. Residual stream
as in tests/ground_truth.py (TOK own letter, MIR mirror letter, POS, FLAG, DEC, BOSD, LOGIT, EOSD), plus DECFLAG:

- L0H0@chars moves the mirror's letter into MIR (as the planted model's); L0H1 is its loud decoy (x10 into DEC);
- MLP 0 compares own and mirror letters and writes 10 x the flag into DECFLAG, which nothing reads: after layer 0
  the pair flag is *linearly present* and loud, yet causally inert;
- MLP 1 compares them again and writes the flag that counts into FLAG (layer 1's attention is empty);
- L2H0 at BOS attends evenly to the characters and writes -16 x the mean flag into LOGIT: logit difference 2 for a
  palindrome, 2 - 4 per broken pair otherwise.

So after layers 0 and 1 each position carries whether its pair matches (a scrub cannot tell the two apart: the
letters determine the flag); only after layer 1 is the flag written where the readout reads it. Swapping the
flag direction after layer 0 moves only the decoy and changes nothing; after layer 1 it moves FLAG too.
"""

from __future__ import annotations

import torch
from ground_truth import (
    ALPHABET,
    BOSD,
    DEC,
    EOSD,
    FLAG,
    LENGTH,
    LOGIT,
    MIR,
    POS,
    SHARP,
    TOK,
    empty_attention,
    one_hot_embeddings,
    to_state_dict,
)

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.bridge import build_bridge
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import ModelParams

D_MODEL, N_HEADS, D_HEAD, D_MLP = 32, 2, 16, 8
DECFLAG = 31
PARAMS = ModelParams(n_layers=3, d_model=D_MODEL, n_heads=N_HEADS, d_head=D_HEAD, d_mlp=D_MLP, act_fn="relu",
                     normalization="none", attn_only=False, n_ctx=None)


def _weights(tokenizer: Tokenizer) -> dict[str, torch.Tensor]:
    n_letters, width = len(ALPHABET), tokenizer.width
    w_e, w_pos = one_hot_embeddings(tokenizer, D_MODEL, TOK, POS, BOSD, EOSD)
    w = empty_attention(3, N_HEADS, D_MODEL, D_HEAD)
    for head in (0, 1):  # layer 0: both heads are mirror heads; L0H1 writes x10 into DEC, which nothing reads
        for p in range(width):
            w["W_Q"][0, head, POS + p, LENGTH + 1 - p if 1 <= p <= LENGTH else p] = SHARP
            w["W_K"][0, head, POS + p, p] = 1.0
        for k in range(n_letters):
            w["W_V"][0, head, TOK + k, k] = 1.0
            w["W_O"][0, head, k, (MIR if head == 0 else DEC) + k] = 1.0 if head == 0 else 10.0
    w["W_Q"][2, 0, POS + 0, 0] = SHARP  # L2H0: from BOS, evenly over the characters; FLAG -> LOGIT
    for p in range(1, LENGTH + 1):
        w["W_K"][2, 0, POS + p, 0] = 1.0
    w["W_V"][2, 0, FLAG, 0] = 1.0
    w["W_O"][2, 0, 0, LOGIT] = -2.0 * LENGTH
    w_in = torch.zeros(3, D_MODEL, D_MLP)
    w_out = torch.zeros(3, D_MLP, D_MODEL)
    for layer, target, scale in ((0, DECFLAG, 10.0), (1, FLAG, 1.0)):  # the decoy comparison, then the real one
        for k in range(n_letters):
            w_in[layer, TOK + k, k] = 1.0
            w_in[layer, MIR + k, k] = -1.0
            w_out[layer, k, target] = scale
    w_u = torch.zeros(D_MODEL, 2)
    w_u[LOGIT, 1] = 1.0
    b_u = torch.tensor([0.0, 2.0])
    return {"W_E": w_e, "W_pos": w_pos, **w, "W_in": w_in, "W_out": w_out, "W_U": w_u, "b_U": b_u}


def chain_classifier(tokenizer: Tokenizer) -> Classifier:
    """The two-layer-comparison model as the pipeline would save it."""
    if tokenizer.alphabet != ALPHABET or tokenizer.width != LENGTH + 2:
        raise ValueError(f"the chain model needs alphabet {ALPHABET!r} and strings of length {LENGTH} with [EOS]")
    config = model_config(PARAMS, tokenizer, seed=0, lengths=[LENGTH])
    return Classifier(build_bridge(config, to_state_dict(_weights(tokenizer))), tokenizer, config)
