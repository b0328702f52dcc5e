"""The string-level family's program template and its rendering (the same rules as template.py: only numbers go into
the code; the activation is one of three fixed bodies, head names are rebuilt from their numbers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.template import (
    CONSTANTS_MARKER,
    MAIN,
    READOUT,
    level_filename,
    literal,
    number,
    numbers,
)

ACTIVATION_BODIES = {
    "relu": "    return max(x, 0.0)",
    "gelu": "    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))",
    "gelu_new": "    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))",
}

STRING_LEVEL = '''"""How this palindrome classifier decides, as a program (family: string level; level: {level}), compiled by
palindrome-lens from the trained model; standard library only. `python {filename} TEXT` prints the decision and the
logit difference; `from {module} import logit_diff, is_palindrome` gives them to Python.

The model decides in layer 0, at every character position at once:
1. Each of layer 0's {n_heads} heads spreads a character position's attention over the whole string: token t gets
   the score QUERY[h][i][own character] . KEY[h][t][t's character] and the head averages VALUE[h][t][t's
   character] (what that position and character contribute, through W_V W_O) with softmax weights.
2. MLP 0 reads that average at every position (LayerNorm: {layernorm}; W_IN, then {act}).
3. The readout reads layer 0's output at the character positions, averaged over them, on {n_dims} DIRECTIONS
   (the first separates palindromes from the rest), and a GATE and a quadratic per side (READOUT) give the logit
   difference; the string is a palindrome when it is above THRESHOLD.
{n_read} numbers read from the model's own components (the model has {n_model} parameters); GATE and READOUT
({n_fitted} numbers) are FITTED to the model's logits on the train split.
"""
import math
import sys


def dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def activation(x):
{activation}


def layer0_average(table, text, i):
    """Position i's residual stream after layer 0's attention: its embedding, plus every head's average."""
    own = INDEX[text[i]]
    tokens = [(table["bos_key"], table["bos_value"])]
    tokens += [([k[j][INDEX[c]] for k in table["key"]], [v[j][INDEX[c]] for v in table["value"]])
               for j, c in enumerate(text)]
    if table["eos_key"]:
        tokens.append((table["eos_key"], table["eos_value"]))
    if CAUSAL:  # character i is token i + 1: it sees tokens 0 .. i + 1
        tokens = tokens[:i + 2]
    out = [e + b for e, b in zip(table["embed"][i][own], B_O)]
    for h in range(len(table["query"])):
        scores = [dot(table["query"][h][i][own], key[h]) for key, _ in tokens]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        total = sum(weights)
        for w, (_, value) in zip(weights, tokens):
            out = [o + w / total * v for o, v in zip(out, value[h])]
    return out


def mlp_hidden(x):
    """MLP 0's neurons on a residual stream vector."""
    if LN2:
        mean = sum(x) / len(x)
        centred = [v - mean for v in x]
        scale = math.sqrt(sum(v * v for v in centred) / len(x) + LN2["eps"])
        x = [v / scale * w + b for v, w, b in zip(centred, LN2["weight"], LN2["bias"])]
    return [activation(dot(row, x) + b) for row, b in zip(W_IN, B_IN)]


def features(text):
    """The mean over character positions of layer 0's output, on each readout direction."""
    table = table_of(text)
    total = [0.0] * len(table["directions"])
    for i in range(len(text)):
        mid = layer0_average(table, text, i)
        hidden = mlp_hidden(mid)
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
B_O = {b_o}
LN2 = {ln2}
W_IN = {w_in}  # one row per MLP 0 neuron
B_IN = {b_in}
TABLES = {{
{tables}}}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''

LENGTH_KEYS = ("query", "key", "value", "bos_key", "bos_value", "eos_key", "eos_value", "embed", "directions",
               "out_read", "b_out_read")


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
    """A string-level program from its constants: {name, act_fn, causal, b_o, ln2 ({weight, bias, eps} or None),
    w_in, b_in, alphabet, n_read, n_fitted, n_model, lengths: {L: LENGTH_KEYS + gate, readout}}."""
    if level["act_fn"] not in ACTIVATION_BODIES:
        raise DataFileError(f"activation {level['act_fn']!r} is not one of {tuple(ACTIVATION_BODIES)}")
    ln2 = level["ln2"]
    ln2_text = "None" if ln2 is None else (f'{{"eps": {number(ln2["eps"])}, "weight": {numbers(ln2["weight"])}, '
                                           f'"bias": {numbers(ln2["bias"])}}}')
    lengths = level["lengths"]
    first = lengths[min(lengths, key=int)]
    return STRING_LEVEL.format(
        level=level_filename(level["name"]).removesuffix(".py"), filename=filename, module=filename.removesuffix(".py"),
        n_heads=len(first["query"]), layernorm="yes" if ln2 is not None else "none",
        act=str(level["act_fn"]).upper(), n_dims=len(first["directions"]), n_read=int(level["n_read"]),
        n_model=int(level["n_model"]), n_fitted=int(level["n_fitted"]),
        activation=ACTIVATION_BODIES[level["act_fn"]], marker=CONSTANTS_MARKER,
        main=MAIN.format(filename=filename), readout_code=READOUT.format(),
        alphabet="(" + ", ".join(str(int(c)) for c in level["alphabet"]) + ",)",
        causal="True" if level["causal"] else "False", b_o=numbers(level["b_o"]), ln2=ln2_text,
        w_in=literal(level["w_in"], 0), b_in=numbers(level["b_in"]),
        tables="".join(render_length(int(k), lengths[k]) for k in sorted(lengths, key=int)))
