"""Nodes of the circuit graph: a component (TransformerLens name) at a group of positions.

A string of length L is tokenised as [BOS] c_1 .. c_L [EOS] [PAD]...; the position groups are
`bos` (0), `chars` (1..L) or its halves `first_half` (1..L//2), `centre` (the middle character of
an odd-length string) and `second_half` (L+1-L//2..L), and `eos` (L+1). `attribute.node_positions`
picks the split: `chars` (bos, chars, eos) or `halves` (bos, first_half, centre, second_half, eos).

Components: `L{l}H{h}` (a head's `hook_z` slice), `{l}_mlp_out` and the embeddings `embed`,
`pos_embed`. The embeddings are the input: they are in every circuit and never ablated. A node of the
last layer anywhere but the readout position cannot reach the logits, so only its readout node is a
candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.attribution.common import head_names, mlp_names, parse_head

NODE_POSITIONS = {
    "chars": ("bos", "chars", "eos"),
    "halves": ("bos", "first_half", "centre", "second_half", "eos"),
}
EMBEDDINGS = ("embed", "pos_embed")
SEPARATOR = "@"


@dataclass(frozen=True, order=True)
class Node:
    layer: int  # -1 for the embeddings
    component: str
    group: str

    @property
    def name(self) -> str:
        return f"{self.component}{SEPARATOR}{self.group}"

    @property
    def is_head(self) -> bool:
        return self.component.startswith("L")


def component_layer(component: str) -> int:
    if component in EMBEDDINGS:
        return -1
    if component.startswith("L"):
        return parse_head(component)[0]
    return int(component.split("_")[0])


def node(name: str) -> Node:
    """`L0H1@chars` -> Node(0, 'L0H1', 'chars')."""
    component, group = name.split(SEPARATOR)
    return Node(component_layer(component), component, group)


def group_positions(length: int, group: str, has_eos: bool) -> list[int]:
    """The token positions of one group in a string of `length` characters."""
    half = length // 2
    positions = {
        "bos": [0],
        "chars": list(range(1, length + 1)),
        "first_half": list(range(1, half + 1)),
        "second_half": list(range(length + 1 - half, length + 1)),
        "centre": [(length + 1) // 2] if length % 2 else [],
        "eos": [length + 1] if has_eos else [],
    }
    return positions[group]


def group_masks(lengths: Iterable[int], width: int, groups: Iterable[str], has_eos: bool) -> dict[str, np.ndarray]:
    """{group: (n, width) bool}: which positions of each row belong to each group."""
    lengths = np.asarray(list(lengths))
    out = {}
    for group in groups:
        mask = np.zeros((len(lengths), width), dtype=bool)
        for length in np.unique(lengths):
            mask[np.ix_(lengths == length, group_positions(int(length), group, has_eos))] = True
        out[group] = mask
    return out


def readout_group(readout_kind: str) -> str:
    return "bos" if readout_kind == "bos" else "eos"


def components(model: TransformerBridge) -> list[str]:
    """Heads and MLPs in forward order (layer by layer, heads before the MLP)."""
    mlps = set(mlp_names(model))
    out = []
    for layer in range(model.cfg.n_layers):
        out += [h for h in head_names(model) if parse_head(h)[0] == layer]
        out += [m for m in (f"{layer}_mlp_out",) if m in mlps]
    return out


def candidate_nodes(model: TransformerBridge, groups: Iterable[str], masks: dict[str, np.ndarray],
                    readout_kind: str) -> list[Node]:
    """Every node the circuit search may keep or ablate, in forward order."""
    last = model.cfg.n_layers - 1
    present = [g for g in groups if masks[g].any()]
    out = []
    for component in components(model):
        layer = component_layer(component)
        for group in ([readout_group(readout_kind)] if layer == last else present):
            out.append(Node(layer, component, group))
    return out


def embedding_nodes(groups: Iterable[str], masks: dict[str, np.ndarray]) -> list[Node]:
    return [Node(-1, e, g) for e in EMBEDDINGS for g in groups if masks[g].any()]
