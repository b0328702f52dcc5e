"""Parquet in and out: atomic, deterministic writes and reads that check the schema they rely on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from palindrome_lens.atomic import atomic_path
from palindrome_lens.errors import DataFileError


def write_table(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write atomically. pyarrow output is byte-identical for identical tables."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: str | os.PathLike[str], required: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """Read a Parquet file; a missing, corrupt or wrongly-shaped file is a DataFileError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found; run the stage that produces it (dvc repro)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"{path}: not a readable Parquet file ({exc}); delete it and rerun dvc repro") from exc
    for name, dtype in (required or {}).items():
        if name not in table.column_names:
            raise DataFileError(
                f"{path}: column {name!r} is missing (columns are {', '.join(table.column_names)})"
            )
        actual = table.schema.field(name).type
        if not _compatible(actual, dtype):
            raise DataFileError(f"{path}: column {name!r} has type {actual}, expected {dtype}")
    return table


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected:
        return True
    if pa.types.is_string(expected) and (pa.types.is_large_string(actual) or pa.types.is_string(actual)):
        return True
    if pa.types.is_integer(expected) and pa.types.is_integer(actual):
        return True
    if pa.types.is_floating(expected) and pa.types.is_floating(actual):
        return True
    return pa.types.is_list(expected) and (pa.types.is_list(actual) or pa.types.is_fixed_size_list(actual))
