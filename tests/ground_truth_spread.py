"""Hand-built classifiers whose layer 0 spreads the evidence over every position (test material; no tests here).

Strings of length 8 over `abcd`, tokens [BOS] c1..c8 [EOS], no LayerNorm, read at BOS. Residual stream
(d_model 64), one job per subspace:

    TOK 0-3      own letter (embedding)          POS 4-13    position one-hot (pos_embed)
    CONTENT 14-45 every letter of the string, 4 dims per character index (layer 0's eight heads)
    COUNT 46     how many mirrored pairs are broken (MLP 0)
    FLAGDEC 47   10 x "my own pair is broken" (MLP 0): the decoy
    AGG 48       the mean COUNT over the characters (L1H0 at BOS)
    LOGIT 49     what the unembedding reads       BOSD 50, EOSD 51: is-BOS, is-EOS
    FLAG0 52     pair 0's flag, read from character 1 (L1H1 at BOS, the flagcount variant only)

Layer 0: head k (k = 0..7) sends every position's attention to character k and copies its letter into
CONTENT[k], so after the attention every position holds the whole string; MLP 0 computes, at every
position, ReLU(CONTENT[k][a] - CONTENT[7-k][a]) summed over pairs k and letters a: exactly the number of
broken pairs, written to COUNT. After layer 0 each character position therefore carries the string's
*count* (and its whole content), never its own pair's flag in isolation.

The decoy: MLP 0 also writes 10 x its own pair's flag to FLAGDEC (gated by position), the loudest
string-dependent direction of the residual; nothing reads it. Ablating it changes nothing, and a scrub that
keeps only each position's own pair flag fails.

Layer 1: L1H0 at BOS attends evenly to the characters and copies COUNT into AGG; MLP 1 turns it into LOGIT:
- `label`: logit difference 2 - 4 min(AGG, 1): +2 for a palindrome, -2 otherwise. What the output needs
  from the character positions after layer 0 is whether the string is a palindrome (`label`).
- `count`: the parity of the count: +2 when an even number of pairs is broken, -2 when odd (wrong on every
  string with two broken pairs, by construction). What it needs is the count (`n_mismatches`): strings of the
  same label but another count flip its answer.
- `flagcount` (the joined-feature search's known answer): L1H1 at BOS attends to character 1 alone and copies its
  pair's flag (FLAGDEC / 10, read here, so no decoy) into FLAG0; MLP 1 gives the parity of AGG + FLAG0: +2 when
  the count plus pair 0's flag is even, -2 when odd. What it needs after layer 0 is each position's own pair flag
  *and* the count (`pair_match+n_mismatches`): neither alone keeps the answer, and `mismatch_set`, a single
  feature that determines both, is finer than the join. Only character 1 is read for its flag, so the second
  half needs the count alone (`n_mismatches`) and the first half the join.
"""

from __future__ import annotations

import torch
from ground_truth import empty_attention, one_hot_embeddings, to_state_dict

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.bridge import build_bridge
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import ModelParams

ALPHABET, LENGTH = "abcd", 8
D_MODEL, N_HEADS, D_HEAD, D_MLP = 64, 8, 4, 32
TOK, POS, CONTENT, COUNT, FLAGDEC, AGG, LOGIT, BOSD, EOSD, FLAG0 = 0, 4, 14, 46, 47, 48, 49, 50, 51, 52
SHARP = 20.0 * D_HEAD**0.5  # attention scores of 20 after TransformerLens divides by sqrt(d_head)
GATE = 2.0  # the decoy's position gate: a unit outside its pair's positions sits 2 below zero
PLANTED = {"label": "label", "count": "n_mismatches", "flagcount": "pair_match+n_mismatches"}  # the feature each variant's readout needs after layer 0
PARAMS = ModelParams(n_layers=2, d_model=D_MODEL, n_heads=N_HEADS, d_head=D_HEAD, d_mlp=D_MLP, act_fn="relu",
                     normalization="none", attn_only=False, n_ctx=None)
