"""How the classifier tells palindromes from near-palindromes: DLA, distributions, attention, patching,
class-balanced ablation, a node-and-edge circuit graph with its faithfulness, completeness and
minimality, causal scrubbing of a stated algorithm, weights views and an adversarial search, as tables
under data/attribution/ plus summary.json and circuit.json.

    from palindrome_lens.attribution import write_attribution, analyse
"""

from palindrome_lens.attribution.run import Attribution, analyse, needed_hooks, write_attribution

__all__ = ["Attribution", "analyse", "needed_hooks", "write_attribution"]
