"""Token-id tables: what the tokenize stage writes and the model stages read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from palindrome_lens.data.parquet import read_table
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError

TOKEN_COLUMNS = {"row_id": pa.int32(), "tokens": pa.list_(pa.int16()), "label": pa.bool_(), "length": pa.int32()}


def tokenize_table(raw: pa.Table, tokenizer: Tokenizer) -> pa.Table:
    """Token ids for each raw row; `row_id` is the row's index in the raw split (the join key)."""
    ids = tokenizer.encode_numpy(raw.column("text").to_pylist()).astype(np.int16)
    tokens = pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel()), tokenizer.width)
    return pa.table(
        {
            "row_id": pa.array(np.arange(raw.num_rows, dtype=np.int32)),
            "tokens": tokens,
            "label": raw.column("label"),
            "length": raw.column("length"),
        }
    )


def load_tokens(path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens LongTensor (n, width), labels LongTensor (n,), row_id LongTensor (n,)) from a token table."""
    table = read_table(path, TOKEN_COLUMNS)
    column = table.column("tokens").combine_chunks()
    width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
    flat = column.flatten().to_numpy(zero_copy_only=False)
    if width is None:
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if len(set(lengths.tolist())) > 1:
            raise DataFileError(f"{path}: token rows have different widths; rerun the tokenize stage")
        width = int(lengths[0]) if len(lengths) else 0
    tokens = torch.from_numpy(flat.astype(np.int64).reshape(table.num_rows, width))
    labels = torch.from_numpy(table.column("label").to_numpy(zero_copy_only=False).astype(np.int64))
    row_id = torch.from_numpy(table.column("row_id").to_numpy().astype(np.int64))
    return tokens, labels, row_id
