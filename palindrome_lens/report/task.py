"""The task and the model in plain words, for the first screen of the index: string lengths, alphabet, data mix,
split sizes and the model's shape, from the run's params (and summary.json's model when a param is missing)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from palindrome_lens.report.formatting import names, pct

MIX_WORDS = {"near1": "break exactly one mirrored pair", "near2": "break two", "random": "are random letters",
             "redraw": "are palindromes with each second-half character redrawn with probability {p}"}


def alphabet_words(alphabet: str) -> str:
    if alphabet == string.ascii_lowercase:
        return "the letters a–z"
    if len(alphabet) <= 12:
        return f"the {len(alphabet)} characters {' '.join(alphabet)}"
    return f"{len(alphabet)} characters ({alphabet[:6]}…{alphabet[-3:]})"


def lengths_words(lengths: list[int]) -> str:
    lengths = sorted(int(n) for n in lengths)
    return f"{lengths[0]} characters" if len(lengths) == 1 else f"{names([str(n) for n in lengths])} characters"


def data_words(params: Mapping[str, Any], lengths: list[int]) -> str:
    """What the strings are and how the training data is mixed."""
    alphabet = params.get("data.alphabet")
    what = (f"Each string has {lengths_words(lengths)}" + (f" from {alphabet_words(alphabet)}" if alphabet else "")
            + "; the model tells whether it reads the same backwards (a palindrome).")
    mix, share = params.get("data.negative_mix"), params.get("data.palindrome_fraction")
    if not mix or share is None:
        return what
    parts = [f"{pct(v, 0)} {MIX_WORDS.get(k, k).format(p=params.get('data.redraw_probability'))}"
             for k, v in mix.items() if v]
    sizes = ""
    if params.get("data.n_train") is not None:
        sizes = (f" It trains on {params['data.n_train']:,} strings and is tested on {params['data.n_test']:,} held-out "
                 "ones that training never contains.")
    return f"{what} {pct(share, 0)} of every split are palindromes; of the rest, {names(parts)}.{sizes}"


def model_words(model: Mapping[str, Any]) -> str:
    """The model's shape and where it answers."""
    mlp = "attention only" if model.get("attn_only") else f"an MLP of width {model.get('d_mlp')} after each layer's heads"
    norm = "LayerNorm" if model.get("normalization_type") == "LN" else "no LayerNorm"
    layers, heads = model.get("n_layers"), model.get("n_heads")
    return (f"The model is a {model.get('attention_dir', 'bidirectional')} TransformerLens transformer: {layers} "
            f"layer{'s' if layers != 1 else ''} of {heads} attention head{'s' if heads != 1 else ''}, {mlp}, "
            f"residual width {model.get('d_model')}, {norm}. It reads [BOS], the characters and [EOS], and answers "
            f"at {str(model.get('readout', 'bos')).upper()}.")


def task_words(params: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    lengths = list(params.get("data.lengths") or model.get("lengths") or [])
    return data_words(params, lengths) + "\n\n" + model_words(model)


def task_line(params: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    """The task and the model in one sentence, for the top of the index."""
    lengths = list(params.get("data.lengths") or model.get("lengths") or [])
    alphabet = params.get("data.alphabet")
    layers, heads = model.get("n_layers"), model.get("n_heads")
    parts = f"{heads} attention head{'s' if heads != 1 else ''} per layer" + ("" if model.get("attn_only") else
                                                                               " and an MLP")
    return (f"A {layers}-layer transformer ({parts}, residual width {model.get('d_model')}) tells whether a string "
            f"of {lengths_words(lengths) if lengths else 'characters'}"
            + (f" from {alphabet_words(alphabet)}" if alphabet else "") + " is a palindrome.")
