"""How the classifier tells palindromes from near-palindromes: DLA, distributions, attention, patching,
class-balanced ablation, a node-and-edge circuit graph with its faithfulness, completeness and
minimality, causal scrubbing of a stated algorithm, weights views and an adversarial search, as tables
under data/attribution/ plus summary.json and circuit.json.

    from palindrome_lens.attribution import write_attribution, analyse

The names load lazily, so `palindrome_lens.attribution.schemas` (read by the report) imports no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Attribution", "analyse", "needed_hooks", "write_attribution"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from palindrome_lens.attribution import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
