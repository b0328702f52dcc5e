"""DVC stage `explain`: compile the mechanism that attribute found into data/explanation/program.py, with its
constants (constants.json), and measure how much of the model it reproduces (agreement.parquet, summary.json);
the failures it predicts (failures.parquet), with the explorer's per-string view of those the model gets wrong."""

import os
import time
from pathlib import Path

import torch

from palindrome_lens.atomic import read_json
from palindrome_lens.attribution.per_example import failure_views
from palindrome_lens.attribution.schemas import columns
from palindrome_lens.data.generate import SCHEMA
from palindrome_lens.data.parquet import read_table
from palindrome_lens.explanation import explain, write_explanation
from palindrome_lens.model.bridge import resolve_device
from palindrome_lens.model.classifier import load_classifier
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage

MODEL, TRAIN, TEST = Path("data/model"), Path("data/raw/train.parquet"), Path("data/raw/test.parquet")
CIRCUIT, EDITS = Path("data/attribution/circuit.json"), Path("data/attribution/adversarial.parquet")
OUT = Path("data/explanation")


def main(p: StageParams) -> None:
    params = p.explain.whole()
    clf = load_classifier(MODEL, device=resolve_device(p.device))
    if clf.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # many small forward passes: threads only add overhead (see stages/attribute.py)
    raw = {f.name: f.type for f in SCHEMA}
    train, test = (read_table(path, raw).to_pandas() for path in (TRAIN, TEST))
    edits = read_table(EDITS, columns("adversarial")).to_pandas()
    circuit = read_json(CIRCUIT, "circuit.json", "; rerun dvc repro attribute")
    started = time.perf_counter()
    result = explain(clf, circuit, train, test, edits, params, seed=p.seed)
    result.views = failure_views(clf, result.failures, circuit, params.batch_size)  # the report's explorer opens on them
    write_explanation(OUT, result)
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"explain: {OUT}: family {result.summary['family']['name']} in {time.perf_counter() - started:.1f} s"
          + (f" ({parts})" if parts else ""))
    for sentence in result.summary["sentences"]:
        print(f"explain: {sentence}")


if __name__ == "__main__":
    run_stage("explain", main)
