"""Run the classifier over the analysis set in batches and write every requested hook to disk.

Each batch goes through `run_with_cache` (the PAD mask is a permanent hook, so cached patterns are
the masked ones) and is appended to one preallocated `.npy` per hook; nothing accumulates in memory.
The whole directory is written into a temporary sibling and renamed at the end (`atomic_dir`), so a
kill leaves the previous complete output or none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from palindrome_lens.activations.examples import write_examples
from palindrome_lens.activations.store import (
    DTYPES,
    EXAMPLES,
    FORMAT,
    NpyWriter,
    hook_file_name,
    sha256_file,
    write_manifest,
)
from palindrome_lens.atomic import atomic_dir
from palindrome_lens.errors import DataFileError, PalindromeLensError
from palindrome_lens.hooks import full_hook_names
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.stage import tqdm_disabled

MODEL_DIMS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab", "attn_only",
              "normalization_type", "act_fn")


def write_activations(directory: str | os.PathLike[str], clf: Classifier, examples: pa.Table,
                      hooks: Sequence[str], dtype: str = "float32", batch_size: int = 512, *,
                      model_dir: str | os.PathLike[str] | None = None,
                      data_files: Sequence[str | os.PathLike[str]] = (),
                      params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write examples.parquet, one .npy per hook and manifest.json into `directory`, atomically.

    `hooks` are generic names (`hook_resid_pre` = that hook in every layer). `model_dir` and
    `data_files` are hashed into the manifest so readers can tell which model and data produced it.
    Returns the manifest.
    """
    if dtype not in DTYPES:
        raise PalindromeLensError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if batch_size < 1:
        raise PalindromeLensError(f"batch_size {batch_size} must be >= 1")
    texts = examples.column("text").to_pylist()
    if not texts:
        raise PalindromeLensError("no examples to extract")
    names = full_hook_names(hooks, clf.config["n_layers"])
    for path in data_files:
        if not Path(path).is_file():
            raise DataFileError(f"{path}: data file to record in the manifest not found")
    with atomic_dir(directory) as tmp:
        write_examples(examples, tmp / EXAMPLES)
        written = _write_hooks(tmp, clf, texts, names, DTYPES[dtype], batch_size)
        manifest = {
            "format": FORMAT,
            "n_examples": len(texts),
            "n_positions": clf.tokenizer.width,
            "dtype": dtype,
            "examples": {"file": EXAMPLES, "sha256": sha256_file(tmp / EXAMPLES)},
            "hooks": written["hooks"],
            "skipped_hooks": written["skipped"],
            "model": {
                "dims": {k: clf.config.get(k) for k in MODEL_DIMS},
                "sha256": _hashes(sorted(Path(model_dir).iterdir()), by_name=True) if model_dir is not None else {},
            },
            "data": {"sha256": _hashes([Path(p) for p in data_files])},
            "params": dict(params or {}),
        }
        write_manifest(tmp, manifest)
    return manifest


def _hashes(paths: Sequence[Path], by_name: bool = False) -> dict[str, str]:
    return {p.name if by_name else str(p): sha256_file(p) for p in paths if p.is_file()}


def _write_hooks(out: Path, clf: Classifier, texts: list[str], names: list[str], dtype: np.dtype,
                 batch_size: int) -> dict[str, Any]:
    """Stream batches through the model into one file per distinct tensor."""
    model, device, n = clf.model, clf.device, len(texts)
    wanted = set(names)
    writers: dict[str, NpyWriter] = {}
    primary: dict[str, str] = {}  # hook name -> the hook whose file holds its tensor
    skipped: dict[str, str] = {}
    model.eval()
    with tqdm(total=n, unit="ex", desc="extract", disable=tqdm_disabled()) as bar:
        for start in range(0, n, batch_size):
            chunk = texts[start:start + batch_size]
            tokens = clf.encode(chunk).to(device)
            with torch.inference_mode():
                _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in wanted,
                                                return_cache_object=False)
            if not writers:
                primary, skipped = _layout(cache, names)
                for name in dict.fromkeys(primary.values()):
                    shape = (n, *cache[name].shape[1:])
                    writers[name] = NpyWriter(out / hook_file_name(name), dtype, shape)
            _check_aliases(cache, primary)
            for name, writer in writers.items():
                block = cache[name].detach().to(_torch_dtype(dtype)).cpu().numpy()
                if dtype == np.float16 and not np.isfinite(block).all():
                    raise PalindromeLensError(f"{name} overflows float16 in examples {start}..{start + len(chunk) - 1};"
                                              " set extract.dtype to float32")
                writer.append(block)
            bar.update(len(chunk))
    for writer in writers.values():
        writer.close()
    hooks = {
        name: {"file": hook_file_name(primary[name]), "shape": list(writers[primary[name]].shape), "dtype": dtype.name}
        for name in names if name in primary
    }
    return {"hooks": hooks, "skipped": skipped}


def _layout(cache: Mapping[str, torch.Tensor], names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Which requested hooks this model has, and which share one tensor (TL serves some names from one)."""
    primary: dict[str, str] = {}
    owner: dict[tuple, str] = {}
    skipped: dict[str, str] = {}
    for name in names:
        tensor = cache.get(name)
        if tensor is None:
            skipped[name] = "this model has no such hook (attn_only or no LayerNorm)"
            continue
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        primary[name] = owner.setdefault(key, name)
    if not primary:
        raise PalindromeLensError(f"none of the requested hooks exist on this model: {', '.join(names)}")
    return primary, skipped


def _check_aliases(cache: Mapping[str, torch.Tensor], primary: Mapping[str, str]) -> None:
    """Every batch must share tensors the way the first did; otherwise a dropped file would lose data."""
    for name, first in primary.items():
        if name != first and cache[name].data_ptr() != cache[first].data_ptr() and not torch.equal(
            cache[name], cache[first]
        ):
            raise PalindromeLensError(f"{name} no longer equals {first}; cannot store them as one file")


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.float16 if dtype == np.float16 else torch.float32
