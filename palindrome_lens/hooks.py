"""The hook catalogue: every TransformerLens hook the pipeline extracts, in forward order, and what the
attribute stage reads. One torch-free list that params, activations and attribution all import.

A generic name (`attn.hook_z`) in `extract.hooks` stands for that hook in every layer
(`blocks.{l}.attn.hook_z`); global hooks (`hook_embed`) have one name.
"""

from __future__ import annotations

from collections.abc import Iterable

from palindrome_lens.errors import PalindromeLensError

BEFORE_BLOCKS = ("hook_embed", "hook_pos_embed")
# Inside one block, in the order the forward pass reaches them.
BLOCK_ORDER = (
    "hook_resid_pre",
    "ln1.hook_scale",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
AFTER_BLOCKS = ("ln_final.hook_scale",)
KNOWN_HOOKS = BEFORE_BLOCKS + BLOCK_ORDER + AFTER_BLOCKS
# What the attribute stage reads (MLP and LayerNorm hooks only where the model has them).
ATTRIBUTION_HOOKS = ("hook_embed", "hook_pos_embed", "hook_resid_pre", "ln1.hook_scale", "attn.hook_pattern",
                     "attn.hook_z", "hook_mlp_out", "hook_resid_post", "ln_final.hook_scale")


class UnknownHookError(PalindromeLensError):
    """A hook name that is neither extracted nor a known generic name."""


def unknown_hook(hook: object) -> str:
    """The one message for a name outside the catalogue."""
    return (f"{hook!r} is not a hook we extract; valid hooks are {', '.join(KNOWN_HOOKS)} "
            "(per-layer names stand for every layer)")


def full_hook_names(generic: Iterable[str], n_layers: int) -> list[str]:
    """The full names for generic `extract.hooks` names, in forward order, each once."""
    wanted = set(generic)
    unknown = sorted(wanted - set(KNOWN_HOOKS))
    if unknown:
        raise UnknownHookError(f"hook {unknown_hook(unknown[0])}")
    names = [h for h in BEFORE_BLOCKS if h in wanted]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{h}" for h in BLOCK_ORDER if h in wanted]
    names += [h for h in AFTER_BLOCKS if h in wanted]
    return names


def generic_name(full: str) -> str:
    """`blocks.3.attn.hook_z` -> `attn.hook_z`; global names map to themselves."""
    if full.startswith("blocks."):
        parts = full.split(".", 2)
        if len(parts) == 3 and parts[1].isdigit():
            return parts[2]
    return full
