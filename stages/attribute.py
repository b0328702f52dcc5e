"""DVC stage `attribute`: explain the classifier (DLA, attention, patching, class-balanced ablation, the
circuit graph and its evaluation, causal scrubbing, weights, adversarial edits) from the model and its
extracted activations; tables, summary.json and circuit.json under data/attribution/."""

import os
import time
from pathlib import Path

import torch

from palindrome_lens.activations import verify_sources
from palindrome_lens.attribution import write_attribution
from palindrome_lens.data.generate import SCHEMA
from palindrome_lens.data.parquet import read_table
from palindrome_lens.model.bridge import resolve_device
from palindrome_lens.model.classifier import load_classifier
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage

MODEL, ACTIVATIONS, TEST = Path("data/model"), Path("data/activations"), Path("data/raw/test.parquet")
OUT = Path("data/attribution")


def main(p: StageParams) -> None:
    params = p.attribute.whole()
    clf = load_classifier(MODEL, device=resolve_device(p.device))
    if clf.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Thousands of tiny forward passes: intra-op threads only add overhead, and on a shared box they
        # thrash (benchmarks/attribute_runtime.py: 10.5 s at 1 thread vs 75.7 s at 2 on 2 busy cores).
        torch.set_num_threads(1)
    verify_sources(ACTIVATIONS, model_dir=MODEL, data_files=[TEST])
    test = read_table(TEST, {f.name: f.type for f in SCHEMA}).to_pandas()
    started = time.perf_counter()
    result = write_attribution(OUT, clf, ACTIVATIONS, test, params, seed=p.seed)
    summary = result.summary
    print(f"attribute: {OUT}: {len(summary['files'])} files from {summary['n_examples']} examples on {clf.device} "
          f"in {time.perf_counter() - started:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in result.seconds.items())}); "
          f"DLA max error {summary['dla_max_abs_error']:.2e}")
    for sentence in summary["sentences"]:
        print(f"attribute: {sentence}")


if __name__ == "__main__":
    run_stage("attribute", main)
