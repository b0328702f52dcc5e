"""Why every stage asks torch for its AVX2 CPU kernels (palindrome_lens/stage.py): torch's softmax over the
attention rows, and one whole forward pass of the model, timed with each kernel set torch offers on this CPU.

Each capability runs in its own process (torch fixes it at the first kernel), alternating round by round; prints
the median milliseconds per call and the ratio to the fastest.

    .venv/bin/python benchmarks/cpu_kernels.py [--rounds 3] [--model data/model] [--rows 1184]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPABILITIES = ("avx512", "avx2", "default")

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from palindrome_lens.model.classifier import load_classifier
from palindrome_lens.attribution.common import forward_logit_diff
model_dir, rows = sys.argv[1], int(sys.argv[2])
clf = load_classifier(model_dir)
n_ctx = max(clf.config["lengths"]) + 2
scores = torch.randn(rows, clf.config["n_heads"], n_ctx, n_ctx, generator=torch.Generator().manual_seed(0))
texts = ["".join(clf.tokenizer.alphabet[(i * 7 + j) % len(clf.tokenizer.alphabet)] for j in range(n_ctx - 2))
         for i in range(rows)]
tokens = clf.encode(texts)

def per_call(fn, n):
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000

print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(),
                  "softmax": per_call(lambda: torch.softmax(scores, -1), 20),
                  "forward": per_call(lambda: forward_logit_diff(clf.model, tokens, rows), 5)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=str(ROOT / "data" / "model"))
    parser.add_argument("--rows", type=int, default=1184)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {c: {"softmax": [], "forward": []} for c in CAPABILITIES}
    names = {}
    for r in range(args.rounds):
        for cap in CAPABILITIES if r % 2 == 0 else CAPABILITIES[::-1]:
            env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "PYTHONPATH": str(ROOT)}
            out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.rows)], env=env, check=True,
                                 capture_output=True, text=True, cwd=ROOT)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            names[cap] = row["capability"]
            for part in ("softmax", "forward"):
                times[cap][part].append(row[part])
    print(f"model {args.model}, {args.rows} rows, one thread, {args.rounds} rounds (median ms per call)")
    print(f"{'asked':<10}{'got':<10}{'softmax':>10}{'forward':>10}")
    medians = {c: {p: statistics.median(v) for p, v in times[c].items()} for c in CAPABILITIES}
    for cap in CAPABILITIES:
        print(f"{cap:<10}{names[cap]:<10}{medians[cap]['softmax']:>10.2f}{medians[cap]['forward']:>10.2f}")
    best = {p: min(m[p] for m in medians.values()) for p in ("softmax", "forward")}
    print("ratio to the fastest: " + "; ".join(
        f"{cap} softmax {medians[cap]['softmax'] / best['softmax']:.2f}x, forward "
        f"{medians[cap]['forward'] / best['forward']:.2f}x" for cap in CAPABILITIES))


if __name__ == "__main__":
    main()
