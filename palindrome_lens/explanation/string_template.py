"""The string-level family's program template and its rendering (the same rules as template.py: only numbers go into
the code; the activation is one of three fixed bodies, head names are rebuilt from their numbers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.layer0_source import ACTIVATION_BODIES, layer0_functions
from palindrome_lens.explanation.template import (
    CONSTANTS_MARKER,
    MAIN,
    READOUT,
    layer_norm_literal,
    level_filename,
    literal,
    numbers,
)

STRING_LEVEL = '''"""How this palindrome classifier decides, as a program (family: string level; level: {level}), compiled by
palindrome-lens from the trained model; standard library only. `python {filename} TEXT` prints the decision and the
logit difference; `from {module} import logit_diff, is_palindrome` gives them to Python.

The model decides in layer 0, at every character position at once:
1. A position's residual stream is its character's part (CHAR_EMBED) plus its position's part (pos_embed).
2. Each of layer 0's {n_heads} heads spreads a character position's attention over the whole string: after LayerNorm
   (LN1: {layernorm1}) token t gets the score query(i) . key(t), and the head averages value(t) through W_O with
   softmax weights (HEADS: layer 0's own weights; [BOS] and [EOS] as the model computes them).
3. MLP 0 reads that average at every position (LayerNorm: {layernorm}; W_IN, then {act}).
4. The readout reads layer 0's output at the character positions, averaged over them, on {n_dims} DIRECTIONS
   (the first separates palindromes from the rest), and a GATE and a quadratic per side (READOUT) give the logit
   difference; the string is a palindrome when it is above THRESHOLD.
{n_read} numbers read from the model's own components (the model has {n_model} parameters); GATE and READOUT
({n_fitted} numbers) are FITTED to the model's logits on the train split.
"""
import math
import sys


{layer0_functions}


def features(text):
    """The mean over character positions of layer 0's output, on each readout direction."""
    table = table_of(text)
    total = [0.0] * len(table["directions"])
    for mid in layer0_attention(table, text):
        normed = layer_norm(mid, LN2)
        hidden = [activation(dot(row, normed) + b) for row, b in zip(W_IN, B_IN)]  # MLP 0's neurons
        for k, direction in enumerate(table["directions"]):
            total[k] += dot(direction, mid) + dot(table["out_read"][k], hidden) + table["b_out_read"][k]
    return [t / len(text) for t in total]


def logit_diff(text, pairs=None):
    """logit[palindrome] - logit[not] for `text` (characters only, no [BOS]/[EOS]); `pairs` is not supported."""
    if pairs:
        raise ValueError("the string-level program has no per-pair variable to intervene on")
    return readout(table_of(text), features(text))


{readout_code}

{main}

{marker} (numbers only: read from the model unless marked FITTED) -----------------------------------
ALPHABET = "".join(map(chr, {alphabet}))
INDEX = {{c: i for i, c in enumerate(ALPHABET)}}
THRESHOLD = 0.0
CAUSAL = {causal}
CHAR_EMBED = {char_embed}  # one row per character
LN1 = {ln1}
HEADS = {heads}  # per head: W_Q, b_Q, W_K and b_K (divided by the attention scale), W_V, b_V, W_O
B_O = {b_o}
LN2 = {ln2}
W_IN = {w_in}  # one row per MLP 0 neuron
B_IN = {b_in}
TABLES = {{
{tables}}}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''

LENGTH_KEYS = ("pos_embed", "bos_key", "bos_value", "eos_key", "eos_value", "directions", "out_read", "b_out_read")
HEAD_KEYS = ("w_q", "b_q", "w_k", "b_k", "w_v", "b_v", "w_o")


def render_length(length: int, entry: Mapping[str, Any]) -> str:
    pad = " " * 8
    lines = [f"    {int(length)}: {{\n"]
    for key in LENGTH_KEYS:
        lines.append(f'{pad}"{key}": {literal(entry[key], 8)},\n')
    lines.append(f'{pad}"gate": {numbers(entry["gate"])},  # FITTED: weight per feature, then the bias\n')
    lines.append(f'{pad}"readout": {{  # FITTED: 1, features, then their products f[i] * f[j] (i <= j)\n')
    for side in ("palindrome", "not_palindrome"):
        lines.append(f'{pad}    "{side}": {numbers(entry["readout"][side])},\n')
    lines.append(f"{pad}}},\n    }},\n")
    return "".join(lines)


def render_string_level(level: Mapping[str, Any], filename: str = "program.py") -> str:
    """A string-level program from its constants: {name, act_fn, causal, char_embed, ln1 and ln2 ({weight, bias, eps}
    or None), heads {HEAD_KEYS}, b_o, w_in, b_in, alphabet, n_read, n_fitted, n_model, lengths: {L: LENGTH_KEYS + gate,
    readout}}."""
    if level["act_fn"] not in ACTIVATION_BODIES:
        raise DataFileError(f"activation {level['act_fn']!r} is not one of {tuple(ACTIVATION_BODIES)}")
    heads = level["heads"]
    if sorted(heads) != sorted(HEAD_KEYS):
        raise DataFileError(f"the heads' weights are {sorted(heads)}, not {sorted(HEAD_KEYS)}")
    heads_text = "{\n" + "".join(f'    "{key}": {literal(heads[key], 4)},\n' for key in HEAD_KEYS) + "}"
    lengths = level["lengths"]
    return STRING_LEVEL.format(
        level=level_filename(level["name"]).removesuffix(".py"), filename=filename, module=filename.removesuffix(".py"),
        n_heads=len(heads["w_q"]), layernorm1="yes" if level["ln1"] is not None else "none",
        layernorm="yes" if level["ln2"] is not None else "none", act=str(level["act_fn"]).upper(),
        n_dims=len(lengths[min(lengths, key=int)]["directions"]), n_read=int(level["n_read"]),
        n_model=int(level["n_model"]), n_fitted=int(level["n_fitted"]),
        layer0_functions=layer0_functions(level["act_fn"]), marker=CONSTANTS_MARKER,
        main=MAIN.format(filename=filename), readout_code=READOUT.format(),
        alphabet="(" + ", ".join(str(int(c)) for c in level["alphabet"]) + ",)",
        causal="True" if level["causal"] else "False", char_embed=literal(level["char_embed"], 0),
        ln1=layer_norm_literal(level["ln1"]), heads=heads_text, b_o=numbers(level["b_o"]),
        ln2=layer_norm_literal(level["ln2"]), w_in=literal(level["w_in"], 0), b_in=numbers(level["b_in"]),
        tables="".join(render_length(int(k), lengths[k]) for k in sorted(lengths, key=int)))
