"""The ladder's `layer_zero` level: the readout heads of layer 1 read each character position's own layer-0 output.

A table level gives a layer-1 readout head one salience and one evidence per (position, own, mirror), averaged
over contexts. But after layer 0 a position holds more than its pair: its layer-0 attention has read the whole
string, so the key and the value that layer 1 reads there move with the rest of the string. This level runs
layer 0 as the model computes it (the string-level program's factors, string_level.read_spread) at every character
position, adds MLP 0, applies layer 1's LayerNorm, and reads each layer-1 readout head along two directions of the
model's own weights:
- salience: the key through the readout's mean query, W_K q / scale (q as the tables read it), plus b_K q / scale;
- evidence: the value through W_O onto the head's evidence direction, W_V (W_O d), plus b_V (W_O d).
Nothing is fitted but the readout. [BOS] and [EOS] keep their table entries, heads of later layers their level's
tables. An interchange of pair k gives the pair's two positions the layer-0 output of the string with pair k's
characters set: the model-side intervention patches those positions' residual stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import attn_scale, parse_head
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import AnalysisError
from palindrome_lens.explanation.constants import rounded
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.string_level import (
    ACTIVATIONS,
    LayerNormWeights,
    SpreadTables,
    layer_norm,
    read_spread,
    resid_post,
    rounded_spread,
    shared_read,
)
from palindrome_lens.explanation.tables import LengthTables, run_capturing

READER_LAYER = 1  # the level exists where the comparison is read right after layer 0
CHECK_STRINGS = 256  # strings on which the level's salience and evidence must equal the model's own
CHECK_TOLERANCE = 1e-3  # relative to their scale (float32 model, float64 program)
CHUNK = 4096  # strings per numpy pass (layer 0's attention weights are (n, H, L, T))


def zero_applies(model: TransformerBridge, reader_layers: Sequence[int]) -> bool:
    """Whether the level exists: layer 1 reads the comparison and layer 0 is what the program can run (an MLP
    with one of the template's activations, or none)."""
    cfg = model.cfg
    return READER_LAYER in reader_layers and (getattr(cfg, "attn_only", False) or cfg.act_fn in ACTIVATIONS)


@dataclass
class ZeroHead:
    """A layer-1 readout head read along two directions of the residual stream after layer 1's LayerNorm."""

    name: str
    key: np.ndarray  # (d_model,) W_K q / scale
    key_bias: float
    value: np.ndarray  # (d_model,) W_V W_O d
    value_bias: float


@dataclass
class ZeroReading:
    """One length: layer 0's factors, layer 1's LayerNorm and the layer-1 readout heads' directions."""

    spread: SpreadTables
    ln_read: LayerNormWeights | None
    heads: list[ZeroHead]


def read_zero(model: TransformerBridge, tokenizer: Tokenizer, tables: LengthTables, batch_size: int) -> ZeroReading:
    """The level's reading for one length: layer 0's factors and, per layer-1 head of `tables`, its directions
    (the mean query and the evidence direction are the tables' own)."""
    state = {k: v.detach().double().cpu().numpy() for k, v in model.state_dict().items()
             if k.startswith(f"blocks.{READER_LAYER}.ln1.")}
    eps = float(getattr(model.cfg, "eps", 1e-5))
    weight = f"blocks.{READER_LAYER}.ln1.weight"
    ln = (state[weight], state[f"blocks.{READER_LAYER}.ln1.bias"], eps) if weight in state else None
    w_k, b_k, w_v, b_v, w_o = (getattr(model, n).detach()[READER_LAYER].double().cpu().numpy()
                               for n in ("W_K", "b_K", "W_V", "b_V", "W_O"))
    scale = attn_scale(model, READER_LAYER)
    heads = []
    for h in tables.heads:
        layer, head = parse_head(h.name)
        if layer != READER_LAYER:
            continue
        if h.query is None:
            raise AnalysisError(f"{h.name}'s table holds no mean query; read the tables again")
        q, onto = np.asarray(h.query, dtype=np.float64), w_o[head] @ np.asarray(h.direction, dtype=np.float64)
        heads.append(ZeroHead(h.name, w_k[head] @ q / scale, float(b_k[head] @ q / scale), w_v[head] @ onto,
                              float(b_v[head] @ onto)))
    return ZeroReading(read_spread(model, tokenizer, tables.length, batch_size), ln, heads)


def rounded_reading(r: ZeroReading) -> ZeroReading:
    """The reading as the program holds it (constants.DIGITS significant digits)."""
    def x(a: Any) -> np.ndarray:
        return np.asarray(rounded(a), dtype=np.float64).reshape(np.shape(a))

    def ln(w: LayerNormWeights | None) -> LayerNormWeights | None:
        return None if w is None else (x(w[0]), x(w[1]), w[2])

    heads = [ZeroHead(h.name, x(h.key), float(x(h.key_bias)), x(h.value), float(x(h.value_bias))) for h in r.heads]
    return ZeroReading(rounded_spread(r.spread), ln(r.ln_read), heads)


def normed_post(r: ZeroReading, codes: np.ndarray, pair: int | None = None,
                source_codes: np.ndarray | None = None) -> np.ndarray:
    """(n, L, d_model) each character position's residual stream after layer 0, through layer 1's LayerNorm;
    with `pair`, its two positions take the output of the string whose pair holds the source's characters."""
    post = resid_post(r.spread, codes)
    if pair is not None and source_codes is not None:
        right = codes.shape[1] - 1 - pair
        hybrid = codes.copy()
        hybrid[:, [pair, right]] = source_codes[:, [pair, right]]
        post[:, [pair, right]] = resid_post(r.spread, hybrid)[:, [pair, right]]
    return layer_norm(post, r.ln_read)


def zero_marks(r: ZeroReading, codes: np.ndarray, pair: int | None = None, source_codes: np.ndarray | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per head of the reading, (salience, evidence) (n, L) at the character positions."""
    x = normed_post(r, codes, pair, source_codes)
    return [(x @ h.key + h.key_bias, x @ h.value + h.value_bias) for h in r.heads]


def check_reading(model: TransformerBridge, tokenizer: Tokenizer, r: ZeroReading, texts: Sequence[str],
                  batch_size: int) -> float:
    """The level's salience and evidence must be the model's own: hook_k through the mean query and hook_v through
    W_O onto the evidence direction at layer 1, on `texts`. The largest difference relative to their scale (an
    AnalysisError past CHECK_TOLERANCE)."""
    texts = [t for t in texts if len(t) == r.spread.length][:CHECK_STRINGS]
    if not texts or not r.heads:
        return 0.0
    names = [f"blocks.{READER_LAYER}.attn.hook_k", f"blocks.{READER_LAYER}.attn.hook_v"]
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def keep(rows: slice, acts: dict[str, Any]) -> None:
        for n in names:
            got[n].append(acts[n][:, 1:r.spread.length + 1].double().cpu().numpy())

    run_capturing(model, tokenizer.encode(texts), names, batch_size, keep)
    k, v = (np.concatenate(got[n]) for n in names)  # (n, L, H, d_head)
    index = {c: i for i, c in enumerate(tokenizer.alphabet)}
    mine = zero_marks(r, np.array([[index[c] for c in t] for t in texts]))
    w_k, w_v = (getattr(model, n).detach()[READER_LAYER].double().cpu().numpy() for n in ("W_K", "W_V"))
    gap = 0.0
    for h, (salience, evidence) in zip(r.heads, mine):
        head = parse_head(h.name)[1]
        # the model's key and value at each position, read along the same directions: hook_k . q / scale is
        # (x W_K + b_K) . q / scale, so the level's key direction must reproduce it (likewise the value)
        q = np.linalg.lstsq(w_k[head], h.key, rcond=None)[0]  # W_K q / scale = key: recover q / scale
        onto = np.linalg.lstsq(w_v[head], h.value, rcond=None)[0]
        theirs = (k[:, :, head] @ q, v[:, :, head] @ onto)
        for a, b in zip((salience, evidence), theirs):
            gap = max(gap, float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max()))))
    if gap > CHECK_TOLERANCE:
        raise AnalysisError(f"the layer_zero level's salience and evidence differ from the model's own keys and values "
                            f"at layer {READER_LAYER} by {gap:.3g} (relative); layer 0 or the directions are read wrong")
    return gap


class ZeroEmulator(Emulator):
    """A level's program over many strings: the layer-1 heads from layer 0's output, the rest from `doc`'s tables
    (constants.json's layout, holding only those heads), in the order `order` {length: [head name, ...]};
    `specials` {length: {head name: (before, after)}} the layer-1 heads' [BOS] and [EOS] (salience, evidence)."""

    def __init__(self, doc: Mapping[str, Any], readings: Mapping[int, ZeroReading], order: Mapping[int, list[str]],
                 specials: Mapping[int, Mapping[str, tuple[list, list]]]) -> None:
        super().__init__(doc)
        self.readings = {int(k): v for k, v in readings.items()}
        self.order = {int(k): list(v) for k, v in order.items()}
        self.specials = {int(k): dict(v) for k, v in specials.items()}
        self.table_names = {int(k): [h["name"] for h in e["heads"]] for k, e in doc["lengths"].items()}

    def head_marks(self, texts: Sequence[str], pair: int | None = None, sources: Sequence[str] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
        length = len(texts[0])
        reading = self.readings[length]
        marks = dict(zip(self.table_names[length], super().head_marks(texts, pair, sources)
                         if self.table_names[length] else []))
        codes = self.codes(texts)
        src = None if sources is None else self.codes(sources)
        chunks = [zero_marks(reading, codes[s:s + CHUNK], pair, None if src is None else src[s:s + CHUNK])
                  for s in range(0, len(codes), CHUNK)]
        for n, h in enumerate(reading.heads):
            salience, evidence = (np.concatenate([c[n][part] for c in chunks]) for part in (0, 1))
            before, after = self.specials[length][h.name]
            marks[h.name] = (np.concatenate([*[np.full((len(codes), 1), b[0]) for b in before], salience,
                                             *[np.full((len(codes), 1), a[0]) for a in after]], axis=1),
                             np.concatenate([*[np.full((len(codes), 1), b[1]) for b in before], evidence,
                                             *[np.full((len(codes), 1), a[1]) for a in after]], axis=1))
        return [marks[name] for name in self.order[length]]

    def n_heads(self, length: int) -> int:
        return len(self.order[length])


def reading_read(r: ZeroReading, with_shared: bool) -> int:
    """Numbers the level holds for one length's reading (layer 0's shared factors, W_out, b_out and layer 1's
    LayerNorm once, with `with_shared`)."""
    t = r.spread
    per_length = int(t.pos_embed.size + sum(np.asarray(v).size for v in (*t.special_key.values(),
                                                                          *t.special_value.values())))
    heads = sum(h.key.size + h.value.size + 2 for h in r.heads)
    shared = shared_read(t) + t.w_out.size + t.b_out.size + (2 * r.ln_read[0].size if r.ln_read else 0)
    return per_length + heads + (shared if with_shared else 0)
