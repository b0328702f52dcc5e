"""Alignment, not only agreement: interchange interventions (Geiger et al.) between the program and the model.

Each program variable is one mirrored pair's comparison (pair k: the characters its two positions compare).
For a base and a source string of the same length, the program runs on the base with pair k comparing the
source's characters, and the model runs on the base with the node aligned to that variable patched, at
pair k's two positions, from the source's run. Interchange-intervention accuracy (IIA) is the share of
(base, source) pairs on which the two then decide alike, reported on the pairs where the intervention
changes the program's decision (there it tests something) with every pair beside it. Nodes:
- `resid`: the residual stream after the hypothesis' layer (what the hypothesis says carries the pair);
- `writer`: the circuit's component of that layer at the characters that writes it (an MLP, else its heads).
The control patches the same variable's source at the *next* pair's positions: if the alignment is right,
the model then ignores what the program was told, and the control must score far lower.

pyvene 0.1.8 (the field's library for this) cannot drive the bridge as it is (scripts/pyvene_probe.py);
this is the project's own patching, with TransformerLens hooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import forward_logit_diff, parse_head
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.explanation.family import CHAR_GROUPS
from palindrome_lens.explanation.levels import LogitFn

_STREAM = 18


@dataclass(frozen=True)
class Alignment:
    """A node: `hook` patched at a pair's positions (only `head` of it, for hook_z)."""

    name: str  # resid or writer
    node: str  # in TransformerLens words, e.g. blocks.0.hook_resid_post, 0_mlp_out, L0H0
    hook: str
    heads: tuple[int, ...] = ()


def alignments(circuit: Mapping[str, Any], after_layer: int) -> list[Alignment]:
    """The residual stream after `after_layer`, and the circuit's writer at that layer when it has one."""
    out = [Alignment("resid", f"blocks.{after_layer}.hook_resid_post", f"blocks.{after_layer}.hook_resid_post")]
    at_chars = {str(n.get("component")) for n in circuit.get("nodes", [])
                if n.get("role") == "circuit" and n.get("layer") == after_layer and n.get("positions") in CHAR_GROUPS}
    mlp = f"{after_layer}_mlp_out"
    if mlp in at_chars:
        out.append(Alignment("writer", mlp, f"blocks.{after_layer}.hook_mlp_out"))
    else:
        heads = tuple(sorted(parse_head(c)[1] for c in at_chars if c.startswith("L")))
        if heads:
            out.append(Alignment("writer", ", ".join(f"L{after_layer}H{h}" for h in heads),
                                 f"blocks.{after_layer}.attn.hook_z", heads))
    return out


def draw_pairs(test: pd.DataFrame, length: int, n: int, seed: int) -> tuple[list[str], list[str]]:
    """n (base, source) pairs of distinct test strings of one length, drawn with the seed."""
    texts = test.loc[test["length"] == length, "text"].astype(str).tolist()
    if len(texts) < 2:
        return [], []
    rng = np.random.default_rng([seed, _STREAM, length])
    base = rng.integers(0, len(texts), size=n)
    source = (base + rng.integers(1, len(texts), size=n)) % len(texts)  # never the base itself
    return [texts[i] for i in base], [texts[i] for i in source]


def patched_logits(model: TransformerBridge, base: torch.Tensor, source_act: torch.Tensor, align: Alignment,
                   positions: Sequence[int], batch_size: int) -> np.ndarray:
    """(n,) the model's logit differences on `base` with the node at `positions` taken from the source's run."""
    pos = list(positions)

    def hooks(rows: slice) -> list:
        src = source_act[rows]

        def patch(x: torch.Tensor, hook: object) -> torch.Tensor:
            out = x.clone()
            if align.heads:
                for h in align.heads:
                    out[:, pos, h] = src[:, pos, h].to(x.device, x.dtype)
            else:
                out[:, pos] = src[:, pos].to(x.device, x.dtype)
            return out

        return [(align.hook, patch)]

    return forward_logit_diff(model, base, batch_size, hooks).cpu().numpy().astype(np.float64)


def source_activations(model: TransformerBridge, tokens: torch.Tensor, hook: str, batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, len(tokens), batch_size):
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens[start:start + batch_size].to(next(model.parameters()).device),
                                            names_filter=lambda name: name == hook)
        out.append(cache[hook].cpu())
    return torch.cat(out)


def interchange(model: TransformerBridge, tokenizer: Tokenizer, programs: Mapping[str, LogitFn], test: pd.DataFrame,
                circuit: Mapping[str, Any], after_layer: int, lengths: Sequence[int], n: int, seed: int,
                batch_size: int) -> pd.DataFrame:
    """One row per (program, length, pair, node, aligned or control): IIA on the decision-changing pairs and on
    all. `programs` {level name: logit_diff(texts, pair, sources)}; the model is patched once for all of them."""
    rows = []
    aligns = alignments(circuit, after_layer)
    for length in lengths:
        base, source = draw_pairs(test, length, n, seed)
        if not base:
            continue
        base_tokens, source_tokens = tokenizer.encode(base), tokenizer.encode(source)
        program_base = {name: fn(base) > 0 for name, fn in programs.items()}
        n_pairs = length // 2
        for align in aligns:
            source_act = source_activations(model, source_tokens, align.hook, batch_size)
            for pair in range(n_pairs):
                told = {name: fn(base, pair, source) > 0 for name, fn in programs.items()}
                controls = [("control", (pair + 1) % n_pairs)] if n_pairs > 1 else []
                for kind, at in [("aligned", pair), *controls]:
                    model_says = patched_logits(model, base_tokens, source_act, align, (at + 1, length - at),
                                                batch_size) > 0
                    for name in programs:
                        changed = told[name] != program_base[name]
                        alike = model_says == told[name]
                        rows.append({"level": name, "length": length, "pair": pair, "variable": f"pair {pair}",
                                     "alignment": align.name, "node": align.node, "kind": kind, "patched_pair": at,
                                     "positions": f"{at + 1},{length - at}", "n": len(base),
                                     "n_changed": int(changed.sum()),
                                     "iia_changed": float(alike[changed].mean()) if changed.any() else float("nan"),
                                     "iia_all": float(alike.mean())})
    return pd.DataFrame(rows)
