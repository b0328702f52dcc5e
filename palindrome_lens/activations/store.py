"""The on-disk format of extracted activations: one `.npy` file per hook plus `manifest.json`.

A `.npy` file is a short header (dtype, shape, C order) followed by the raw array, so it can be
preallocated, filled batch by batch with plain sequential writes (memory stays flat: nothing is
mapped while writing), and later memory-mapped with `np.load(mmap_mode=...)` and wrapped by
`torch.from_numpy` without a copy. Hooks that TransformerLens serves from one tensor (for example
`blocks.0.hook_resid_post` and `blocks.1.hook_resid_pre`) share one file; the manifest maps every
hook name to its file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from palindrome_lens.atomic import read_json, write_json
from palindrome_lens.errors import DataFileError, PalindromeLensError

FORMAT = "palindrome-lens/activations/v1"
MANIFEST = "manifest.json"
EXAMPLES = "examples.parquet"
DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
MANIFEST_KEYS = ("format", "n_examples", "n_positions", "dtype", "examples", "hooks", "model", "data")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hook_file_name(hook: str) -> str:
    return f"{hook}.npy"


class NpyWriter:
    """A preallocated `.npy` file filled by appending row blocks in order (never mapped in memory)."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), tuple(shape)
        # open_memmap writes a standard header and sizes the file; we only keep its data offset.
        created = npy_format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)
        offset = created.offset
        del created
        self._handle: BinaryIO | None = open(path, "r+b")  # noqa: SIM115  # closed in close()
        self._handle.seek(offset)
        self.rows = 0

    def append(self, block: np.ndarray) -> None:
        if block.dtype != self.dtype or block.shape[1:] != self.shape[1:]:
            raise PalindromeLensError(
                f"{self.path.name}: block of {block.dtype} {block.shape[1:]} does not fit {self.dtype} {self.shape[1:]}"
            )
        if self.rows + len(block) > self.shape[0]:
            raise PalindromeLensError(f"{self.path.name}: more than the {self.shape[0]} preallocated rows")
        assert self._handle is not None
        self._handle.write(np.ascontiguousarray(block).data)
        self.rows += len(block)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.rows != self.shape[0]:
            raise PalindromeLensError(f"{self.path.name}: wrote {self.rows} of {self.shape[0]} rows")


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    write_json(directory / MANIFEST, dict(manifest))


# ---------------------------------------------------------------------------------------------
# Reading: the manifest is checked against every file it names before anything is mapped.


@dataclass(frozen=True)
class HookEntry:
    name: str
    file: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Manifest:
    directory: Path
    n_examples: int
    n_positions: int
    dtype: str
    hooks: dict[str, HookEntry]
    raw: dict[str, Any]

    @property
    def examples_path(self) -> Path:
        return self.directory / self.raw["examples"]["file"]

    def path_of(self, hook: str) -> Path:
        return self.directory / self.hooks[hook].file


RERUN = "; rerun the extract stage (dvc repro extract)"


def _bad(path: Path, what: str) -> DataFileError:
    return DataFileError(f"{path}: {what}{RERUN}")


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Parse and check `manifest.json`, then check every hook file's header and size against it."""
    directory = Path(directory)
    path = directory / MANIFEST
    raw = read_json(path, "activation manifest", RERUN)
    if raw.get("format") != FORMAT:
        raise _bad(path, f"not an activation manifest (expected format {FORMAT!r})")
    missing = [k for k in MANIFEST_KEYS if k not in raw]
    if missing:
        raise _bad(path, f"key {missing[0]!r} is missing")
    n, width, dtype = raw["n_examples"], raw["n_positions"], raw["dtype"]
    if not isinstance(n, int) or n < 0 or not isinstance(width, int) or width < 1:
        raise _bad(path, f"n_examples {n!r} / n_positions {width!r} must be non-negative integers")
    if dtype not in DTYPES:
        raise _bad(path, f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    hooks: dict[str, HookEntry] = {}
    if not isinstance(raw["hooks"], dict) or not raw["hooks"]:
        raise _bad(path, "'hooks' must be a non-empty mapping of hook name to file")
    for name, entry in raw["hooks"].items():
        try:
            hooks[name] = HookEntry(name, str(entry["file"]), tuple(int(d) for d in entry["shape"]), str(entry["dtype"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(path, f"hook {name!r} needs file, shape and dtype ({exc!r})") from exc
        if "/" in hooks[name].file or hooks[name].file.startswith("."):
            raise _bad(path, f"hook {name!r} names file {hooks[name].file!r} outside the directory")
    manifest = Manifest(directory, n, width, dtype, hooks, raw)
    checked: set[str] = set()
    for entry in hooks.values():
        if entry.dtype != dtype or not entry.shape or entry.shape[0] != n:
            raise _bad(path, f"hook {entry.name!r} has shape {list(entry.shape)} {entry.dtype}, but there are {n} "
                             f"examples of {dtype}")
        if entry.file not in checked:
            check_npy(directory / entry.file, entry.shape, DTYPES[dtype])
            checked.add(entry.file)
    examples = manifest.examples_path
    if not examples.is_file():
        raise _bad(examples, "examples file named in the manifest is missing")
    return manifest


def check_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Check a `.npy` header and file size against what the manifest promises; return the data offset."""
    if not path.is_file():
        raise _bad(path, "activation file named in the manifest is missing")
    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                file_shape, fortran, file_dtype = npy_format.read_array_header_1_0(handle)
            else:
                file_shape, fortran, file_dtype = npy_format.read_array_header_2_0(handle)
            offset = handle.tell()
    except (OSError, ValueError) as exc:
        raise _bad(path, f"not a readable .npy file ({exc})") from exc
    if tuple(file_shape) != tuple(shape) or np.dtype(file_dtype) != dtype or fortran:
        raise _bad(path, f"file holds {list(file_shape)} {np.dtype(file_dtype)}"
                         f"{' (Fortran order)' if fortran else ''}, but the manifest says {list(shape)} {dtype}")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise _bad(path, f"file has {size} bytes, but its header implies {expected} (truncated or padded)")
    return offset
