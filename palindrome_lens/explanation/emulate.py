"""The program run with numpy over many strings at once, to measure it: the same arithmetic as the template
(`template.PAIR_COMPARISON`), on arrays. The explain stage checks on a sample that the written program.py
gives the same numbers, so every figure is the program's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from palindrome_lens.explanation.readout import apply_readout


def _special(marks: Mapping[str, Any], name: str) -> list[tuple[float, Any]]:
    return [tuple(marks[name])] if name in marks else []


@dataclass
class LengthProgram:
    """One length's tables as arrays."""

    salience: np.ndarray  # (H, L, A, A), or (H, ceil(L / 2), A, A) merged per mirrored pair
    evidence: np.ndarray
    before: list[list[tuple[float, float]]]  # per head
    after: list[list[tuple[float, float]]]
    context_salience: np.ndarray  # (C, L, A)
    context_value: np.ndarray  # (C, L, A, k)
    context_before: list[list[tuple[float, list[float]]]]
    context_after: list[list[tuple[float, list[float]]]]
    gate: np.ndarray  # (H + 1,)
    readout: dict[str, np.ndarray]

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], length: int, n_alpha: int) -> LengthProgram:
        heads, context = entry["heads"], entry["context"]
        k = len(context[0]["value"][0][0]) if context else 0
        return cls(
            salience=np.array([h["salience"] for h in heads], dtype=np.float64),
            evidence=np.array([h["evidence"] for h in heads], dtype=np.float64),
            before=[_special(h["special"], "bos") for h in heads], after=[_special(h["special"], "eos") for h in heads],
            context_salience=np.array([c["salience"] for c in context], dtype=np.float64).reshape(len(context), length,
                                                                                                  n_alpha),
            context_value=np.array([c["value"] for c in context], dtype=np.float64).reshape(len(context), length,
                                                                                               n_alpha, k),
            context_before=[_special(c["special"], "bos") for c in context],
            context_after=[_special(c["special"], "eos") for c in context],
            gate=np.array(entry["gate"], dtype=np.float64),
            readout={side: np.array(c, dtype=np.float64) for side, c in entry["readout"].items()})


def alphabet_codes(texts: Sequence[str], alphabet: str) -> np.ndarray:
    """(n, L) each character's index in `alphabet` for strings of one length (a KeyError names a character outside
    it), from the strings' code points in numpy: a Python loop per character was a fifth of the explain stage."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, 0), dtype=np.int64)
    length = len(texts[0])
    if any(len(t) != length for t in texts):
        raise ValueError("alphabet_codes takes strings of one length")
    points = np.array(texts, dtype=f"<U{max(length, 1)}").view(np.uint32).reshape(len(texts), max(length, 1))
    points = points[:, :length]
    alpha = np.array([ord(c) for c in alphabet], dtype=np.uint32)
    order = np.argsort(alpha, kind="stable")
    at = np.minimum(np.searchsorted(alpha[order], points), len(alpha) - 1)
    found = alpha[order][at] == points
    if not found.all():
        raise KeyError(chr(int(points[~found][0])))
    return order[at].astype(np.int64)


def weighted_mean(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """softmax(scores) over axis 1 applied to values (n, P) or (n, P, k)."""
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("np,np...->n...", weights, values)


def _with_specials(before: list, middle: np.ndarray, after: list, part: int) -> np.ndarray:
    n = middle.shape[0]
    pieces = [np.broadcast_to(np.asarray(m[part], dtype=np.float64), (n, 1, *middle.shape[2:])) for m in before]
    pieces.append(middle)
    pieces += [np.broadcast_to(np.asarray(m[part], dtype=np.float64), (n, 1, *middle.shape[2:])) for m in after]
    return np.concatenate(pieces, axis=1)


class Emulator:
    """features / logit_diff of the program for strings of its lengths, optionally with pair k of every row
    comparing the characters of a source string instead (an interchange intervention)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.alphabet = "".join(map(chr, doc["alphabet"]))
        self.index = {c: i for i, c in enumerate(self.alphabet)}
        self.lengths = {int(k): LengthProgram.from_entry(v, int(k), len(self.alphabet)) for k, v in doc["lengths"].items()}

    def codes(self, texts: Sequence[str]) -> np.ndarray:
        return alphabet_codes(texts, self.alphabet)

    def _compared(self, texts: Sequence[str], pair: int | None, sources: Sequence[str] | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        codes = self.codes(texts)
        own, mirror = codes.copy(), codes[:, ::-1].copy()
        if pair is not None and sources is not None:
            src, right = self.codes(sources), codes.shape[1] - 1 - pair
            own[:, pair], mirror[:, pair] = src[:, pair], src[:, right]
            own[:, right], mirror[:, right] = src[:, right], src[:, pair]
        return codes, own, mirror

    def head_marks(self, texts: Sequence[str], pair: int | None = None, sources: Sequence[str] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per readout head, the (scores, values) (n, P) its softmax weighs: [BOS], each looked-up entry, [EOS]."""
        length = len(texts[0])
        prog = self.lengths[length]
        _, own, mirror = self._compared(texts, pair, sources)
        positions = np.arange(length)[None, :]
        rows = prog.salience.shape[1]  # L, or ceil(L / 2) for tables merged per mirrored pair (own = the left)
        if rows not in (length, (length + 1) // 2):
            raise ValueError(f"tables of {rows} rows for strings of length {length}")
        at = positions[:, :rows], own[:, :rows], mirror[:, :rows]
        return [(_with_specials(prog.before[h], prog.salience[h][at], prog.after[h], 0),
                 _with_specials(prog.before[h], prog.evidence[h][at], prog.after[h], 1))
                for h in range(len(prog.salience))]

    def features(self, texts: Sequence[str], pair: int | None = None, sources: Sequence[str] | None = None
                 ) -> np.ndarray:
        """(n, F) for strings of one length."""
        if not texts:
            return np.zeros((0, 0))
        out = [weighted_mean(scores, values)[:, None] for scores, values in self.head_marks(texts, pair, sources)]
        return np.concatenate([*out, self.context_features(texts)], axis=1)

    def context_features(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) the readout's own layer-0 reading, on the context directions, for strings of one length."""
        length = len(texts[0])
        prog = self.lengths[length]
        codes = self.codes(texts)
        positions = np.arange(length)[None, :]
        k = prog.context_value.shape[-1]
        context = np.zeros((len(texts), k))
        for c in range(len(prog.context_salience)):
            scores = _with_specials(prog.context_before[c], prog.context_salience[c][positions, codes],
                                    prog.context_after[c], 0)
            values = _with_specials(prog.context_before[c], prog.context_value[c][positions, codes],
                                    prog.context_after[c], 1)
            context += weighted_mean(scores, values)
        return context

    def logit_diff(self, texts: Sequence[str], pair: int | None = None, sources: Sequence[str] | None = None
                   ) -> np.ndarray:
        """(n,) for strings of any of the program's lengths (grouped by length internally)."""
        texts = list(texts)
        out = np.zeros(len(texts))
        lengths = np.array([len(t) for t in texts])
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            prog = self.lengths[int(length)]
            f = self.features([texts[i] for i in rows], pair, None if sources is None else [sources[i] for i in rows])
            out[rows] = apply_readout(f, self.n_heads(int(length)), prog.gate, prog.readout)
        return out

    def n_heads(self, length: int) -> int:
        """Readout heads of a length's program (the gate reads their features)."""
        return len(self.lengths[length].salience)
