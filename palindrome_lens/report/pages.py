"""The report's pages, built from the pipeline's outputs, and the one call that writes them all.

    from palindrome_lens.report.pages import report_pages, write_report
    write_report("reports", load_inputs(sources), n_examples=20, hist_bins=60)
"""

from __future__ import annotations

import os
from pathlib import Path

from palindrome_lens.report import (
    pages_ablation,
    pages_adversarial,
    pages_attention,
    pages_attribution,
    pages_evaluation,
    pages_index,
    pages_patching,
    pages_training,
)
from palindrome_lens.report.html import Page, build_report
from palindrome_lens.report.inputs import ReportInputs

# Page files in nav order; dvc.yaml's `report` outs list each of them plus reports/assets.
PAGE_FILES = (
    pages_index.FILENAME,
    pages_training.FILENAME,
    pages_evaluation.FILENAME,
    pages_attribution.FILENAME,
    pages_patching.FILENAME,
    pages_attention.FILENAME,
    pages_ablation.FILENAME,
    pages_adversarial.FILENAME,
)
DESCRIPTIONS = {
    module.FILENAME: module.SUMMARY
    for module in (pages_training, pages_evaluation, pages_attribution, pages_patching, pages_attention,
                   pages_ablation, pages_adversarial)
}


def report_pages(inputs: ReportInputs, n_examples: int, hist_bins: int) -> list[Page]:
    """Every page, index first. `n_examples`: rows per example table; `hist_bins`: bins per histogram."""
    attribution = inputs.attribution
    analysis = [
        pages_training.training_page(inputs.training),
        pages_evaluation.evaluation_page(inputs.evaluation, n_examples, hist_bins),
        pages_attribution.attribution_page(attribution, hist_bins),
        pages_patching.patching_page(attribution),
        pages_attention.attention_page(attribution, inputs.examples),
        pages_ablation.ablation_page(attribution),
        pages_adversarial.adversarial_page(attribution, n_examples),
    ]
    pages = [pages_index.index_page(inputs, analysis, DESCRIPTIONS), *analysis]
    assert tuple(p.filename for p in pages) == PAGE_FILES
    return pages


def write_report(out_dir: str | os.PathLike[str], inputs: ReportInputs, n_examples: int,
                 hist_bins: int) -> list[Path]:
    """Render every page, then write them and `assets/` into `out_dir` (each file atomically)."""
    return build_report(out_dir, report_pages(inputs, n_examples, hist_bins))
