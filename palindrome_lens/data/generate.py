"""Labelled splits of palindromes and hard negatives, generated with numpy (no loop per string).

Negatives are mostly near-palindromes: a palindrome with one mirrored pair broken (`near1`, spread
evenly over every pair position) or two (`near2`), plus some uniform random strings; `redraw` is
ARENA's palindrome problem's negative (each second-half position of a palindrome redrawn uniformly with
a probability, so the redraw may by chance give the same letter back). Labels, distances
and mismatch positions are computed from the generated text, never assumed.

Held-out splits are drawn first and hold distinct strings: test, then val (none of test's), then
train (none of val's or test's), so no evaluation string is ever seen in training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from palindrome_lens.data.strings import pair_mismatches
from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import DataParams

KINDS = ("palindrome", "near1", "near2", "random")  # reported as absent from a split when missing
EXTRA_KINDS = ("redraw",)  # made only when the mix asks for them
SPLITS = ("train", "val", "test")
SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("label", pa.bool_()),
        ("length", pa.int32()),
        ("distance", pa.int32()),
        ("kind", pa.string()),
        ("mismatch_pos", pa.int32()),
    ]
)
_MAX_ATTEMPTS = 40


class GenerationError(PalindromeLensError):
    """The requested strings cannot be drawn (too few distinct strings for the split sizes)."""


@dataclass(frozen=True)
class Cell:
    length: int
    kind: str
    count: int


def split_counts(n: int, lengths: tuple[int, ...], palindrome_fraction: float, mix: Mapping[str, float]) -> list[Cell]:
    """Exact row counts per (length, kind): lengths share rows evenly, kinds follow the fractions."""
    cells: list[Cell] = []
    for i, length in enumerate(lengths):
        n_len = n // len(lengths) + (1 if i < n % len(lengths) else 0)
        n_pal = round(n_len * palindrome_fraction)
        counts = {"palindrome": n_pal, **_largest_remainder(n_len - n_pal, mix)}
        if length // 2 < 2:  # one mirrored pair only: two broken pairs cannot exist
            counts["near1"] += counts.pop("near2")
            counts["near2"] = 0
        cells += [Cell(length, kind, counts[kind]) for kind in (*KINDS, *EXTRA_KINDS) if counts.get(kind, 0) > 0]
    return cells


def _largest_remainder(total: int, fractions: Mapping[str, float]) -> dict[str, int]:
    raw = {k: total * f for k, f in fractions.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    leftover = total - sum(counts.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - counts[k]), list(fractions).index(k)))[:leftover]:
        counts[k] += 1
    return counts


def _draw(rng: np.random.Generator, kind: str, length: int, m: int, size: int, redraw_p: float) -> np.ndarray:
    """m strings of one kind as an (m, length) array of letter ids."""
    if kind == "random":
        return rng.integers(0, size, (m, length), dtype=np.int64)
    half = rng.integers(0, size, (m, (length + 1) // 2), dtype=np.int64)
    ids = np.concatenate([half, half[:, : length // 2][:, ::-1]], axis=1)
    n_pairs = length // 2
    if kind == "palindrome":
        return ids
    if kind == "redraw":  # labels come from the text: a redraw that happens to match is a palindrome
        second = slice(length - n_pairs, length)
        redraw = rng.random((m, n_pairs)) < redraw_p
        ids[:, second] = np.where(redraw, rng.integers(0, size, (m, n_pairs), dtype=np.int64), ids[:, second])
        return ids
    rows = np.arange(m)
    # Spread broken pairs evenly over every pair position, in random order.
    first = rng.permutation(rows % n_pairs)
    broken = [first]
    if kind == "near2":
        broken.append((first + rng.integers(1, n_pairs, m)) % n_pairs)
    for pair in broken:
        side = rng.integers(0, 2, m).astype(bool)
        col = np.where(side, length - 1 - pair, pair)
        ids[rows, col] = (ids[rows, col] + rng.integers(1, size, m)) % size
    return ids


def _keys(ids: np.ndarray) -> np.ndarray:
    """One fixed-width bytes key per row (ids + 1, so no NUL is stripped), for set operations."""
    return np.ascontiguousarray((ids + 1).astype(np.uint8)).view(f"S{ids.shape[1]}").ravel()


def _draw_cell(
    rng: np.random.Generator, cell: Cell, size: int, exclude: np.ndarray, distinct: bool, split: str,
    redraw_p: float,
) -> np.ndarray:
    """Draw cell.count rows not in `exclude` (and pairwise distinct if `distinct`)."""
    got = np.empty((0, cell.length), dtype=np.int64)
    got_keys = np.empty(0, dtype=f"S{cell.length}")
    for _ in range(_MAX_ATTEMPTS):
        need = cell.count - len(got)
        if need == 0:
            return got
        cand = _draw(rng, cell.kind, cell.length, need if not distinct else max(2 * need, 16), size, redraw_p)
        keys = _keys(cand)
        keep = ~np.isin(keys, exclude)
        if distinct:
            _, first = np.unique(keys, return_index=True)
            unique = np.zeros(len(keys), dtype=bool)
            unique[first] = True
            keep &= unique & ~np.isin(keys, got_keys)
        cand, keys = cand[keep][:need], keys[keep][:need]
        got = np.concatenate([got, cand])
        got_keys = np.concatenate([got_keys, keys])
    raise GenerationError(
        f"could draw only {len(got)} of {cell.count} distinct {cell.kind} strings of length {cell.length} "
        f"for the {split} split that are not in another split; lower data.n_{split} or add letters to data.alphabet"
    )


def _table(ids_by_length: dict[int, list[np.ndarray]], kinds_by_length: dict[int, list[str]], alphabet: str,
           rng: np.random.Generator) -> pa.Table:
    letters = np.array(list(alphabet))
    columns: dict[str, list[pa.Array]] = {name: [] for name in SCHEMA.names}
    for length, parts in ids_by_length.items():
        ids = np.concatenate(parts)
        made_as = np.concatenate([np.full(len(p), k, dtype=object) for p, k in zip(parts, kinds_by_length[length])])
        broken = pair_mismatches(ids)
        dist = broken.sum(axis=1)
        kind = np.where(dist == 0, "palindrome", made_as.astype(str))
        mismatch = np.where(dist == 1, broken.argmax(axis=1), -1)
        text = np.ascontiguousarray(letters[ids]).view(f"<U{length}").ravel()
        columns["text"].append(pa.array(text, type=pa.string()))
        columns["label"].append(pa.array(dist == 0))
        columns["length"].append(pa.array(np.full(len(ids), length, dtype=np.int32)))
        columns["distance"].append(pa.array(dist.astype(np.int32)))
        columns["kind"].append(pa.array(kind, type=pa.string()))
        columns["mismatch_pos"].append(pa.array(mismatch.astype(np.int32), mask=mismatch < 0))
    table = pa.table({name: pa.concat_arrays(parts) for name, parts in columns.items()}, schema=SCHEMA)
    return table.take(pa.array(rng.permutation(table.num_rows)))


def generate_splits(params: DataParams, seed: int) -> dict[str, pa.Table]:
    """All three splits as Arrow tables. Same params and seed -> identical tables."""
    size = len(params.alphabet)
    if size < 2 and params.palindrome_fraction < 1:
        raise GenerationError("data.alphabet: a one-letter alphabet makes only palindromes; add letters")
    n_rows = {"train": params.n_train, "val": params.n_val, "test": params.n_test}
    held_out = {length: np.empty(0, dtype=f"S{length}") for length in params.lengths}
    tables: dict[str, pa.Table] = {}
    for index, split in enumerate(("test", "val", "train")):
        rng = np.random.default_rng([seed, 1, index])
        cells = split_counts(n_rows[split], params.lengths, params.palindrome_fraction, params.negative_mix)
        ids_by_length: dict[int, list[np.ndarray]] = {length: [] for length in params.lengths}
        kinds_by_length: dict[int, list[str]] = {length: [] for length in params.lengths}
        for cell in cells:
            ids = _draw_cell(rng, cell, size, held_out[cell.length], distinct=split != "train", split=split,
                             redraw_p=params.redraw_probability)
            ids_by_length[cell.length].append(ids)
            kinds_by_length[cell.length].append(cell.kind)
        if split != "train":
            for length, parts in ids_by_length.items():
                if parts:
                    held_out[length] = np.sort(np.concatenate([held_out[length], _keys(np.concatenate(parts))]))
        ids_by_length = {k: v for k, v in ids_by_length.items() if v}
        tables[split] = _table(ids_by_length, kinds_by_length, params.alphabet, rng)
    return {split: tables[split] for split in SPLITS}
