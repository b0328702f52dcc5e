"""The shared entry point of every DVC stage: validate params first, then run, failing cleanly."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import StageParams, load_stage_params


def run_stage(stage: str, body: Callable[[StageParams], None], root: str | Path = ".") -> None:
    """Load and validate `stage`'s declared params, then call `body`; our errors exit 2 with one line."""
    try:
        params = load_stage_params(stage, root)
        body(params)
    except PalindromeLensError as exc:
        print(f"error in stage {stage}: {exc}", file=sys.stderr)
        sys.exit(2)


def tqdm_disabled() -> bool:
    """Progress bars are on for people, off when PALINDROME_LENS_QUIET is set (tests, CI logs)."""
    return bool(os.environ.get("PALINDROME_LENS_QUIET"))
