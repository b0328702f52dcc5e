"""Runtime of the attribute stage's analyses on a saved model, per part, at 1 and 2 torch threads.

Builds the analysis set (extract.n_per_group / n_pairs from params.yaml) from data/model and
data/raw/test.parquet into a temp directory, then runs `palindrome_lens.attribution.analyse` with the
attribute params `--rounds` times, alternating thread counts round by round so load from other
processes hits both alike, and prints the median seconds of each part (the stage's own timers).

    .venv/bin/python benchmarks/attribute_runtime.py [--rounds 3] [--threads 1 2] [--model data/model]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

os.environ.setdefault("PALINDROME_LENS_QUIET", "1")

from palindrome_lens.activations import choose_examples, load_cache, load_examples, write_activations  # noqa: E402
from palindrome_lens.attribution import analyse, needed_hooks  # noqa: E402
from palindrome_lens.data.generate import SCHEMA  # noqa: E402
from palindrome_lens.data.parquet import read_table  # noqa: E402
from palindrome_lens.model.classifier import load_classifier  # noqa: E402
from palindrome_lens.params import KNOWN_HOOKS, load_params_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=str(ROOT / "data" / "model"))
    parser.add_argument("--test", default=str(ROOT / "data" / "raw" / "test.parquet"))
    args = parser.parse_args()
    params = load_params_file(ROOT / "params.yaml")
    clf = load_classifier(args.model)
    test = read_table(args.test, {f.name: f.type for f in SCHEMA})
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts"
        examples = choose_examples(test, params.extract.n_per_group, params.extract.n_pairs, params.seed,
                                   clf.tokenizer.alphabet)
        write_activations(acts, clf, examples, KNOWN_HOOKS, "float32", params.extract.batch_size)
        ex = load_examples(acts / "examples.parquet")
        cache = load_cache(acts, clf, hooks=needed_hooks(clf))
        test_df = test.to_pandas()
        print(f"model {clf.config['n_layers']}L d{clf.config['d_model']} h{clf.config['n_heads']}, "
              f"{len(ex)} analysis examples, {params.attribute.n_adversarial} adversarial palindromes, "
              f"device {clf.device}, cpus {os.cpu_count()}")
        seconds: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in range(args.rounds):
            for threads in args.threads if r % 2 == 0 else list(reversed(args.threads)):
                torch.set_num_threads(threads)
                start = time.perf_counter()
                result = analyse(clf, cache, ex, test_df, params.attribute, params.seed)
                for part, value in result.seconds.items():
                    seconds[threads][part].append(value)
                seconds[threads]["total"].append(time.perf_counter() - start)
    parts = list(next(iter(seconds.values())))
    print(f"{'part':<28}" + "".join(f"{f'{n} thread(s) s':>16}" for n in args.threads))
    for part in parts:
        print(f"{part:<28}" + "".join(f"{statistics.median(seconds[n][part]):>16.2f}" for n in args.threads))


if __name__ == "__main__":
    main()
