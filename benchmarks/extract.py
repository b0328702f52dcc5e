"""Extraction: examples/s, bytes on disk per example per dtype, and peak RSS as the number of examples grows.

Each (examples, dtype) run is its own subprocess, so its peak RSS (`ru_maxrss`) is its own: model,
batches and writing included. The model has the shape in params.yaml (`model.*`, untrained: speed and
size do not depend on the weights), the hooks and batch size are `extract.*`, the strings are random
strings of the largest `data.lengths`. Runs are interleaved round by round and figures are medians
over rounds. The goal: 100k examples under 1 GiB peak RSS (nothing is held in memory but one batch).

    .venv/bin/python benchmarks/extract.py [--sizes 10000 100000] [--dtypes float32 float16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]


def child(n: int, dtype: str, out: Path) -> dict:
    """One extraction of n random strings; returns its figures."""
    from palindrome_lens.activations import EXAMPLES_SCHEMA, write_activations
    from palindrome_lens.data.strings import pair_mismatches
    from palindrome_lens.data.tokenizer import Tokenizer
    from palindrome_lens.model.bridge import new_native_model, resolve_device, wrap_native
    from palindrome_lens.model.classifier import Classifier
    from palindrome_lens.model.config import model_config
    from palindrome_lens.params import load_params_file

    params = load_params_file(ROOT / "params.yaml")
    length = max(params.data.lengths)
    tokenizer = Tokenizer(params.data.alphabet, length, params.tokenize.add_eos)
    config = model_config(params.model, tokenizer, params.seed, [length])
    clf = Classifier(wrap_native(new_native_model(config), config).to(resolve_device("auto")), tokenizer, config)
    ids = np.random.default_rng(0).integers(0, len(params.data.alphabet), (n, length))
    letters = np.array(list(params.data.alphabet))
    dist = pair_mismatches(ids).sum(axis=1)
    table = pa.table({
        "example_id": np.arange(n, dtype=np.int64),
        "text": ["".join(row) for row in letters[ids]],
        "label": dist == 0,
        "kind": ["random"] * n,
        "distance": dist.astype(np.int32),
        "length": np.full(n, length, dtype=np.int32),
        "mismatch_pos": pa.nulls(n, pa.int32()),
        "pair_id": pa.nulls(n, pa.int32()),
        "role": pa.nulls(n, pa.string()),
    }, schema=EXAMPLES_SCHEMA)
    del ids, letters, dist
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    manifest = write_activations(out, clf, table, params.extract.hooks, dtype, params.extract.batch_size)
    seconds = time.perf_counter() - start
    files = [p for p in out.iterdir() if p.suffix == ".npy"]
    return {
        "n": n,
        "dtype": dtype,
        "seconds": seconds,
        "examples_per_s": n / seconds,
        "activation_bytes_per_example": sum(p.stat().st_size for p in files) / n,
        "hooks": len(manifest["hooks"]),
        "files": len(files),
        "peak_rss_before_extract": rss_before,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device": str(clf.device),
    }


def run_child(n: int, dtype: str, scratch: Path) -> dict:
    out = scratch / f"acts_{n}_{dtype}"
    env = {**os.environ, "PALINDROME_LENS_QUIET": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", str(n), dtype, str(out)], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {n} {dtype} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None, help="where to write (needs ~35 KB/example)")
    parser.add_argument("--child", nargs=3, metavar=("N", "DTYPE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], Path(args.child[2]))))
        return
    configs = [(n, d) for n in args.sizes for d in args.dtypes]
    results: dict[tuple[int, str], list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for r in range(args.rounds):
            for config in configs if r % 2 == 0 else configs[::-1]:
                results[config].append(run_child(*config, Path(scratch)))
    first = results[configs[0]][0]
    print(f"extract benchmark: {first['hooks']} hooks in {first['files']} files, device {first['device']}, "
          f"{args.rounds} rounds (medians), torch threads default, cores {os.cpu_count()}")
    print(f"{'examples':>9} {'dtype':>8} {'examples/s':>11} {'bytes/example':>14} {'peak RSS':>10} "
          f"{'RSS before extract':>19}")
    for (n, dtype), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs)
               for k in ("examples_per_s", "activation_bytes_per_example", "peak_rss", "peak_rss_before_extract")}
        print(f"{n:>9} {dtype:>8} {med['examples_per_s']:>11.0f} {med['activation_bytes_per_example']:>14.0f} "
              f"{med['peak_rss'] / 2**20:>7.0f} MiB {med['peak_rss_before_extract'] / 2**20:>15.0f} MiB")


if __name__ == "__main__":
    main()
