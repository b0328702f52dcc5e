"""The files of data/explanation/ and their formats (torch-free: the report and `compare` read them)."""

from __future__ import annotations

import pyarrow as pa

FORMAT = "palindrome-lens/explanation/v1"  # summary.json
PROGRAM, CONSTANTS, AGREEMENT, SUMMARY = "program.py", "constants.json", "agreement.parquet", "summary.json"
PROGRAMS, FAILURES = "programs", "failures.parquet"  # programs/<level>.py: the ladder; the failure search's proposals
VIEWS = "failure_views"  # the explorer's example_*.parquet (attribution schemas) of the proposals the model gets wrong

_STR, _INT, _F64, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
AGREEMENT_SCHEMA = pa.schema([
    ("set", _STR), ("text", _STR), ("kind", _STR), ("label", _BOOL), ("length", _INT), ("pair_pos", _INT),
    ("position", _INT), ("source", _STR), ("old", _STR), ("new", _STR), ("model_logit_diff", _F64),
    ("program_logit_diff", _F64), ("model_palindrome", _BOOL), ("program_palindrome", _BOOL),
    ("model_correct", _BOOL), ("program_correct", _BOOL)])
FAILURES_SCHEMA = pa.schema([
    ("text", _STR), ("length", _INT), ("label", _BOOL), ("level", _STR), ("pattern", _STR), ("model_logit_diff", _F64),
    ("program_logit_diff", _F64), ("model_wrong", _BOOL)])
