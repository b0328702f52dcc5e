"""The string-level family: the model computes the answer at every character position in layer 0 (each position's
attention spreads over the whole string and MLP 0 reads the average), so the program is layer 0 itself, read from
the model, and a small readout fitted to the model's logits.

Read (exact: in layer 0 a query, key or value depends only on the token and its position, LayerNorm included), as
factors rather than expanded tables, so the program holds fewer numbers than the model:
- the residual stream before layer 0 as a character part plus a position part (it is their sum: checked);
- layer 0's LayerNorm, and per head W_Q, b_Q, W_K, b_K (divided by the attention scale), W_V, b_V and W_O: a
  (position, character)'s query, key and value follow from its residual stream (the tables `expanded` gives);
- [BOS]'s and [EOS]'s key and value as the model computes them (one each per head), b_O, MLP 0's LayerNorm and W_in;
- MLP 0's W_out and b_out read through the `dims` readout directions (only that projection is used);
- the readout directions: the difference of the class means of the string's mean layer-0 output at the character
  positions (what separates palindromes from the rest there), then its principal directions orthogonal to it, over
  the fit strings (a summary of the program's own layer-0 output: no logits).
Fitted: the gate and the two quadratics of readout.py, in the `dims` projected features.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import attn_scale
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import AnalysisError
from palindrome_lens.explanation.constants import rounded
from palindrome_lens.explanation.emulate import alphabet_codes
from palindrome_lens.explanation.readout import quadratic_terms
from palindrome_lens.explanation.tables import run_capturing

ACTIVATIONS = ("relu", "gelu", "gelu_new")  # what the program's standard-library MLP implements
CHECK_STRINGS = 256  # fit strings on which the read layer 0 must reproduce blocks.0.hook_resid_post
CHECK_TOLERANCE = 1e-3  # relative to the residual stream's scale (float32 model, float64 program)


LayerNormWeights = tuple[np.ndarray, np.ndarray, float]  # (weight, bias, eps)


@dataclass
class SpreadTables:
    """Layer 0 for one string length, read from the model as factors. Token positions: 0 [BOS], 1..L characters,
    L+1 [EOS]."""

    length: int
    char_embed: np.ndarray  # (A, d_model) the character part of the residual stream entering layer 0
    pos_embed: np.ndarray  # (L, d_model) its position part at the character positions
    ln1: LayerNormWeights | None  # None without LayerNorm
    w_q: np.ndarray  # (H, d_model, d_head)
    b_q: np.ndarray  # (H, d_head)
    w_k: np.ndarray  # (H, d_model, d_head) / scale
    b_k: np.ndarray  # (H, d_head) / scale
    w_v: np.ndarray  # (H, d_model, d_head)
    b_v: np.ndarray  # (H, d_head)
    w_o: np.ndarray  # (H, d_head, d_model)
    special_key: dict[str, np.ndarray]  # "bos"/"eos" -> (H, d_head) / scale
    special_value: dict[str, np.ndarray]  # "bos"/"eos" -> (H, d_model)
    b_o: np.ndarray  # (d_model,)
    ln2: LayerNormWeights | None
    w_in: np.ndarray  # (d_model, d_mlp)
    b_in: np.ndarray  # (d_mlp,)
    w_out: np.ndarray  # (d_mlp, d_model)
    b_out: np.ndarray  # (d_model,)
    act_fn: str
    causal: bool


def layer_norm(x: np.ndarray, ln: LayerNormWeights | None) -> np.ndarray:
    if ln is None:
        return x
    w, b, eps = ln
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps) * w + b


def expanded(t: SpreadTables) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(query (H, L, A, d_head), key / scale (H, L, A, d_head), value through W_O (H, L, A, d_model), the residual
    stream entering layer 0 (L, A, d_model)) at every (character position, character): what the factors compute."""
    embed = t.pos_embed[:, None, :] + t.char_embed[None, :, :]
    normed = layer_norm(embed, t.ln1)
    query = np.einsum("lam,hmd->hlad", normed, t.w_q) + t.b_q[:, None, None, :]
    key = np.einsum("lam,hmd->hlad", normed, t.w_k) + t.b_k[:, None, None, :]
    value = np.einsum("hlad,hdm->hlam", np.einsum("lam,hmd->hlad", normed, t.w_v) + t.b_v[:, None, None, :], t.w_o)
    return query, key, value, embed


