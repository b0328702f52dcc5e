"""The report's pages, built from the pipeline's outputs, and the one call that writes them all.

    from palindrome_lens.report.pages import report_pages, write_report
    write_report("reports", load_inputs(sources), n_examples=20, hist_bins=60)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from palindrome_lens.report.html import Page, build_report
from palindrome_lens.report.inputs import ReportInputs
from palindrome_lens.report.pages import (
    ablation,
    adversarial,
    attention,
    attribution,
    circuit,
    discovery,
    evaluation,
    explanation,
    explorer,
    index,
    patching,
)

# The pages after the index, in nav order: each page module (FILENAME, SUMMARY) with the call that builds it from
# the inputs, n_examples and hist_bins. A new page is one line here; dvc.yaml's `report` outs list each file
# plus reports/assets and reports/data.
Build = Callable[[ReportInputs, int, int], Page]
BUILDERS: tuple[tuple[ModuleType, Build], ...] = (
    (evaluation, lambda inputs, n, bins: evaluation.evaluation_page(inputs.evaluation, n, bins, inputs.training)),
    (attribution, lambda inputs, n, bins: attribution.attribution_page(inputs.attribution, bins)),
    (patching, lambda inputs, n, bins: patching.patching_page(inputs.attribution)),
    (attention, lambda inputs, n, bins: attention.attention_page(inputs.attribution, inputs.examples)),
    (ablation, lambda inputs, n, bins: ablation.ablation_page(inputs.attribution)),
    (circuit, lambda inputs, n, bins: circuit.circuit_page(inputs.attribution)),
    (discovery, lambda inputs, n, bins: discovery.discovery_page(inputs.attribution)),
    (explanation, lambda inputs, n, bins: explanation.explanation_page(inputs.explanation, n)),
    (explorer, lambda inputs, n, bins: explorer.explorer_page(
        inputs.attribution, inputs.explanation.views if inputs.explanation else None)),
    (adversarial, lambda inputs, n, bins: adversarial.adversarial_page(inputs.attribution, n)),
)
ANALYSIS = tuple(module for module, _ in BUILDERS)
PAGE_FILES = (index.FILENAME, *(module.FILENAME for module in ANALYSIS))
DESCRIPTIONS = {module.FILENAME: module.SUMMARY for module in ANALYSIS}


def report_pages(inputs: ReportInputs, n_examples: int, hist_bins: int) -> list[Page]:
    """Every page, index first. `n_examples`: rows per example table; `hist_bins`: bins per histogram."""
    analysis = [build(inputs, n_examples, hist_bins) for _, build in BUILDERS]
    pages = [index.index_page(inputs, analysis, DESCRIPTIONS), *analysis]
    assert tuple(p.filename for p in pages) == PAGE_FILES
    return pages


def write_report(out_dir: str | os.PathLike[str], inputs: ReportInputs, n_examples: int,
                 hist_bins: int) -> list[Path]:
    """Render every page, then write them and `assets/` into `out_dir` (each file atomically)."""
    return build_report(out_dir, report_pages(inputs, n_examples, hist_bins))
