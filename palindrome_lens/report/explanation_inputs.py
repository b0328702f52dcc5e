"""Read data/explanation/ for the report: summary.json always; with a program, its source, constants.json
(checked by the explain package's own loader), agreement.parquet, the ladder's algorithm level
(programs/algorithm.py), the failure search's proposals (failures.parquet; absent when it proposed nothing) and the
explorer's tables of those the model gets wrong (failure_views/; absent when there are none).
Every missing or malformed file is a DataFileError naming it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from palindrome_lens.attribution.schemas import columns
from palindrome_lens.data.parquet import read_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.constants import RERUN, load_constants, read_checked
from palindrome_lens.explanation.files import (
    AGREEMENT,
    AGREEMENT_SCHEMA,
    CONSTANTS,
    FAILURES,
    FAILURES_SCHEMA,
    FORMAT,
    PROGRAM,
    SUMMARY,
    VIEWS,
)

SUMMARY_KEYS = ("format", "family", "program", "sentences", "headline", "runs_program")
PROGRAM_KEYS = ("agreement", "by_kind", "interchange", "weakest_pair", "targets", "baseline")
AGREEMENT_COLUMNS = {f.name: f.type for f in AGREEMENT_SCHEMA}
FAILURES_COLUMNS = {f.name: f.type for f in FAILURES_SCHEMA}
EXAMPLE_TABLES = ("example_strings", "example_dla", "example_attention", "example_patching")


@dataclass(frozen=True)
class ExplanationInputs:
    summary: dict[str, Any]
    source: str | None = None  # program.py
    constants: dict[str, Any] | None = None
    agreement: pd.DataFrame | None = None
    algorithm: str | None = None  # programs/algorithm.py, when the ladder has that level
    failures: pd.DataFrame | None = None  # failures.parquet (every proposal), empty when none was written
    views: dict[str, pd.DataFrame] = field(default_factory=dict)  # failure_views/example_*.parquet, by table name

    @property
    def has_program(self) -> bool:
        return self.source is not None


def load_explanation(directory: str | os.PathLike[str]) -> ExplanationInputs:
    directory = Path(directory)
    path = directory / SUMMARY
    summary = read_checked(path, "the explanation's summary", SUMMARY_KEYS, FORMAT)
    if summary["program"] is None:
        return ExplanationInputs(summary)
    read_checked(path, "the explanation's summary", PROGRAM_KEYS, None)
    source = read_source(directory / PROGRAM)
    constants = load_constants(directory / CONSTANTS)
    agreement = read_table(directory / AGREEMENT, AGREEMENT_COLUMNS).select(list(AGREEMENT_COLUMNS))
    frame = agreement.to_pandas().astype({"pair_pos": "Int64", "position": "Int64"})
    algorithm = summary.get("algorithm") or {}
    failures = (read_table(directory / FAILURES, FAILURES_COLUMNS).select(list(FAILURES_COLUMNS)).to_pandas()
                if (directory / FAILURES).exists() else pd.DataFrame(columns=list(FAILURES_COLUMNS)))
    views = {name: read_table(directory / VIEWS / f"{name}.parquet", columns(name)).select(list(columns(name)))
             .to_pandas() for name in EXAMPLE_TABLES} if (directory / VIEWS).exists() else {}
    return ExplanationInputs(summary, source, constants, frame,
                             read_source(directory / algorithm["file"]) if algorithm.get("file") else None, failures,
                             views)


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read the program ({exc}){RERUN}") from exc