def _state(model: TransformerBridge) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy().astype(np.float64) for k, v in model.state_dict().items()
            if k.startswith("blocks.0.")}


def _weights(model: TransformerBridge, name: str) -> np.ndarray:
    return getattr(model, name).detach()[0].double().cpu().numpy()


def read_spread(model: TransformerBridge, tokenizer: Tokenizer, length: int, batch_size: int) -> SpreadTables:
    """Layer 0's factors for strings of `length` (strings of one repeated character give every (position, char))."""
    cfg = model.cfg
    if cfg.act_fn not in ACTIVATIONS:
        raise AnalysisError(f"the string-level template implements {ACTIVATIONS}, not act_fn {cfg.act_fn!r}")
    alphabet = tokenizer.alphabet
    tokens = tokenizer.encode([c * length for c in alphabet])
    names = ["blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.hook_resid_pre"]
    acts: dict[str, torch.Tensor] = {}
    run_capturing(model, tokens, names, batch_size, lambda rows, a: acts.update({k: v.cpu() for k, v in a.items()}))
    k, v, pre = (acts[n].double().numpy() for n in names)  # (A, T, H, d) and (A, T, d_model)
    w_o = _weights(model, "W_O")  # (H, d_head, d_model)
    scale = attn_scale(model, 0)
    chars = slice(1, length + 1)
    # the residual stream entering layer 0 is a character part plus a position part: character 0's string gives
    # the positions, every string's first character the characters (less character 0's, counted in the positions)
    pos_embed = pre[0, chars]
    char_embed = pre[:, 1] - pre[0, 1]
    additive = np.abs(pos_embed[None] + char_embed[:, None] - pre[:, chars]).max()
    if additive > CHECK_TOLERANCE * max(1.0, float(np.abs(pre).max())):
        raise AnalysisError(f"the residual stream entering layer 0 is not a character part plus a position part "
                            f"(off by {additive:.3g}); the string-level template assumes it is")
    specials = {"bos": 0, **({"eos": length + 1} if tokenizer.add_eos else {})}
    state = _state(model)
    eps = float(getattr(cfg, "eps", 1e-5))

    def ln(name: str) -> LayerNormWeights | None:
        return (state[f"{name}.weight"], state[f"{name}.bias"], eps) if f"{name}.weight" in state else None

    # nn.Linear stores (out, in): W_in is read as (d_model, d_mlp); an attention-only model's MLP 0 has no neurons
    if "blocks.0.mlp.in.weight" in state:
        w_in, w_out = state["blocks.0.mlp.in.weight"].T, state["blocks.0.mlp.out.weight"].T
        b_in, b_out = state["blocks.0.mlp.in.bias"], state["blocks.0.mlp.out.bias"]
    else:
        w_in, w_out, b_in, b_out = np.zeros((cfg.d_model, 0)), np.zeros((0, cfg.d_model)), np.zeros(0), np.zeros(
            cfg.d_model)
    return SpreadTables(
        length=length, char_embed=char_embed, pos_embed=pos_embed, ln1=ln("blocks.0.ln1"),
        w_q=_weights(model, "W_Q"), b_q=_weights(model, "b_Q"), w_k=_weights(model, "W_K") / scale,
        b_k=_weights(model, "b_K") / scale, w_v=_weights(model, "W_V"), b_v=_weights(model, "b_V"), w_o=w_o,
        special_key={n: k[0, p] / scale for n, p in specials.items()},
        special_value={n: np.einsum("hd,hdm->hm", v[0, p], w_o) for n, p in specials.items()},
        b_o=_weights(model, "b_O"), ln2=ln("blocks.0.ln2"), w_in=w_in, b_in=b_in, w_out=w_out, b_out=b_out,
        act_fn=str(cfg.act_fn),
        causal=str(getattr(cfg, "attention_dir", "bidirectional")) == "causal")


