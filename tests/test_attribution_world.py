"""Shared test material for the attribution tests (imported by tests/test_attribution_*.py; no tests here).

Real TransformerLens bridges (boot_native via new_native_model + wrap_native), their parameters perturbed
so LayerNorm weights and biases are far from 1 and 0, a real generated test split and the analysis set
chosen from it exactly as the extract stage does. The cache is `model.run_with_cache(tokens)`, which is
what `load_cache` must equal.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch
from transformer_lens.ActivationCache import ActivationCache

from palindrome_lens.activations.examples import choose_examples, load_examples, write_examples
from palindrome_lens.attribution.common import logit_diff, readout_positions
from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import AttributeParams, DataParams, ModelParams
from tests.conftest import tiny_params

ALPHABET, LENGTHS = "abcdefgh", [5, 6]
VARIANTS = {
    "ln": {"normalization": "LN", "attn_only": False, "n_layers": 2},
    "attn_only": {"normalization": "LN", "attn_only": True, "n_layers": 2},
    "no_ln": {"normalization": "none", "attn_only": False, "n_layers": 1},
}


@dataclass
class World:
    clf: Classifier
    test: pd.DataFrame
    examples: pd.DataFrame
    tokens: torch.Tensor
    cache: ActivationCache
    logits: torch.Tensor

    @property
    def model(self):  # noqa: ANN201  # the TransformerBridge
        return self.clf.model

    @property
    def positions(self) -> torch.Tensor:
        """Each row's readout position (BOS for these models)."""
        return readout_positions(self.model, self.tokens)

    @property
    def diff(self) -> torch.Tensor:
        """The model's logit difference at the readout, per row."""
        return logit_diff(self.logits, self.positions)


@functools.lru_cache(maxsize=1)
def generated_test_split() -> pd.DataFrame:
    data = DataParams.check({"alphabet": ALPHABET, "lengths": LENGTHS, "n_train": 400, "n_val": 20, "n_test": 300,
                             "palindrome_fraction": 0.5, "negative_mix": {"near1": 0.6, "near2": 0.2, "random": 0.2, "redraw": 0.0},
                             "redraw_probability": 0.5})
    return generate_splits(data, 0)["test"].to_pandas()


def tiny_classifier(variant: str = "ln", seed: int = 0, noise: float = 0.3) -> Classifier:
    """A perturbed (not trained) 1-2 layer bridge; LN weights/biases perturbed like every other parameter."""
    spec = VARIANTS[variant]
    tokenizer = Tokenizer(ALPHABET, max(LENGTHS), add_eos=True)
    params = ModelParams(n_layers=spec["n_layers"], d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu",
                         normalization=spec["normalization"], attn_only=spec["attn_only"], n_ctx=None)
    config = model_config(params, tokenizer, seed=seed, lengths=LENGTHS)
    native = new_native_model(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in native.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
    bridge = wrap_native(native, config)
    bridge.eval()
    return Classifier(bridge, tokenizer, config)


@functools.cache
def world(variant: str = "ln") -> World:
    test = generated_test_split()
    table = choose_examples(pa.Table.from_pandas(test, preserve_index=False), n_per_group=6, n_pairs=3, seed=0,
                            alphabet=ALPHABET)
    with tempfile.TemporaryDirectory() as tmp:  # through the real Parquet file, as the stage reads it
        write_examples(table, Path(tmp) / "examples.parquet")
        examples = load_examples(Path(tmp) / "examples.parquet")
    clf = tiny_classifier(variant)
    tokens = clf.encode(examples["text"].tolist())
    with torch.inference_mode():
        logits, cache = clf.model.run_with_cache(tokens)
    return World(clf, test, examples, tokens, cache, logits)


def settings(**overrides) -> AttributeParams:
    """The tiny profile's attribute section, with overrides."""
    return AttributeParams.check({**tiny_params()["attribute"], **overrides})
