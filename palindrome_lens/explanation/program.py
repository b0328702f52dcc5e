"""The written program run on its own, in a fresh interpreter, to check that it gives the measured numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from palindrome_lens.errors import AnalysisError
from palindrome_lens.explanation.files import PROGRAM

# Read texts (JSON on stdin), print their logit differences (JSON); -I: no site packages, no environment.
_RUN = ("import json, sys; sys.path.insert(0, '.'); import program; "
        "print(json.dumps([program.logit_diff(t) for t in json.load(sys.stdin)]))")


def run_program(source: str, texts: Sequence[str], timeout: float = 300) -> np.ndarray:
    """(n,) logit differences that `source`, saved as program.py, computes in a fresh `python -I`."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / PROGRAM).write_text(source, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-I", "-c", _RUN], cwd=tmp, input=json.dumps(list(texts)),
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AnalysisError(f"the generated program.py failed on its own: {proc.stderr.strip()[-500:]}")
    return np.asarray(json.loads(proc.stdout), dtype=np.float64)