def rounded_spread(t: SpreadTables) -> SpreadTables:
    """The factors as a program holds them (constants.DIGITS significant digits): a numpy twin uses the same numbers."""
    def r(x: np.ndarray) -> np.ndarray:
        return np.asarray(rounded(x), dtype=np.float64).reshape(np.shape(x))

    def ln(weights: LayerNormWeights | None) -> LayerNormWeights | None:
        return None if weights is None else (r(weights[0]), r(weights[1]), weights[2])

    return dataclasses.replace(
        t, char_embed=r(t.char_embed), pos_embed=r(t.pos_embed), ln1=ln(t.ln1), w_q=r(t.w_q), b_q=r(t.b_q),
        w_k=r(t.w_k), b_k=r(t.b_k), w_v=r(t.w_v), b_v=r(t.b_v), w_o=r(t.w_o), b_o=r(t.b_o), w_in=r(t.w_in),
        b_in=r(t.b_in), w_out=r(t.w_out), b_out=r(t.b_out), ln2=ln(t.ln2),
        special_key={k: r(v) for k, v in t.special_key.items()},
        special_value={k: r(v) for k, v in t.special_value.items()})


def activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "gelu":
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))  # as the program: math.erf
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def attention_out(t: SpreadTables, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(resid_mid (n, L, d_model), pattern (n, H, L, T)) at the character positions for strings of indices."""
    n, length = codes.shape
    pos = np.arange(length)[None, :]
    q_table, k_table, v_table, embed = expanded(t)
    query = q_table[:, pos, codes].transpose(1, 0, 2, 3)  # (n, H, L, dh)
    keys = [np.broadcast_to(t.special_key["bos"][None, :, None], (n, k_table.shape[0], 1, k_table.shape[-1])),
            k_table[:, pos, codes].transpose(1, 0, 2, 3)]
    values = [np.broadcast_to(t.special_value["bos"][None, :, None], (n, v_table.shape[0], 1, v_table.shape[-1])),
              v_table[:, pos, codes].transpose(1, 0, 2, 3)]
    if "eos" in t.special_key:
        keys.append(np.broadcast_to(t.special_key["eos"][None, :, None], keys[0].shape))
        values.append(np.broadcast_to(t.special_value["eos"][None, :, None], values[0].shape))
    key, value = np.concatenate(keys, axis=2), np.concatenate(values, axis=2)  # (n, H, T, .)
    scores = query @ key.swapaxes(-1, -2)  # (n, H, L, T); batched matmul: several times einsum's speed
    if t.causal:  # character i (token i + 1) sees tokens 0..i+1
        visible = np.arange(key.shape[2])[None, :] <= np.arange(1, length + 1)[:, None]
        scores = np.where(visible, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    mixed = (weights @ value).sum(axis=1)
    return embed[pos, codes] + mixed + t.b_o, weights


def mlp_in(t: SpreadTables, mid: np.ndarray) -> np.ndarray:
    """MLP 0's activations (.., d_mlp) from the residual stream (.., d_model)."""
    return activation(layer_norm(mid, t.ln2) @ t.w_in + t.b_in, t.act_fn)


def resid_post(t: SpreadTables, codes: np.ndarray) -> np.ndarray:
    """(n, L, d_model) the residual stream after layer 0 at the character positions."""
    mid, _ = attention_out(t, codes)
    return mid + mlp_in(t, mid) @ t.w_out + t.b_out


def readout_directions(mean_post: np.ndarray, palindrome: np.ndarray, dims: int) -> np.ndarray:
    """(dims, d_model): the class-mean difference of the strings' mean layer-0 output (unit, palindromes
    positive), then the leading principal directions of what is orthogonal to it (deterministic)."""
    gap = mean_post[palindrome].mean(axis=0) - mean_post[~palindrome].mean(axis=0) \
        if palindrome.any() and (~palindrome).any() else np.zeros(mean_post.shape[1])
    first = gap / max(float(np.linalg.norm(gap)), 1e-12)
    rest = mean_post - mean_post.mean(axis=0)
    rest = rest - np.outer(rest @ first, first)
    others = np.linalg.svd(rest, full_matrices=False)[2][:max(0, dims - 1)]
    return np.vstack([first, others])[:dims]


@dataclass
class SpreadProgram:
    """One length's program constants (what the written program holds, rounded), with its numpy arithmetic."""

    tables: SpreadTables
    directions: np.ndarray  # (k, d_model)
    out_read: np.ndarray  # (d_mlp, k): MLP 0's W_out read through the directions
    b_out_read: np.ndarray  # (k,)
    gate: np.ndarray  # (k + 1,)
    readout: dict[str, np.ndarray]

    def features(self, codes: np.ndarray) -> np.ndarray:
        """(n, k): the mean over character positions of layer 0's output, on the readout directions."""
        mid, _ = attention_out(self.tables, codes)
        projected = mid @ self.directions.T + mlp_in(self.tables, mid) @ self.out_read + self.b_out_read
        return projected.mean(axis=1)


def logit_from(features: np.ndarray, gate: np.ndarray, readout: dict[str, np.ndarray]) -> np.ndarray:
    """The readout.py arithmetic: a logistic gate in every feature, a quadratic per side."""
    side = 0.5 * (1.0 + np.tanh((features @ gate[:-1] + gate[-1]) / 2.0))
    terms = quadratic_terms(features)
    return side * (terms @ readout["palindrome"]) + (1 - side) * (terms @ readout["not_palindrome"])


class SpreadEmulator:
    """The string-level program over many strings (grouped by length); `pair`/`sources` are not supported."""

    def __init__(self, alphabet: str, programs: dict[int, SpreadProgram]) -> None:
        self.alphabet = alphabet
        self.programs = programs

    def codes(self, texts: Sequence[str]) -> np.ndarray:
        return alphabet_codes(texts, self.alphabet)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        return self.programs[len(texts[0])].features(self.codes(texts)) if texts else np.zeros((0, 0))

    def logit_diff(self, texts: Sequence[str], pair: Any = None, sources: Any = None) -> np.ndarray:
        texts = list(texts)
        out = np.zeros(len(texts))
        lengths = np.array([len(t) for t in texts])
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            prog = self.programs[int(length)]
            out[rows] = logit_from(prog.features(self.codes([texts[i] for i in rows])), prog.gate, prog.readout)
        return out


def check_layer0(model: TransformerBridge, tokenizer: Tokenizer, tables: SpreadTables, texts: Sequence[str],
                 batch_size: int) -> float:
    """The read layer 0 must reproduce the model's blocks.0.hook_resid_post at the character positions: the largest
    difference relative to the stream's scale (an AnalysisError past CHECK_TOLERANCE)."""
    texts = list(texts)[:CHECK_STRINGS]
    if not texts:
        return 0.0
    name = "blocks.0.hook_resid_post"
    got: list[np.ndarray] = []
    run_capturing(model, tokenizer.encode(texts), [name], batch_size,
                  lambda rows, a: got.append(a[name][:, 1:tables.length + 1].double().cpu().numpy()))
    model_post = np.concatenate(got)
    index = {c: i for i, c in enumerate(tokenizer.alphabet)}
    mine = resid_post(tables, np.array([[index[c] for c in t] for t in texts]))
    gap = float(np.abs(mine - model_post).max() / max(1.0, float(np.abs(model_post).max())))
    if gap > CHECK_TOLERANCE:
        raise AnalysisError(f"layer 0 read from the model differs from blocks.0.hook_resid_post by {gap:.3g} (relative) "
                            "on the fit strings; the string-level tables are read wrong")
    return gap


def length_read(p: SpreadProgram) -> int:
    """Numbers one length's part holds (read from the model or summarised from the program's own layer 0)."""
    t = p.tables
    parts = [t.pos_embed, *t.special_key.values(), *t.special_value.values(), p.out_read, p.b_out_read, p.directions]
    return int(sum(np.asarray(x).size for x in parts))


def shared_read(t: SpreadTables) -> int:
    """Numbers of layer 0 every length shares: the character part, the heads' weights, b_O, the LayerNorms, W_in."""
    parts = [t.char_embed, t.w_q, t.b_q, t.w_k, t.b_k, t.w_v, t.b_v, t.w_o, t.b_o, t.w_in, t.b_in,
             *(t.ln1[:2] if t.ln1 is not None else ()), *(t.ln2[:2] if t.ln2 is not None else ())]
    return int(sum(np.asarray(x).size for x in parts))
