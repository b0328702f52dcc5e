"""The shared entry point of every DVC stage: validate params first, then run, failing cleanly."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import StageParams, load_stage_params

# torch 2.13's AVX-512 softmax takes a slow path when the last dimension is shorter than its 16 lanes, as every
# attention row here is (12 positions on the defaults): 8.4 ms against 1.5 ms with the AVX2 kernels for one
# (1184, 4, 12, 12) block on one thread (`benchmarks/cpu_kernels.py`). torch reads this before its first CPU kernel
# runs, so it is set before any work; a value the caller set wins, and a CPU without AVX2 uses what it has.
CPU_KERNELS = ("ATEN_CPU_CAPABILITY", "avx2")


def prefer_fast_cpu_kernels() -> None:
    os.environ.setdefault(*CPU_KERNELS)


def run_stage(stage: str, body: Callable[[StageParams], None], root: str | Path = ".") -> None:
    """Load and validate `stage`'s declared params, then call `body`; our errors exit 2 with one line."""
    prefer_fast_cpu_kernels()
    try:
        params = load_stage_params(stage, root)
        body(params)
    except PalindromeLensError as exc:
        print(f"error in stage {stage}: {exc}", file=sys.stderr)
        sys.exit(2)


def tqdm_disabled() -> bool:
    """Progress bars are on for people, off when PALINDROME_LENS_QUIET is set (tests, CI logs)."""
    return bool(os.environ.get("PALINDROME_LENS_QUIET"))
