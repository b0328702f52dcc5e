"""The analysis set: a stratified sample of the test split plus corruption pairs for patching.

Rows, in order (row i has example_id i, the row of every activation tensor):
1. up to `n_per_group` test strings per (length, kind), role null;
2. per length, up to `n_pairs` test palindromes (role "clean"), each followed by its distance-1
   variants, one per mirrored pair (role "corrupted", same pair_id, mismatch_pos = the pair's left
   index). A variant changes one character of the pair to another letter, so it may not be in any
   split; its label, distance and kind are computed from its text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from palindrome_lens.data.generate import KINDS, SCHEMA
from palindrome_lens.data.parquet import read_table, write_table
from palindrome_lens.data.strings import distance, mismatch_positions
from palindrome_lens.errors import DataFileError, PalindromeLensError

EXAMPLES_SCHEMA = pa.schema(
    [
        ("example_id", pa.int64()),
        ("text", pa.string()),
        ("label", pa.bool_()),
        ("kind", pa.string()),
        ("distance", pa.int32()),
        ("length", pa.int32()),
        ("mismatch_pos", pa.int32()),
        ("pair_id", pa.int32()),
        ("role", pa.string()),
    ]
)
CLEAN, CORRUPTED = "clean", "corrupted"
_STREAM = 4  # a seed stream of its own, so the choice does not mirror generate's draws


def choose_examples(test: pa.Table, n_per_group: int, n_pairs: int, seed: int, alphabet: str) -> pa.Table:
    """The analysis set (EXAMPLES_SCHEMA) drawn from the test split; same inputs, same rows."""
    if len(alphabet) < 2:
        raise PalindromeLensError(f"alphabet {alphabet!r} has one letter; a corrupted variant needs another letter")
    df = test.select([f.name for f in SCHEMA]).to_pandas()
    rng = np.random.default_rng([seed, _STREAM])
    lengths = sorted(int(n) for n in df["length"].unique())
    kinds = [k for k in KINDS if k in set(df["kind"])] + sorted(set(df["kind"]) - set(KINDS))
    rows: list[dict] = []
    for length in lengths:
        for kind in kinds:
            pool = np.flatnonzero((df["length"] == length).to_numpy() & (df["kind"] == kind).to_numpy())
            for i in _sample(rng, pool, n_per_group):
                rows.append(_test_row(df, i))
    pair_id = 0
    for length in lengths:
        pool = np.flatnonzero((df["length"] == length).to_numpy() & (df["distance"] == 0).to_numpy())
        for i in _sample(rng, pool, n_pairs):
            clean = str(df["text"].iat[i])
            rows.append(_row(clean, pair_id=pair_id, role=CLEAN))
            for pos in range(length // 2):
                rows.append(_row(corrupt_pair(clean, pos, rng, alphabet), pair_id=pair_id, role=CORRUPTED))
            pair_id += 1
    if not rows:
        raise DataFileError("the test split is empty: there is nothing to extract")
    for example_id, row in enumerate(rows):
        row["example_id"] = example_id
    return pa.Table.from_pylist(rows, schema=EXAMPLES_SCHEMA)


def _sample(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """Up to n distinct rows of pool, in test-split order."""
    return np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False)) if len(pool) else pool


def _test_row(df: pd.DataFrame, i: int) -> dict:
    mismatch = df["mismatch_pos"].iat[i]
    return {
        "text": str(df["text"].iat[i]),
        "label": bool(df["label"].iat[i]),
        "kind": str(df["kind"].iat[i]),
        "distance": int(df["distance"].iat[i]),
        "length": int(df["length"].iat[i]),
        "mismatch_pos": None if pd.isna(mismatch) else int(mismatch),
        "pair_id": None,
        "role": None,
    }


def _row(text: str, pair_id: int, role: str) -> dict:
    """A generated row: label, distance, kind and mismatch_pos computed from the text."""
    d = distance(text)
    broken = mismatch_positions(text)
    kind = {0: "palindrome", 1: "near1", 2: "near2"}.get(d, "random")
    return {"text": text, "label": d == 0, "kind": kind, "distance": d, "length": len(text),
            "mismatch_pos": broken[0] if d == 1 else None, "pair_id": pair_id, "role": role}


def corrupt_pair(text: str, pos: int, rng: np.random.Generator, alphabet: str) -> str:
    """Break mirrored pair (pos, n-1-pos): one of its two characters (chosen by rng) becomes another letter."""
    n = len(text)
    if not 0 <= pos < n // 2:
        raise PalindromeLensError(f"pair {pos} does not exist in a string of length {n}")
    side = pos if rng.integers(2) == 0 else n - 1 - pos
    others = [c for c in alphabet if c != text[side]]
    return text[:side] + others[int(rng.integers(len(others)))] + text[side + 1:]


def write_examples(table: pa.Table, path: str | os.PathLike[str]) -> None:
    write_table(table.cast(EXAMPLES_SCHEMA), path)


def load_examples(path: str | os.PathLike[str]) -> pd.DataFrame:
    """examples.parquet as a DataFrame; mismatch_pos and pair_id are nullable Int32, role may be None."""
    table = read_table(path, {f.name: f.type for f in EXAMPLES_SCHEMA})
    ids = table.column("example_id").to_numpy()
    if not np.array_equal(ids, np.arange(table.num_rows)):
        raise DataFileError(f"{path}: example_id must be 0..{table.num_rows - 1} in row order")
    df = table.select([f.name for f in EXAMPLES_SCHEMA]).to_pandas()
    for column in ("mismatch_pos", "pair_id"):
        df[column] = pd.array(table.column(column).to_pylist(), dtype="Int32")
    df["role"] = df["role"].astype(object).where(df["role"].notna(), None)
    return df


def pair_rows(examples: pd.DataFrame, pair_id: int) -> tuple[int, Sequence[int]]:
    """(clean example_id, corrupted example_ids) of one pair."""
    rows = examples[examples["pair_id"] == pair_id]
    clean = rows.index[rows["role"] == CLEAN]
    if len(clean) != 1:
        raise DataFileError(f"pair {pair_id} has {len(clean)} clean rows; expected exactly 1")
    return int(rows.loc[clean[0], "example_id"]), [int(i) for i in rows.loc[rows["role"] == CORRUPTED, "example_id"]]
