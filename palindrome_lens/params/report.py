"""`report` (read by report): sizes of the example tables and histograms."""

from __future__ import annotations

from dataclasses import dataclass

from palindrome_lens.params.rules import Section, integer, rule


@dataclass(frozen=True)
class ReportParams(Section):
    name = "report"
    n_examples: int = rule(integer(lo=1, hi=10_000))
    hist_bins: int = rule(integer(lo=2, hi=1000))
