"""How the classifier tells palindromes from near-palindromes: DLA, distributions, attention, patching,
ablation, weights views, adversarial search and a circuit summary, as tables under data/attribution/.

    from palindrome_lens.attribution import write_attribution, analyse
"""

from palindrome_lens.attribution.ablation import (
    Ablation,
    ablation_table,
    mean_ablation,
    run_ablated,
    zero_ablation,
)
from palindrome_lens.attribution.adversarial import adversarial_search, choose_palindromes, single_edits
from palindrome_lens.attribution.attention import mean_patterns, mirror_scores
from palindrome_lens.attribution.common import logit_diff
from palindrome_lens.attribution.distributions import centred_components, distribution_stats
from palindrome_lens.attribution.dla import component_stack, direct_logit_attribution, fold_final_ln
from palindrome_lens.attribution.patching import activation_patching, corruption_pairs
from palindrome_lens.attribution.run import Attribution, analyse, needed_hooks, write_attribution
from palindrome_lens.attribution.summary import choose_circuit, circuit_summary, head_evidence
from palindrome_lens.attribution.weights import pos_cosine, pos_embed_table, positional_qk

__all__ = [
    "Ablation",
    "Attribution",
    "ablation_table",
    "activation_patching",
    "adversarial_search",
    "analyse",
    "centred_components",
    "choose_circuit",
    "choose_palindromes",
    "circuit_summary",
    "component_stack",
    "corruption_pairs",
    "direct_logit_attribution",
    "distribution_stats",
    "fold_final_ln",
    "head_evidence",
    "logit_diff",
    "mean_ablation",
    "mean_patterns",
    "mirror_scores",
    "needed_hooks",
    "pos_cosine",
    "pos_embed_table",
    "positional_qk",
    "run_ablated",
    "single_edits",
    "write_attribution",
    "zero_ablation",
]
