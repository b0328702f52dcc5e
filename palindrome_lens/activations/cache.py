"""Load extracted activations back as a TransformerLens ActivationCache, memory-mapped.

Files are mapped copy-on-write (`mmap_mode="c"`): pages are read from disk only when touched, the
tensors are writable (torch wants that) and nothing is ever written back. A float32 store loaded as
float32 on the CPU with a contiguous range of examples is zero-copy; a float16 store upcast to
float32, a scattered selection of examples or another device materialises just what was selected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from palindrome_lens.activations.examples import load_examples
from palindrome_lens.activations.store import Manifest, read_manifest, sha256_file
from palindrome_lens.errors import DataFileError, PalindromeLensError
from palindrome_lens.hooks import UnknownHookError, generic_name
from palindrome_lens.model.classifier import Classifier

Rows = slice | np.ndarray


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """The checked manifest of an activation directory (every file's header and size verified)."""
    return read_manifest(path)


def load_cache(path: str | os.PathLike[str], model: TransformerBridge | Classifier,
               hooks: Sequence[str] | str | None = None, examples: Any = None, *,
               dtype: torch.dtype | None = torch.float32,
               device: torch.device | str | None = None) -> ActivationCache:
    """An ActivationCache over the activations in `path` (e.g. data/activations) for `model`.

    hooks: full TransformerLens names (`blocks.0.attn.hook_pattern`), or a generic per-layer name
        (`attn.hook_pattern`) for that hook in every layer; None = all stored hooks.
    examples: None (all), a slice, example_ids (ints) or a boolean mask over all examples.
    dtype: the tensors' dtype (None keeps the stored one; float32 upcasts a float16 store exactly).
    device: where tensors live; None = the model's device (CPU tensors stay memory-mapped).
    """
    manifest = read_manifest(path)
    bridge = model.model if isinstance(model, Classifier) else model
    _check_model(manifest, bridge)
    names = select_hooks(manifest, hooks)
    rows = select_rows(manifest.n_examples, examples)
    if device is None:
        device = next(bridge.parameters()).device
    mapped: dict[str, np.ndarray] = {}
    by_file: dict[str, torch.Tensor] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        file = manifest.hooks[name].file
        if file not in by_file:
            if file not in mapped:
                mapped[file] = _map(manifest.directory / file)
            tensor = torch.from_numpy(mapped[file][rows])
            if dtype is not None and tensor.dtype != dtype:
                tensor = tensor.to(dtype)
            by_file[file] = tensor.to(device)
        tensors[name] = by_file[file]  # aliases share one tensor, as in a live TransformerLens cache
    return ActivationCache(tensors, bridge)


def _map(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{path}: cannot memory-map ({exc}); rerun the extract stage") from exc


def select_hooks(manifest: Manifest, hooks: Sequence[str] | str | None) -> list[str]:
    """Full names to load, in manifest order; unknown names are an error listing the stored ones."""
    stored = list(manifest.hooks)
    if hooks is None:
        return stored
    if isinstance(hooks, str):
        hooks = [hooks]
    chosen: set[str] = set()
    for hook in hooks:
        if hook in manifest.hooks:
            chosen.add(hook)
            continue
        matches = [name for name in stored if name.startswith("blocks.") and generic_name(name) == hook]
        if not matches:
            raise UnknownHookError(
                f"{manifest.directory}: hook {hook!r} was not extracted; stored hooks are {', '.join(stored)}"
            )
        chosen.update(matches)
    return [name for name in stored if name in chosen]


def select_rows(n: int, examples: Any) -> Rows:
    """Normalise an example selection to a slice (zero-copy) or an index array."""
    if examples is None:
        return slice(None)
    if isinstance(examples, slice):
        range(n)[examples]  # raises on a zero step
        return examples
    if isinstance(examples, torch.Tensor):
        examples = examples.cpu().numpy()
    index = np.asarray(examples)
    if index.dtype == bool:
        if index.shape != (n,):
            raise PalindromeLensError(f"a boolean example mask needs {n} entries, got shape {index.shape}")
        index = np.flatnonzero(index)
    if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
        raise PalindromeLensError("examples must be None, a slice, a 1-D sequence of example_ids or a boolean mask")
    index = index.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= n):
        bad = index[(index < 0) | (index >= n)][0]
        raise PalindromeLensError(f"example_id {bad} is out of range; there are {n} examples (0..{n - 1})")
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)  # contiguous: keep it mapped
    return index


def _check_model(manifest: Manifest, bridge: TransformerBridge) -> None:
    dims = manifest.raw.get("model", {}).get("dims", {})
    for key in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp"):
        want, have = dims.get(key), getattr(bridge.cfg, key, None)
        if want is not None and want != have:
            raise DataFileError(
                f"{manifest.directory}: activations come from a model with {key}={want}, but the model given has "
                f"{key}={have}; load the model they were extracted from"
            )


def verify_sources(path: str | os.PathLike[str], model_dir: str | os.PathLike[str] | None = None,
                   data_files: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Raise DataFileError unless the model directory and data files hash as recorded in the manifest."""
    manifest = read_manifest(path)
    recorded_model = manifest.raw["model"].get("sha256", {})
    if model_dir is not None:
        for name, digest in recorded_model.items():
            file = Path(model_dir) / name
            if not file.is_file() or sha256_file(file) != digest:
                raise DataFileError(f"{file}: differs from the model the activations in {path} came from; "
                                    "rerun dvc repro extract")
    recorded_data = manifest.raw["data"].get("sha256", {})
    for file in data_files:
        digest = recorded_data.get(str(file))
        if digest is None or not Path(file).is_file() or sha256_file(file) != digest:
            raise DataFileError(f"{file}: differs from the data the activations in {path} came from; "
                                "rerun dvc repro extract")


__all__ = ["load_cache", "load_examples", "load_manifest", "select_hooks", "select_rows", "verify_sources"]
