"""Build, save and load the model.

Training runs on the plain TL-native module (no hook overhead); analysis goes through the
TransformerBridge that wraps the same weights. Weights are saved under TransformerLens names
(`embed.weight`, `blocks.0.attn.q.weight`, ...), raw: LayerNorm is never folded into them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
from transformer_lens.model_bridge.sources.native import NativeModel, initialize_native_model

from palindrome_lens.atomic import atomic_path
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.config import bridge_config
from palindrome_lens.model.masking import install_pad_mask
from palindrome_lens.model.readout import install_readout

ARCHITECTURE = "TransformerLensNative"


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when available; `cuda` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DataFileError("device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(device)


def new_native_model(config: dict[str, Any]) -> NativeModel:
    """A freshly initialised TL-native module (seeded by config['seed']), the fast thing to train."""
    cfg = bridge_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        model = NativeModel(copy.deepcopy(cfg))
        initialize_native_model(model, model.cfg)
    return model


def wrap_native(native: NativeModel, config: dict[str, Any]) -> TransformerBridge:
    """The TransformerBridge over `native`'s weights (wraps in place), with PAD masking installed."""
    bridge = build_bridge_from_module(native, architecture=ARCHITECTURE, tl_config=bridge_config(config))
    install_pad_mask(bridge, config["pad_id"])
    install_readout(bridge, config.get("readout", "bos"), config["pad_id"])
    return bridge


def build_bridge(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None,
                 device: torch.device | str | None = None, source: str = "weights") -> TransformerBridge:
    """A TransformerBridge for `config`, optionally loading `state_dict` (TransformerLens names)."""
    bridge = TransformerBridge.boot_native(bridge_config(config), device=device)
    if state_dict is not None:
        try:
            bridge.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise DataFileError(f"{source}: weights do not fit the model config ({' '.join(first[:3])})") from exc
    install_pad_mask(bridge, config["pad_id"])
    install_readout(bridge, config.get("readout", "bos"), config["pad_id"])
    bridge.eval()
    return bridge


def save_weights(bridge: TransformerBridge, path: str | os.PathLike[str]) -> None:
    """safetensors, atomically. Aliased tensors are cloned (safetensors refuses shared memory)."""
    tensors = {name: t.detach().to("cpu").clone().contiguous() for name, t in bridge.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "palindrome-lens/weights/v1"})


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataFileError(f"{path}: not a readable safetensors file ({exc})") from exc
