"""The report's pages, built from the pipeline's outputs, and the one call that writes them all.

    from palindrome_lens.report.pages import report_pages, write_report
    write_report("reports", load_inputs(sources), n_examples=20, hist_bins=60)
"""

from __future__ import annotations

import os
from pathlib import Path

from palindrome_lens.report.html import Page, build_report
from palindrome_lens.report.inputs import ReportInputs
from palindrome_lens.report.pages import (
    ablation,
    adversarial,
    attention,
    attribution,
    circuit,
    evaluation,
    explanation,
    index,
    patching,
    published,
    training,
)

# The pages after the index, in nav order; dvc.yaml's `report` outs list each file plus reports/assets.
ANALYSIS = (training, evaluation, attribution, patching, attention, ablation, circuit, explanation, adversarial,
            published)
PAGE_FILES = (index.FILENAME, *(module.FILENAME for module in ANALYSIS))
DESCRIPTIONS = {module.FILENAME: module.SUMMARY for module in ANALYSIS}


def report_pages(inputs: ReportInputs, n_examples: int, hist_bins: int) -> list[Page]:
    """Every page, index first. `n_examples`: rows per example table; `hist_bins`: bins per histogram."""
    tables = inputs.attribution
    analysis = [
        training.training_page(inputs.training),
        evaluation.evaluation_page(inputs.evaluation, n_examples, hist_bins),
        attribution.attribution_page(tables, hist_bins),
        patching.patching_page(tables),
        attention.attention_page(tables, inputs.examples),
        ablation.ablation_page(tables),
        circuit.circuit_page(tables),
        explanation.explanation_page(inputs.explanation, n_examples),
        adversarial.adversarial_page(tables, n_examples),
        published.published_page(tables),
    ]
    pages = [index.index_page(inputs, analysis, DESCRIPTIONS), *analysis]
    assert tuple(p.filename for p in pages) == PAGE_FILES
    return pages


def write_report(out_dir: str | os.PathLike[str], inputs: ReportInputs, n_examples: int,
                 hist_bins: int) -> list[Path]:
    """Render every page, then write them and `assets/` into `out_dir` (each file atomically)."""
    return build_report(out_dir, report_pages(inputs, n_examples, hist_bins))
