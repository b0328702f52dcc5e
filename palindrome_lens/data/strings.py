"""What a palindrome is, in one place: labels and distances are always computed from the text."""

from __future__ import annotations

import numpy as np


def distance(text: str) -> int:
    """Number of mirrored pairs (i, n-1-i), i < n/2, whose characters differ; 0 for a palindrome."""
    n = len(text)
    return sum(text[i] != text[n - 1 - i] for i in range(n // 2))


def is_palindrome(text: str) -> bool:
    return distance(text) == 0


def mismatch_positions(text: str) -> list[int]:
    """Left index of every broken mirrored pair."""
    n = len(text)
    return [i for i in range(n // 2) if text[i] != text[n - 1 - i]]


def pair_mismatches(ids: np.ndarray) -> np.ndarray:
    """Vectorised: for an (n, L) array of letter ids, a (n, L//2) bool array of broken pairs."""
    half = ids.shape[1] // 2
    return ids[:, :half] != ids[:, ::-1][:, :half]
