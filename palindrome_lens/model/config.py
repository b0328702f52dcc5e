"""The model config: built from params and the tokenizer, saved as JSON that round-trips exactly.

TransformerBridgeConfig.from_dict silently drops unknown keys, so we keep our own small schema and
check it strictly on load.
"""

from __future__ import annotations

import os
from typing import Any

from transformer_lens.config import TransformerBridgeConfig

from palindrome_lens.atomic import read_json, write_json
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError
from palindrome_lens.params import ModelParams
from palindrome_lens.params.model import ATTENTION_DIRS, READOUTS

FORMAT = "palindrome-lens/model/v1"
N_CLASSES = 2  # logit 1 = "palindrome", logit 0 = "not a palindrome"
CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "n_layers": int,
    "d_model": int,
    "n_heads": int,
    "d_head": int,
    "d_mlp": int,
    "act_fn": str,
    "normalization_type": (str, type(None)),
    "attn_only": bool,
    "n_ctx": int,
    "d_vocab": int,
    "d_vocab_out": int,
    "attention_dir": str,
    "seed": int,
    "pad_id": int,
    "lengths": list,
}
# Keys a config may leave out, and what that means (so configs written before them keep their bytes).
OPTIONAL_KEYS: dict[str, tuple[type, object]] = {"readout": (str, "bos")}


def model_config(params: ModelParams, tokenizer: Tokenizer, seed: int, lengths: list[int]) -> dict[str, Any]:
    """The JSON-able config of a new model (our schema, not TransformerBridgeConfig's)."""
    return {
        "format": FORMAT,
        "n_layers": params.n_layers,
        "d_model": params.d_model,
        "n_heads": params.n_heads,
        "d_head": params.head_dim,
        "d_mlp": params.d_mlp,
        "act_fn": params.act_fn,
        "normalization_type": None if params.normalization == "none" else params.normalization,
        "attn_only": params.attn_only,
        "n_ctx": params.n_ctx if params.n_ctx is not None else tokenizer.width,
        "d_vocab": tokenizer.vocab_size,
        "d_vocab_out": N_CLASSES,
        "attention_dir": params.attention_dir,
        "seed": seed,
        "pad_id": tokenizer.pad_id,
        "lengths": sorted(int(n) for n in lengths),
    } | ({"readout": params.readout} if params.readout != OPTIONAL_KEYS["readout"][1] else {})


def bridge_config(config: dict[str, Any]) -> TransformerBridgeConfig:
    """The TransformerLens config for our schema."""
    keys = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "act_fn", "normalization_type", "attn_only",
            "n_ctx", "d_vocab", "d_vocab_out", "attention_dir", "seed")
    return TransformerBridgeConfig(**{k: config[k] for k in keys})


def check_config(config: Any, source: str = "config") -> dict[str, Any]:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataFileError(f"{source}: not a palindrome-lens model config (expected format {FORMAT!r})")
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise DataFileError(f"{source}: unknown key {unknown[0]!r}; known keys are {', '.join(CONFIG_KEYS)}")
    for key, kind in CONFIG_KEYS.items():
        if key not in config:
            raise DataFileError(f"{source}: key {key!r} is missing")
        value = config[key]
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            raise DataFileError(f"{source}: {key} is {value!r}, expected {getattr(kind, '__name__', kind)}")
    for key, (kind, _) in OPTIONAL_KEYS.items():
        if key in config and not isinstance(config[key], kind):
            raise DataFileError(f"{source}: {key} is {config[key]!r}, expected {kind.__name__}")
    if config["attention_dir"] not in ATTENTION_DIRS:
        raise DataFileError(f"{source}: attention_dir is {config['attention_dir']!r}; it must be one of "
                            f"{', '.join(ATTENTION_DIRS)}")
    if config.get("readout", "bos") not in READOUTS:
        raise DataFileError(f"{source}: readout is {config['readout']!r}; it must be one of {', '.join(READOUTS)}")
    if config["d_vocab_out"] != N_CLASSES:
        raise DataFileError(f"{source}: d_vocab_out is {config['d_vocab_out']}, a classifier needs {N_CLASSES}")
    return config


def save_config(config: dict[str, Any], path: str | os.PathLike[str]) -> None:
    write_json(path, check_config(config))


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    return check_config(read_json(path, "model config"), str(path))
