"""The generated program as a module in this process (to measure it), and its outputs over many strings."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence

import numpy as np


def as_module(source: str, filename: str = "program.py") -> types.ModuleType:
    """Run the program's source in a fresh module named `program` (its CLI block does not run)."""
    module = types.ModuleType("program")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own template, numbers only
    return module


def logit_diffs(program: types.ModuleType, texts: Sequence[str],
                pairs: Sequence[Mapping[int, tuple[str, str]] | None] | None = None) -> np.ndarray:
    """(n,) the program's logit difference per text (with its pair interventions, if given)."""
    if pairs is None:
        return np.fromiter((program.logit_diff(t) for t in texts), dtype=np.float64, count=len(texts))
    return np.fromiter((program.logit_diff(t, p) for t, p in zip(texts, pairs)), dtype=np.float64, count=len(texts))


def features(program: types.ModuleType, texts: Sequence[str]) -> np.ndarray:
    """(n, F) the readout's inputs per text."""
    return np.array([program.features(t) for t in texts], dtype=np.float64).reshape(len(texts), -1)
