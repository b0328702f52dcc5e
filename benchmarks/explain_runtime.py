"""What the explain stage adds to `dvc repro`: the stage itself (a fresh interpreter, imports included, as DVC
runs it), each ladder level's build, and the report's explanation page, from the workspace's outputs (run `dvc repro` first).

Runs `python -m stages.explain` `--rounds` times into a temp copy of data/explanation's place (the workspace's
own outputs are left alone), printing the median wall time and the stage's own parts, then times rendering
the explanation page in this process.

    .venv/bin/python benchmarks/explain_runtime.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("data/model", "data/raw/train.parquet", "data/raw/test.parquet", "data/attribution/circuit.json",
          "data/attribution/adversarial.parquet")
PART = re.compile(r"(\w[\w ]*?) (\d+\.\d) s")


def stage_once(work: Path) -> tuple[float, dict[str, float], dict[str, float]]:
    env = {**os.environ, "PALINDROME_LENS_QUIET": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stages.explain"], cwd=work, env=env, capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - start
    first = proc.stdout.splitlines()[0]
    found = {name.strip(): float(value) for name, value in PART.findall(first[first.find("("):])}
    levels = {name.removeprefix("level "): v for name, v in found.items() if name.startswith("level ")}
    parts = {name: v for name, v in found.items() if not name.startswith("level ")}
    return wall, parts, levels  # levels: each ladder level's build (its readout fit included), within "ladder"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    missing = [p for p in NEEDED if not (ROOT / p).exists()]
    if missing:
        sys.exit(f"missing {missing[0]}: run `dvc repro attribute` first")
    walls, parts, levels = [], defaultdict(list), defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "repo"
        shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", ".git", ".dvc", "reports", "activations",
                                                                  "explanation", "__pycache__"))
        for _ in range(args.rounds):
            wall, seconds, built = stage_once(work)
            walls.append(wall)
            for name, value in seconds.items():
                parts[name].append(value)
            for name, value in built.items():
                levels[name].append(value)
        from palindrome_lens.report.explanation_inputs import load_explanation
        from palindrome_lens.report.html import render_page
        from palindrome_lens.report.pages.explanation import explanation_page

        renders = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            page = explanation_page(load_explanation(work / "data" / "explanation"), 20)
            render_page(page, [page])
            renders.append(time.perf_counter() - start)
    print(f"cpus {os.cpu_count()}, torch threads 1 (as the stage sets them), {args.rounds} rounds, medians:")
    print(f"{'explain stage, wall (python -m stages.explain)':<52}{statistics.median(walls):>8.1f} s")
    for name, values in parts.items():
        print(f"{'  of which ' + name:<52}{statistics.median(values):>8.1f} s")
    for name, values in levels.items():
        print(f"{'    ladder level ' + name + ' (build and readout fit)':<52}{statistics.median(values):>8.2f} s")
    print(f"{'report: load and render explanation.html':<52}{statistics.median(renders):>8.1f} s")
    print(f"{'added to dvc repro':<52}{statistics.median(walls) + statistics.median(renders):>8.1f} s")


if __name__ == "__main__":
    main()
