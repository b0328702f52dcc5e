"""Runtime of the attribute analyses on a saved model, per analysis, at 1 and 2 torch threads.

Builds the default analysis set (extract.n_per_group / n_pairs from params.yaml) from data/model and
data/raw/test.parquet into a temp directory, then times each part of `palindrome_lens.attribution`
`--rounds` times, alternating thread counts round by round so load from other processes hits both
alike, and prints medians.

    .venv/bin/python benchmarks/attribute_runtime.py [--rounds 3] [--threads 1 2] [--model data/model]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("PALINDROME_LENS_QUIET", "1")

from palindrome_lens.activations import choose_examples, load_cache, load_examples, write_activations  # noqa: E402
from palindrome_lens.attribution import (  # noqa: E402
    ablation_table,
    activation_patching,
    adversarial_search,
    choose_palindromes,
    circuit_summary,
    direct_logit_attribution,
    mean_patterns,
    mirror_scores,
    needed_hooks,
    positional_qk,
)
from palindrome_lens.attribution.common import forward_logit_diff  # noqa: E402
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
    args = parser.parse_args()
    params = load_params_file(ROOT / "params.yaml")
    clf = load_classifier(args.model)
    test = read_table(ROOT / "data" / "raw" / "test.parquet", {f.name: f.type for f in SCHEMA})
    a = params.attribute
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts"
        examples = choose_examples(test, params.extract.n_per_group, params.extract.n_pairs, params.seed,
                                   clf.tokenizer.alphabet)
        write_activations(acts, clf, examples, KNOWN_HOOKS, "float32", params.extract.batch_size)
        ex = load_examples(acts / "examples.parquet")
        cache = load_cache(acts, clf, hooks=needed_hooks(clf))
        test_df = test.to_pandas()
        tokens = clf.encode(ex["text"].tolist())
        model, bs = clf.model, a.batch_size
        print(f"model {clf.config['n_layers']}L d{clf.config['d_model']} h{clf.config['n_heads']}, "
              f"{len(ex)} analysis examples, {a.n_adversarial} adversarial palindromes, batch {bs}, "
              f"device {clf.device}, cpus {os.cpu_count()}")
        times: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in range(args.rounds):
            order = args.threads if r % 2 == 0 else list(reversed(args.threads))
            for threads in order:
                torch.set_num_threads(threads)
                t = times[threads]
                start = time.perf_counter()
                diff = _timed(t, "forward", forward_logit_diff, model, tokens, bs)
                _timed(t, "dla", direct_logit_attribution, model, cache, ex, diff)
                _timed(t, "attention", mean_patterns, model, cache, ex, tokens)
                mirror = _timed(t, "mirror", mirror_scores, model, cache, ex)
                patching = _timed(t, "patching", activation_patching, model, tokens, cache, ex, bs)
                ablation = _timed(t, "ablation", ablation_table, model, tokens, cache, ex, bs)
                _timed(t, "weights", positional_qk, model, clf.tokenizer.width)
                sources = choose_palindromes(test_df, a.n_adversarial, params.seed)
                _timed(t, "adversarial", adversarial_search, model, clf.tokenizer, sources, bs)
                _timed(t, "summary", circuit_summary, model, tokens, cache, ex, ablation, patching, mirror,
                       a.max_circuit_heads, bs)
                t["total"].append(time.perf_counter() - start)
    parts = list(next(iter(times.values())))
    print(f"{'part':<12}" + "".join(f"{f'{n} thread(s) s':>16}" for n in args.threads))
    for part in parts:
        print(f"{part:<12}" + "".join(f"{statistics.median(times[n][part]):>16.2f}" for n in args.threads))


def _timed(store: dict[str, list[float]], name: str, fn: Callable[..., Any], *args: Any) -> Any:
    start = time.perf_counter()
    out = fn(*args)
    store[name].append(time.perf_counter() - start)
    return out


if __name__ == "__main__":
    main()
