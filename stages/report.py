"""DVC stage `report`: offline HTML reports under reports/ from the train, evaluate, extract and attribute outputs."""

import dataclasses
from pathlib import Path

from palindrome_lens.params import StageParams
from palindrome_lens.report.inputs import Sources, load_inputs
from palindrome_lens.report.pages import write_report
from palindrome_lens.report.provenance import collect_provenance
from palindrome_lens.stage import run_stage

OUT = Path("reports")
SOURCES = Sources(
    train_metrics=Path("data/train/metrics.json"),
    train_loss=Path("data/train/plots/metrics/train/loss.tsv"),
    val_accuracy=Path("data/train/plots/metrics/val/accuracy.tsv"),
    eval_metrics=Path("data/eval/metrics.json"),
    predictions=Path("data/eval/predictions.parquet"),
    attribution=Path("data/attribution"),
    activations=Path("data/activations"),
    explanation=Path("data/explanation"),
)


def main(p: StageParams) -> None:
    params = p.report.whole()
    sources = dataclasses.replace(SOURCES, provenance=collect_provenance(Path("."), p.as_dict()))
    written = write_report(OUT, load_inputs(sources), n_examples=params.n_examples, hist_bins=params.hist_bins)
    pages = [path for path in written if path.suffix == ".html"]
    print(f"report: {len(pages)} pages in {OUT}/ ({', '.join(path.name for path in pages)}); open {OUT}/index.html")


if __name__ == "__main__":
    run_stage("report", main)
