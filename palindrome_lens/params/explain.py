"""`explain` (read by explain): how the explanation program is compiled from the model, and the targets
that the sentence "the model runs this program" must pass."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.params.rules import Section, choice, integer, number, rule

FAMILIES = ("auto", "pair_comparison")  # auto: from circuit.json; a name: that template even if its hypothesis fails


@dataclass(frozen=True)
class ExplainParams(Section):
    name = "explain"
    family: str = rule(choice(FAMILIES))  # which program template
    n_contexts: int = rule(integer(lo=1, hi=1024))  # controlled strings averaged per table entry
    context_dims: int = rule(integer(lo=0, hi=8))  # directions of the readout position's own layer-0 reading
    n_fit: int = rule(integer(lo=10, hi=1_000_000))  # train strings the fitted readout is fitted on
    n_fit_edits: int = rule(integer(lo=0, hi=100_000))  # train palindromes whose single edits join that fit
    rank: int = rule(integer(lo=1, hi=64))  # CP rank of a broken pair's combination (the ladder's combination level)
    n_interchange: int = rule(integer(lo=1, hi=1_000_000))  # base/source pairs per program variable
    n_graded: int = rule(integer(lo=2, hi=100_000))  # base/source pairs per pair and kind (graded interventions)
    failure_chars: int = rule(integer(lo=1, hi=8))  # characters of the palindromes the failure search edits
    failure_proposals: int = rule(integer(lo=1, hi=1_000_000))  # strings each level proposes to fool the model
    failure_random_edits: int = rule(integer(lo=1, hi=10_000_000))  # uniformly drawn single edits: the baseline
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
    agreement_target: float = rule(number(lo=0.0, hi=1.0, lo_open=True))  # share of decisions alike
    error_recall_target: float = rule(number(lo=0.0, hi=1.0))  # share of the model's own errors reproduced
    error_precision_target: float = rule(number(lo=0.0, hi=1.0))  # share of the predicted errors that are the model's
    min_errors: int = rule(integer(lo=1, hi=1_000_000))  # the errors gate judges only from this many model errors
    spearman_target: float = rule(number(lo=-1.0, hi=1.0))  # within-class Spearman on the edits, the graded fit
    r2_target: float = rule(number(lo=-1.0, hi=1.0))  # within-class R^2 on the edits
    iia_target: float = rule(number(lo=0.0, hi=1.0, lo_open=True))  # on the decision-changing pairs
    iia_control_max: float = rule(number(lo=0.0, hi=1.0))  # the wrong-position control must stay at or below
