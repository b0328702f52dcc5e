"""Atomic writes: outputs appear whole or not at all, so a killed stage never leaves a partial file.

Write into a temporary sibling (same filesystem, so the final rename is atomic), fsync, then rename.
`read_json` is the matching read, with errors that name the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from palindrome_lens.errors import DataFileError, PalindromeLensError


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PalindromeLensError(f"cannot create output directory {directory}: {exc.strerror}") from exc
    if not os.access(directory, os.W_OK):
        raise PalindromeLensError(f"output directory {directory} is not writable; check its permissions")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; on success it is renamed onto `path`."""
    final = Path(path)
    _check_writable(final.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PalindromeLensError(f"could not write {final}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Stable JSON (sorted keys, fixed indent) so identical content gives identical bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory next to `path`; on success it replaces `path` whole.

    The old directory is moved aside first and removed only after the new one is in place, so a kill
    at any point leaves either the previous complete directory or the new complete one (plus, at
    worst, a hidden leftover that the next run cleans up).
    """
    final = Path(path)
    _check_writable(final.parent)
    for stale in final.parent.glob(f".{final.name}.*.tmpdir"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmpdir", dir=final.parent))
    try:
        yield tmp
        for sub in tmp.rglob("*"):
            if sub.is_file():
                with open(sub, "rb+") as handle:
                    os.fsync(handle.fileno())
        os.chmod(tmp, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmpdir", dir=final.parent))
            os.replace(final, old / "old")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PalindromeLensError(f"could not write {final}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: str | os.PathLike[str], what: str = "file", hint: str = "") -> dict[str, Any]:
    """A JSON object from `path`; a missing, unreadable or non-object file is a DataFileError naming the
    file and `what` it should be, followed by `hint` (what to do about it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: {what} not found{hint}") from exc
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{path}: not valid JSON ({exc}){hint}") from exc
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}{hint}")
    return data