# MLP 1 as a function of AGG, sum of w * ReLU(AGG - j): the label's step, or the count's parity (+2/-2/+2/...)
READOUT = {"label": ((0.0, -4.0), (1.0, 4.0)),
           "count": ((0.0, -4.0), (1.0, 8.0), (2.0, -8.0), (3.0, 8.0)),
           "flagcount": ((0.0, -4.0), (1.0, 8.0), (2.0, -8.0), (3.0, 8.0), (4.0, -8.0))}


def _weights(tokenizer: Tokenizer, variant: str) -> dict[str, torch.Tensor]:
    n_letters, width, half = len(ALPHABET), tokenizer.width, LENGTH // 2
    w_e, w_pos = one_hot_embeddings(tokenizer, D_MODEL, TOK, POS, BOSD, EOSD)
    w = empty_attention(2, N_HEADS, D_MODEL, D_HEAD)
    for k in range(LENGTH):  # layer 0, head k: every query attends to character k and copies its letter
        w["W_Q"][0, k, POS:POS + width, 0] = SHARP
        w["W_K"][0, k, POS + k + 1, 0] = 1.0
        for a in range(n_letters):
            w["W_V"][0, k, TOK + a, a] = 1.0
            w["W_O"][0, k, a, CONTENT + n_letters * k + a] = 1.0
    w["W_Q"][1, 0, POS + 0, 0] = SHARP  # L1H0: from BOS, evenly over the characters; COUNT -> AGG
    w["W_K"][1, 0, POS + 1:POS + LENGTH + 1, 0] = 1.0
    w["W_V"][1, 0, COUNT, 0] = 1.0
    w["W_O"][1, 0, 0, AGG] = 1.0
    if variant == "flagcount":  # L1H1: from BOS to character 1 alone; its pair's flag -> FLAG0
        w["W_Q"][1, 1, POS + 0, 0] = SHARP
        w["W_K"][1, 1, POS + 1, 0] = 1.0
        w["W_V"][1, 1, FLAGDEC, 0] = 0.1
        w["W_O"][1, 1, 0, FLAG0] = 1.0
    w_in, b_in = torch.zeros(2, D_MODEL, D_MLP), torch.zeros(2, D_MLP)
    w_out = torch.zeros(2, D_MLP, D_MODEL)
    for k in range(half):
        for a in range(n_letters):
            unit = n_letters * k + a  # MLP 0: a broken pair k lights exactly one of its four units
            w_in[0, CONTENT + n_letters * k + a, unit] = 1.0
            w_in[0, CONTENT + n_letters * (LENGTH - 1 - k) + a, unit] = -1.0
            w_out[0, unit, COUNT] = 1.0
            decoy = 16 + unit  # the same comparison, open only at pair k's own two positions
            w_in[0, :, decoy] = w_in[0, :, unit]
            w_in[0, POS + k + 1, decoy] = GATE
            w_in[0, POS + LENGTH - k, decoy] = GATE
            b_in[0, decoy] = -GATE
            w_out[0, decoy, FLAGDEC] = 10.0
    for unit, (step, slope) in enumerate(READOUT[variant]):
        w_in[1, AGG, unit] = 1.0
        w_in[1, FLAG0, unit] = 1.0  # FLAG0 stays 0 except in the flagcount variant
        b_in[1, unit] = -step
        w_out[1, unit, LOGIT] = slope
    w_u = torch.zeros(D_MODEL, 2)
    w_u[LOGIT, 1] = 1.0
    b_u = torch.tensor([0.0, 2.0])
    return {"W_E": w_e, "W_pos": w_pos, **w, "W_in": w_in, "b_in": b_in, "W_out": w_out, "W_U": w_u, "b_U": b_u}


def spread_classifier(tokenizer: Tokenizer, variant: str) -> Classifier:
    """The hand-built `label`, `count` or `flagcount` model as the pipeline would save it."""
    if tokenizer.alphabet != ALPHABET or tokenizer.width != LENGTH + 2:
        raise ValueError(f"the spread models need alphabet {ALPHABET!r} and strings of length {LENGTH} with [EOS]")
    config = model_config(PARAMS, tokenizer, seed=0, lengths=[LENGTH])
    return Classifier(build_bridge(config, to_state_dict(_weights(tokenizer, variant))), tokenizer, config)
