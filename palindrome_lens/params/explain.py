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
    n_interchange: int = rule(integer(lo=1, hi=1_000_000))  # base/source pairs per program variable
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
    agreement_target: float = rule(number(lo=0.0, hi=1.0, lo_open=True))  # share of decisions alike
    error_recall_target: float = rule(number(lo=0.0, hi=1.0))  # share of the model's own errors reproduced
    error_precision_target: float = rule(number(lo=0.0, hi=1.0))  # share of the predicted errors that are the model's
    iia_target: float = rule(number(lo=0.0, hi=1.0, lo_open=True))  # on the decision-changing pairs
    iia_control_max: float = rule(number(lo=0.0, hi=1.0))  # the wrong-position control must stay at or below
