"""The program's tables, read from the model's own components on controlled strings (nothing is fitted here).

Readout heads (every head of the layers after the comparison, at the readout position: the last layer when the
comparison is made in the layer before it, else each later layer too, since there the readout reads what the
layer after the comparison wrote), for each character position i of a string of length L and each (own, mirror)
character pair:
- `salience`: the head's attention score from the readout to position i, q . k / scale, with q the readout's
  mean query and k the key at i, averaged over `n_contexts` controlled strings: random palindromes of
  length L whose pair (i, mirror) is set to (own, mirror);
- `evidence`: the head's value at i through W_O (what it would write if it looked only there), projected on
  the head's evidence direction: the first principal direction of those value vectors over every table
  entry, signed so that a broken pair points the positive way.
The special positions (BOS, EOS) get one (salience, evidence) each, averaged over every controlled string.

Context heads (every head of layer 0, at the readout position): in layer 0 a key and a value depend only on
the token and its position, so `salience` and `value` per (position, character) are exact, read from strings
of one repeated character. The readout's own layer-0 reading of a string is their attention-weighted mean,
projected on its first `context_dims` principal directions over uniformly random strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import attn_scale, device_of, readout_positions
from palindrome_lens.data.tokenizer import Tokenizer

N_CONTEXT_STRINGS = 2048  # random strings the context directions are taken over
_STREAM = 17  # seed streams of their own (extract 4, adversarial 5, ablation 6, scrubbing 7)


@dataclass
class HeadTable:
    """A readout head: per character position i, own and mirror character (indices into the alphabet)."""

    name: str
    salience: np.ndarray  # (L, A, A)
    evidence: np.ndarray  # (L, A, A)
    special: dict[str, tuple[float, float]]  # "bos"/"eos" -> (salience, evidence)
    direction: np.ndarray  # (d_model,) the evidence direction
    keys: np.ndarray | None = None  # (L, A, A, d_head) mean key / attention scale (salience = keys @ query)
    special_keys: dict[str, np.ndarray] | None = None  # "bos"/"eos" -> (d_head,)
    query: np.ndarray | None = None  # (d_head,) the readout's mean query (salience = keys @ query)


@dataclass
class ContextTable:
    """A layer-0 head at the readout position: per character position i and character."""

    name: str
    salience: np.ndarray  # (L, A)
    value: np.ndarray  # (L, A, k)
    special: dict[str, tuple[float, list[float]]]  # "bos"/"eos" -> (salience, value)


@dataclass
class LengthTables:
    length: int
    heads: list[HeadTable]
    context: list[ContextTable]
    context_directions: np.ndarray  # (k, d_model)


def special_positions(length: int, add_eos: bool) -> dict[str, int]:
    """[BOS] and, with one, [EOS]: the positions whose token is the same in every string of a length."""
    return {"bos": 0, **({"eos": length + 1} if add_eos else {})}


def pair_strings(length: int, n_alpha: int, n_contexts: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Controlled strings as alphabet indices: for every pair k, own a and mirror b, `n_contexts` random
    palindromes with (k, L-1-k) set to (a, b); the centre of an odd length gets each character instead.
    Returns (strings (n, L), position i of the left/only set character, a, b)."""
    half = length // 2
    rows, pos, own, mirror = [], [], [], []
    grid_a, grid_b = np.meshgrid(np.arange(n_alpha), np.arange(n_alpha), indexing="ij")
    settings = [(k, a, b) for k in range(half) for a, b in zip(grid_a.ravel(), grid_b.ravel())]
    if length % 2:
        settings += [(half, c, c) for c in range(n_alpha)]
    for k, a, b in settings:
        context = rng.integers(0, n_alpha, size=(n_contexts, (length + 1) // 2))
        strings = np.concatenate([context, context[:, :half][:, ::-1]], axis=1)
        strings[:, k], strings[:, length - 1 - k] = a, b
        rows.append(strings)
        pos.append(np.full(n_contexts, k))
        own.append(np.full(n_contexts, a))
        mirror.append(np.full(n_contexts, b))
    return np.concatenate(rows), np.concatenate(pos), np.concatenate(own), np.concatenate(mirror)


def texts_of(indices: np.ndarray, alphabet: str) -> list[str]:
    letters = np.array(list(alphabet))
    return ["".join(row) for row in letters[indices]]


def run_capturing(model: TransformerBridge, tokens: torch.Tensor, names: list[str], batch_size: int,
                  reduce: Callable[[slice, dict[str, torch.Tensor]], None]) -> None:
    """Forward `tokens` in batches, handing each batch's activations at `names` to `reduce(rows, acts)`."""
    device = device_of(model)
    for start in range(0, len(tokens), batch_size):
        rows = slice(start, start + batch_size)
        store: dict[str, torch.Tensor] = {}

        def keeper(name: str, store: dict[str, torch.Tensor] = store) -> Callable[..., torch.Tensor]:
            def keep(x: torch.Tensor, hook: object) -> torch.Tensor:
                store[name] = x.detach().float()  # aliased hooks report another name: keep ours
                return x
            return keep

        with torch.inference_mode():
            model.run_with_hooks(tokens[rows].to(device), fwd_hooks=[(n, keeper(n)) for n in names])
        reduce(rows, store)


def principal_direction(vectors: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The first principal direction of `vectors` (n, d), signed so that the rows marked `positive` project
    above the rest on average (deterministic; any unit vector when they do not vary)."""
    centred = vectors - vectors.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    if positive.any() and (~positive).any():
        gap = vectors[positive].mean(axis=0) - vectors[~positive].mean(axis=0)
        if gap @ direction < 0:
            direction = -direction
    return direction


def readout_head_tables(model: TransformerBridge, tokenizer: Tokenizer, length: int, n_contexts: int,
                        batch_size: int, rng: np.random.Generator,
                        layers: Sequence[int] | None = None) -> list[HeadTable]:
    """Salience and evidence per (position, own, mirror) for every head of `layers` (default: the last layer),
    all read on the same controlled strings."""
    cfg = model.cfg
    layers = [cfg.n_layers - 1] if layers is None else list(layers)
    n_heads, n_alpha = cfg.n_heads, len(tokenizer.alphabet)
    strings, pair, own, mirror = pair_strings(length, n_alpha, n_contexts, rng)
    tokens = tokenizer.encode(texts_of(strings, tokenizer.alphabet))
    readout = readout_positions(model, tokens)
    specials = special_positions(length, tokenizer.add_eos)
    entries = length * n_alpha * n_alpha
    # entry of the left (or only) set position and of its mirror: (position, own, mirror) flattened
    left = (pair * n_alpha + own) * n_alpha + mirror
    right = ((length - 1 - pair) * n_alpha + mirror) * n_alpha + own
    w_o = {layer: model.W_O.detach()[layer].float().to(device_of(model)) for layer in layers}  # (heads, d_head, d_model)
    sums = {layer: {"k": torch.zeros(entries, n_heads, cfg.d_head), "v": torch.zeros(entries, n_heads, cfg.d_model)}
            for layer in layers}
    special_sums = {layer: {name: {"k": torch.zeros(n_heads, cfg.d_head), "v": torch.zeros(n_heads, cfg.d_model)}
                            for name in specials} for layer in layers}
    counts = torch.zeros(entries)
    query = {layer: torch.zeros(n_heads, cfg.d_head) for layer in layers}
    names = {layer: [f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.hook_k", f"blocks.{layer}.attn.hook_v"]
             for layer in layers}

    # the centre of an odd length is one position: count it once
    two_sided = (pair != length // 2) | (length % 2 == 0)
    sides = ((left, pair + 1, np.ones_like(two_sided)), (right, length - pair, two_sided))

    def reduce(rows: slice, acts: dict[str, torch.Tensor]) -> None:
        for n_layer, layer in enumerate(layers):
            q, k, v = (acts[n].cpu() for n in names[layer])
            written = torch.einsum("nphd,hdm->nphm", v.to(w_o[layer].device), w_o[layer]).cpu()  # value through W_O
            every = torch.arange(q.shape[0])
            query[layer] += q[every, readout[rows].cpu()].sum(dim=0)
            for index, at, take in sides:
                take = torch.from_numpy(take[rows])
                idx, row_pos = torch.from_numpy(index[rows])[take], torch.from_numpy(at[rows])[take]
                sums[layer]["k"].index_add_(0, idx, k[every[take], row_pos])
                sums[layer]["v"].index_add_(0, idx, written[every[take], row_pos])
                if n_layer == 0:
                    counts.index_add_(0, idx, torch.ones(len(idx)))
            for name, p in specials.items():
                special_sums[layer][name]["k"] += k[:, p].sum(dim=0)
                special_sums[layer][name]["v"] += written[:, p].sum(dim=0)

    run_capturing(model, tokens, [n for layer in layers for n in names[layer]], batch_size, reduce)
    n = len(tokens)
    filled = counts > 0
    grid = np.arange(entries)
    entry_own = (grid // n_alpha) % n_alpha
    entry_mirror = grid % n_alpha
    mismatch = entry_own != entry_mirror
    out = []
    for layer in layers:
        q_mean = (query[layer] / n).numpy()
        keys = (sums[layer]["k"] / counts.clamp(min=1)[:, None, None]).numpy()
        values = (sums[layer]["v"] / counts.clamp(min=1)[:, None, None]).numpy()
        scale = attn_scale(model, layer)
        for h in range(n_heads):
            direction = principal_direction(values[filled.numpy(), h], mismatch[filled.numpy()])
            salience = keys[:, h] @ q_mean[h] / scale
            evidence = values[:, h] @ direction
            salience, evidence = (_fill_centre(x.reshape(length, n_alpha, n_alpha), length)
                                  for x in (salience, evidence))
            special = {name: (float(s["k"][h].numpy() @ q_mean[h] / n / scale),
                              float(s["v"][h].numpy() @ direction / n))
                       for name, s in special_sums[layer].items()}
            head_keys = _fill_centre(keys[:, h].reshape(length, n_alpha, n_alpha, -1), length) / scale
            special_keys = {name: s["k"][h].numpy() / n / scale for name, s in special_sums[layer].items()}
            out.append(HeadTable(f"L{layer}H{h}", salience, evidence, special, direction, head_keys, special_keys,
                                 q_mean[h]))
    return out


def _fill_centre(table: np.ndarray, length: int) -> np.ndarray:
    """The centre of an odd length compares a character with itself: its other entries copy (c, c), which the
    program never looks up."""
    if length % 2:
        centre = length // 2
        table[centre] = np.diagonal(table[centre]).copy()[:, None]
    return table


def context_tables(model: TransformerBridge, tokenizer: Tokenizer, length: int, dims: int, batch_size: int,
                   rng: np.random.Generator) -> tuple[list[ContextTable], np.ndarray]:
    """Salience and projected value per (position, character) for every layer-0 head at the readout, and the
    projection's directions (k, d_model)."""
    cfg = model.cfg
    n_heads, alphabet = cfg.n_heads, tokenizer.alphabet
    if dims == 0:
        return [], np.zeros((0, cfg.d_model))
    tokens = tokenizer.encode([c * length for c in alphabet])
    readout = int(readout_positions(model, tokens[:1])[0])
    names = ["blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v"]
    acts: dict[str, torch.Tensor] = {}
    run_capturing(model, tokens, names, batch_size, lambda rows, a: acts.update({k: v.cpu() for k, v in a.items()}))
    w_o = model.W_O.detach()[0].float().cpu()
    query = acts[names[0]][0, readout]  # the same token at the same position in every row
    keys, written = acts[names[1]], torch.einsum("nphd,hdm->nphm", acts[names[2]], w_o)
    scale = attn_scale(model, 0)
    chars = slice(1, length + 1)
    salience = (torch.einsum("aphd,hd->aph", keys[:, chars], query) / scale).numpy().transpose(1, 0, 2)  # (L, A, H)
    value = written[:, chars].numpy().transpose(1, 0, 2, 3)  # (L, A, H, d_model)
    specials = special_positions(length, tokenizer.add_eos)
    special_salience = {name: (torch.einsum("hd,hd->h", keys[0, p], query) / scale).numpy() for name, p in specials.items()}
    special_value = {name: written[0, p].numpy() for name, p in specials.items()}
    # directions: principal directions of the readout's layer-0 reading over uniformly random strings
    strings = rng.integers(0, len(alphabet), size=(N_CONTEXT_STRINGS, length))
    reading = context_vectors(strings, salience, value, special_salience, special_value)
    centred = reading - reading.mean(axis=0)
    directions = np.linalg.svd(centred, full_matrices=False)[2][:min(dims, cfg.d_model)]
    out = []
    for h in range(n_heads):
        special = {name: (float(special_salience[name][h]), [float(x) for x in special_value[name][h] @ directions.T])
                   for name in specials}
        out.append(ContextTable(f"L0H{h}", salience[:, :, h], value[:, :, h] @ directions.T, special))
    return out, directions


def context_vectors(strings: np.ndarray, salience: np.ndarray, value: np.ndarray, special_salience: dict,
                    special_value: dict) -> np.ndarray:
    """(n, d_model) the readout's layer-0 attention output (summed over heads) for strings of indices."""
    n, length = strings.shape
    pos = np.arange(length)[None, :]
    scores = [np.broadcast_to(special_salience["bos"], (n, 1, salience.shape[-1])), salience[pos, strings]]
    values = [np.broadcast_to(special_value["bos"], (n, 1, *value.shape[-2:])), value[pos, strings]]
    if "eos" in special_salience:
        scores.append(np.broadcast_to(special_salience["eos"], (n, 1, salience.shape[-1])))
        values.append(np.broadcast_to(special_value["eos"], (n, 1, *value.shape[-2:])))
    s, v = np.concatenate(scores, axis=1), np.concatenate(values, axis=1)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nph,nphm->nm", w, v)


def read_tables(model: TransformerBridge, tokenizer: Tokenizer, length: int, n_contexts: int, context_dims: int,
                batch_size: int, seed: int, reader_layers: Sequence[int] | None = None) -> LengthTables:
    """Every table of one string length (deterministic for a seed); readout heads of `reader_layers` (default:
    the last layer)."""
    rng = np.random.default_rng([seed, _STREAM, length])
    heads = readout_head_tables(model, tokenizer, length, n_contexts, batch_size, rng, reader_layers)
    context, directions = context_tables(model, tokenizer, length, context_dims, batch_size, rng)
    return LengthTables(length, heads, context, directions)


def reader_layers(after_layer: int, n_layers: int) -> list[int]:
    """The layers whose heads read the comparison made by `after_layer`: every later one."""
    return list(range(after_layer + 1, n_layers))
