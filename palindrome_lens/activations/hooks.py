"""Hook names: the generic names of `extract.hooks` and the full TransformerLens names they stand for.

`hook_resid_pre` in params means `blocks.{l}.hook_resid_pre` for every layer `l`. Full names are
listed in forward order (embeddings, then each block as the residual stream flows through it, then
`ln_final`), the order in which they are written.
"""

from __future__ import annotations

from collections.abc import Iterable

from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import GLOBAL_HOOKS, KNOWN_HOOKS, PER_LAYER_HOOKS

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
assert set(BLOCK_ORDER) == set(PER_LAYER_HOOKS)
BEFORE_BLOCKS = ("hook_embed", "hook_pos_embed")
AFTER_BLOCKS = ("ln_final.hook_scale",)
assert set(BEFORE_BLOCKS + AFTER_BLOCKS) == set(GLOBAL_HOOKS)


class UnknownHookError(PalindromeLensError):
    """A hook name that is neither extracted nor a known generic name."""


def full_hook_names(generic: Iterable[str], n_layers: int) -> list[str]:
    """The full names for generic `extract.hooks` names, in forward order, each once."""
    wanted = set(generic)
    unknown = sorted(wanted - set(KNOWN_HOOKS))
    if unknown:
        raise UnknownHookError(
            f"hook {unknown[0]!r} is not a hook we extract; valid hooks are {', '.join(KNOWN_HOOKS)} "
            "(per-layer names stand for every layer)"
        )
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
