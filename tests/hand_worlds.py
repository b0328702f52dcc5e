"""Scrubbers over the hand-built models (tests/ground_truth*.py): a generated test
split of their strings, the analysis set chosen from it as the extract stage does, and the donor pool
(test material; no tests here)."""

from __future__ import annotations

import functools

import pandas as pd
import pyarrow as pa
from ground_truth import ALPHABET, LENGTH, planted_classifier
from ground_truth_chain import chain_classifier
from ground_truth_spread import spread_classifier

from palindrome_lens.activations.examples import choose_examples
from palindrome_lens.attribution.common import forward_logit_diff
from palindrome_lens.attribution.scrubbing import DonorPool, Scrubber
from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.params import DataParams

MODELS = ("planted", "label", "count")


@functools.cache
def strings() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test split, analysis set) over the hand-built models' alphabet and length."""
    data = DataParams.check({"alphabet": ALPHABET, "lengths": [LENGTH], "n_train": 200, "n_val": 10, "n_test": 240,
                             "palindrome_fraction": 0.5, "negative_mix": {"near1": 0.6, "near2": 0.2, "random": 0.2,
                                                                          "redraw": 0.0},
                             "redraw_probability": 0.5})
    test = generate_splits(data, 0)["test"].to_pandas()
    examples = choose_examples(pa.Table.from_pandas(test, preserve_index=False), n_per_group=40, n_pairs=12, seed=0,
                               alphabet=ALPHABET).to_pandas()
    return test, examples


def classifier(name: str) -> Classifier:
    tokenizer = Tokenizer(ALPHABET, LENGTH, add_eos=True)
    if name in ("planted", "lopsided"):
        return planted_classifier(tokenizer, lopsided=name == "lopsided")
    if name == "chain":
        return chain_classifier(tokenizer)
    return spread_classifier(tokenizer, name)


def explain_params_and_splits(n_interchange: int = 100) -> tuple:
    """Params (tiny profile over the hand-built models' alphabet and length) and their generated splits, as pandas."""
    from palindrome_lens.params import validate
    from tests.conftest import tiny_params

    raw = tiny_params()
    raw["data"].update({"alphabet": ALPHABET, "lengths": [LENGTH], "n_train": 300, "n_val": 20, "n_test": 200})
    raw["explain"].update({"n_fit": 300, "n_interchange": n_interchange, "n_contexts": 2})
    params = validate(raw)
    return params, {name: t.to_pandas() for name, t in generate_splits(params.data, seed=0).items()}


@functools.cache
def scrubber(name: str, seed: int = 0) -> Scrubber:
    clf = classifier(name)
    test, examples = strings()
    tokens = clf.encode(examples["text"].tolist())
    base = forward_logit_diff(clf.model, tokens, 512).numpy()
    pool = DonorPool.build(clf.model, clf.encode, examples["text"].tolist(), test["text"].tolist(),
                           range(clf.model.cfg.n_layers), 512)
    return Scrubber(clf.model, tokens, examples, pool, seed, True, 512, base)
