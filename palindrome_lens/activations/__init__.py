"""Extracted activations: the analysis set, cached on disk per hook, reloadable as an ActivationCache.

    from palindrome_lens.activations import load_cache, load_examples
    examples = load_examples("data/activations/examples.parquet")
    cache = load_cache("data/activations", clf.model, hooks=["blocks.0.attn.hook_pattern"], examples=[0, 5])
"""

from palindrome_lens.activations.cache import (
    load_cache,
    load_manifest,
    select_hooks,
    select_rows,
    verify_sources,
)
from palindrome_lens.activations.examples import EXAMPLES_SCHEMA, choose_examples, corrupt_pair, load_examples
from palindrome_lens.activations.extract import write_activations
from palindrome_lens.hooks import UnknownHookError, full_hook_names

__all__ = [
    "EXAMPLES_SCHEMA",
    "UnknownHookError",
    "choose_examples",
    "corrupt_pair",
    "full_hook_names",
    "load_cache",
    "load_examples",
    "load_manifest",
    "select_hooks",
    "select_rows",
    "verify_sources",
    "write_activations",
]
