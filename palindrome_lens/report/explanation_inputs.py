"""Read data/explanation/ for the report: summary.json always; with a program, its source, constants.json
(checked by the explain package's own loader) and agreement.parquet. Every missing or malformed file is a
DataFileError naming it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from palindrome_lens.data.parquet import read_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.constants import RERUN, load_constants, read_checked
from palindrome_lens.explanation.files import AGREEMENT, AGREEMENT_SCHEMA, CONSTANTS, FORMAT, PROGRAM, SUMMARY

SUMMARY_KEYS = ("format", "family", "program", "sentences", "headline", "runs_program")
PROGRAM_KEYS = ("agreement", "by_kind", "interchange", "weakest_pair", "targets", "baseline")
AGREEMENT_COLUMNS = {f.name: f.type for f in AGREEMENT_SCHEMA}


@dataclass(frozen=True)
class ExplanationInputs:
    summary: dict[str, Any]
    source: str | None = None  # program.py
    constants: dict[str, Any] | None = None
    agreement: pd.DataFrame | None = None

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
    program = directory / PROGRAM
    try:
        source = program.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{program}: cannot read the program ({exc}){RERUN}") from exc
    constants = load_constants(directory / CONSTANTS)
    agreement = read_table(directory / AGREEMENT, AGREEMENT_COLUMNS).select(list(AGREEMENT_COLUMNS))
    frame = agreement.to_pandas().astype({"pair_pos": "Int64", "position": "Int64"})
    return ExplanationInputs(summary, source, constants, frame)
