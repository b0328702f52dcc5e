"""The fixed program templates of the pair-comparison family (one for every level of the ladder, one for its
floor, the exact check), and their rendering from a level's constants.

Only numbers go into the code: every constant is written as a number literal, the alphabet as its code
points, head names are rebuilt from their layer and head numbers, table forms use fixed keys, and the readout
is one of two fixed words. No text from any input is pasted into the program.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.layer0_source import layer0_functions

CONSTANTS_MARKER = "# ---- constants"
READOUT_WORDS = {"bos": "BOS", "eos": "EOS"}
_HEAD = re.compile(r"^L(\d+)H(\d+)$")
FORM_KEYS = ("full", "pair", "match", "match_char", "broken", "own", "mirror", "cp_weight", "position", "char")
_LEVEL = re.compile(r"^[a-z_]+$")

# What every table-driven program shares (each program is a standalone file, so these are pasted in): the fitted
# readout (a gate on the first features, one quadratic per side), the length's tables, and the two entry points.
READOUT = '''def readout(table, f):
    """The logit difference from the features f: GATE says which side, a quadratic per side (READOUT) how far."""
    gate = table["gate"]
    z = gate[-1] + sum(w * e for w, e in zip(gate[:-1], f))
    side = 0.5 * (1.0 + math.tanh(z / 2.0))  # logistic(z): how far the string is on the palindrome side
    terms = [1.0, *f] + [f[i] * f[j] for i in range(len(f)) for j in range(i, len(f))]
    value = {{name: sum(c * t for c, t in zip(coefs, terms)) for name, coefs in table["readout"].items()}}
    return side * value["palindrome"] + (1.0 - side) * value["not_palindrome"]


def table_of(text):
    if not isinstance(text, str) or any(c not in INDEX for c in text) or len(text) not in TABLES:
        raise ValueError(f"{{text!r}}: use lengths {{sorted(TABLES)}} of the alphabet {{ALPHABET!r}}")
    return TABLES[len(text)]
'''

MAIN = '''def is_palindrome(text, pairs=None):
    return logit_diff(text, pairs) > THRESHOLD


def main(argv):
    try:
        value = logit_diff(*argv) if len(argv) == 1 else None
    except ValueError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        return 2
    if value is None:
        print("usage: python {filename} TEXT", file=sys.stderr)
        return 2
    print(f"{{'palindrome' if value > THRESHOLD else 'not a palindrome'}} (logit difference {{value:.4f}})")
    return 0
'''

PAIR_COMPARISON = '''"""How this palindrome classifier decides, as a program (family: pair comparison; level: {level}),
compiled by palindrome-lens from the trained model; standard library only. `python {filename} TEXT` prints
the decision and the logit difference; `from {module} import logit_diff, is_palindrome` gives them to Python.

1. {compare_line}
2. The readout heads {heads} at {readout} weigh position i by softmax(salience) and average its evidence,
   both looked up in the head's table for (position, own, mirror): pair_entry says how this level builds it.
3. {context_line}
4. A GATE says which side the evidence is on, a quadratic per side (READOUT) gives the logit difference,
   and the string is a palindrome when it is above THRESHOLD.
This level: {adds}. {n_read} numbers read from the model's own components (the model has {n_model}
parameters); GATE and READOUT ({n_fitted} numbers) are FITTED to the model's logits on the train split.
"""
import math
import sys


def weighted_mean(scores, values):
    """The mean of `values` weighted by softmax(scores)."""
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


def pair_entry(form, cp, i, a, b):
    """A readout head's salience or evidence at position i for own character a and mirror character b
    (a broken pair: its position, then each character, then how the two combine)."""
    if "pair" in form:  # the whole table merged per mirrored pair: i is the pair, a its left character
        return form["pair"][i][a][b]
    if a == b:  # a matched pair: its position, and which character it is
        return form["match"][i] + (form["match_char"][a] if "match_char" in form else 0.0)
    value = form["broken"][i] + (form["own"][a] + form["mirror"][b] if "own" in form else 0.0)
    if "cp_weight" in form:  # how the two characters combine: factors shared by positions and tables
        value += sum(w * p * x * y for w, p, x, y in zip(form["cp_weight"], cp["position"][i], cp["own"][a],
                                                         cp["mirror"][b]))
    return value


def context_entry(form, i, c):
    """A layer-0 head's salience (a number) or value (a list) at position i for character c."""
    if "full" in form:
        return form["full"][i][c]
    p, q = form["position"][i], form["char"][c]
    return [x + y for x, y in zip(p, q)] if isinstance(p, list) else p + q


def compared(text, pairs=None):
    """Per character, the (own, mirror) characters it compares; `pairs` {{k: (left, right)}} sets pair k's."""
    n = len(text)
    seen = [(text[i], text[n - 1 - i]) for i in range(n)]
    for k, (left, right) in (pairs or {{}}).items():
        seen[k], seen[n - 1 - k] = (left, right), (right, left)
    return [(INDEX[a], INDEX[b]) for a, b in seen]


def features(text, pairs=None):
    """The readout's inputs: each readout head's evidence, then the readout's context."""
{head_loop}
    context = [0.0] * N_CONTEXT
    for head in table["context"]:
        marks = head["before"] + [(context_entry(head["salience"], i, INDEX[c]),
                                   context_entry(head["value"], i, INDEX[c])) for i, c in enumerate(text)] + head["after"]
        for k in range(N_CONTEXT):
            context[k] += weighted_mean([s for s, _ in marks], [v[k] for _, v in marks])
    return out + context


def logit_diff(text, pairs=None):
    """logit[palindrome] - logit[not] for `text` (characters only, no [BOS]/[EOS]); `pairs` intervenes."""
    table = table_of(text)
    return readout(table, features(text, pairs))
{layer_zero_code}

{readout_code}

{main}

{marker} (numbers only: read from the model unless marked FITTED) -----------------------------------
ALPHABET = "".join(map(chr, {alphabet}))
INDEX = {{c: i for i, c in enumerate(ALPHABET)}}
THRESHOLD = 0.0
N_CONTEXT = {n_context}
{layer_zero_globals}TABLES = {{
{tables}}}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''

# The readout heads' loop in features(): every head from its tables, or (level layer_zero) layer 1's from layer 0
HEAD_LOOP = '''    table, seen, out = table_of(text), compared(text, pairs), []
    for head in table["heads"]:
        kept = seen[:(len(seen) + 1) // 2] if "pair" in head["salience"] else seen  # merged: one entry per pair
        marks = head["before"] + [(pair_entry(head["salience"], table["cp"], i, a, b),
                                   pair_entry(head["evidence"], table["cp"], i, a, b))
                                  for i, (a, b) in enumerate(kept)] + head["after"]
        out.append(weighted_mean([s for s, _ in marks], [e for _, e in marks]))'''
HEAD_LOOP_LAYER_ZERO = '''    table, seen, out, post = table_of(text), compared(text, pairs), [], None
    for head in table["heads"]:
        if "key" in head:  # read along two directions of each position's own layer-0 output (level layer_zero)
            post = post or layer_zero(table, text, pairs)
            middle = [(dot(x, head["key"]) + head["key_bias"], dot(x, head["value"]) + head["value_bias"])
                      for x in post]
        else:
            kept = seen[:(len(seen) + 1) // 2] if "pair" in head["salience"] else seen  # merged: one entry per pair
            middle = [(pair_entry(head["salience"], table["cp"], i, a, b),
                       pair_entry(head["evidence"], table["cp"], i, a, b)) for i, (a, b) in enumerate(kept)]
        marks = head["before"] + middle + head["after"]
        out.append(weighted_mean([s for s, _ in marks], [e for _, e in marks]))'''

LAYER_ZERO = '''

def layer_zero(table, text, pairs=None):
    """Each character position's residual stream after layer 0 (its attention, then MLP 0) through layer 1's
    LayerNorm (LN_READ); `pairs` {k: (left, right)}: pair k's two positions take the output of the string whose
    pair k holds those characters."""
    def post(chars):
        out = []
        for mid in layer0_attention(table, chars):
            normed = layer_norm(mid, LN2)
            hidden = [activation(dot(row, normed) + b) for row, b in zip(W_IN, B_IN)]  # MLP 0's neurons
            out.append([m + dot(row, hidden) + b for m, row, b in zip(mid, W_OUT, B_OUT)])
        return out

    streams, n = post(text), len(text)
    for k, (left, right) in (pairs or {}).items():
        chars = list(text)
        chars[k], chars[n - 1 - k] = left, right
        other = post("".join(chars))
        streams[k], streams[n - 1 - k] = other[k], other[n - 1 - k]
    return [layer_norm(x, LN_READ) for x in streams]


'''

EXACT = '''"""The floor of the ladder (level: exact): the exact palindrome check, compiled by palindrome-lens beside the
model's programs; standard library only. It decides by the text alone and gives the model's mean logit
difference on each class (MEANS: 2 numbers FITTED to the model's logits on the train split). Every level of
the ladder is scored beside this one: what a level adds must beat it.
"""
import sys


def logit_diff(text, pairs=None):
    """The model's mean logit difference on the string's class; `pairs` {{k: (left, right)}} sets pair k."""
    if not isinstance(text, str) or not text or any(c not in ALPHABET for c in text):
        raise ValueError(f"{{text!r}}: use the alphabet {{ALPHABET!r}}")
    n = len(text)
    seen = [(text[i], text[n - 1 - i]) for i in range(n)]
    for k, (left, right) in (pairs or {{}}).items():
        seen[k], seen[n - 1 - k] = (left, right), (right, left)
    return MEANS[0] if all(a == b for a, b in seen) else MEANS[1]


{main}

{marker} (numbers only) -----------------------------------------------------------------------------------
ALPHABET = "".join(map(chr, {alphabet}))
THRESHOLD = 0.0
MEANS = {means}  # FITTED: the model's mean on palindromes, then on the rest

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def number(x: Any) -> str:
    """A finite float as a Python literal."""
    value = float(x)
    if not math.isfinite(value):
        raise DataFileError(f"constant {value!r} is not finite; a program cannot hold it")
    return repr(value)


def numbers(values: Iterable[Any]) -> str:
    return "[" + ", ".join(number(v) for v in values) + "]"


def head_name(name: Any) -> str:
    """A head name rebuilt from its numbers (`L1H0`); anything else is refused."""
    match = _HEAD.match(str(name))
    if not match:
        raise DataFileError(f"head name {name!r} is not of the form L<layer>H<head>")
    return f"L{int(match[1])}H{int(match[2])}"


def literal(value: Any, indent: int) -> str:
    """Numbers, nested lists of them, or a table form (a dict with fixed keys) as a Python literal."""
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in FORM_KEYS]
        if unknown:
            raise DataFileError(f"table form key {unknown[0]!r} is not one of {FORM_KEYS}")
        pad = " " * (indent + 4)
        return "{\n" + "".join(f'{pad}"{key}": {literal(v, indent + 4)},\n' for key, v in value.items()) + \
            " " * indent + "}"
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        return number(value)
    if not value or not isinstance(value[0], list | tuple):
        return numbers(value)
    pad = " " * (indent + 4)
    return "[\n" + "".join(f"{pad}{literal(row, indent + 4)},\n" for row in value) + " " * indent + "]"


def marks(pairs: Sequence[Any]) -> str:
    """`before`/`after`: (salience, value) of the special positions present."""
    return "[" + ", ".join(f"({number(s)}, {literal(v, 0)})" for s, v in pairs) + "]"


def render_head(head: Mapping[str, Any], value: str) -> str:
    pad = " " * 12
    return (f'{pad}{{"name": "{head_name(head["name"])}", "before": {marks(head["before"])}, '
            f'"after": {marks(head["after"])},\n'
            f'{pad} "salience": {literal(head["salience"], 13)},\n'
            f'{pad} "{value}": {literal(head[value], 13)}}},\n')


def render_zero_head(head: Mapping[str, Any]) -> str:
    """A layer-1 readout head of the layer_zero level: its key and value directions instead of tables."""
    pad = " " * 12
    return (f'{pad}{{"name": "{head_name(head["name"])}", "before": {marks(head["before"])}, '
            f'"after": {marks(head["after"])},\n'
            f'{pad} "key": {numbers(head["key"])}, "key_bias": {number(head["key_bias"])},\n'
            f'{pad} "value": {numbers(head["value"])}, "value_bias": {number(head["value_bias"])}}},\n')


LAYER0_LENGTH_KEYS = ("pos_embed", "bos_key", "bos_value", "eos_key", "eos_value")


def render_length(length: int, tables: Mapping[str, Any]) -> str:
    lines = [f"    {int(length)}: {{\n", '        "heads": [\n']
    lines += [render_zero_head(head) if "key" in head else render_head(head, "evidence") for head in tables["heads"]]
    lines.append("        ],\n        \"context\": [\n")
    lines += [render_head(head, "value") for head in tables["context"]]
    lines.append("        ],\n")
    lines.append(f'        "cp": {literal(tables.get("cp", {}), 8)},  # CP factors shared by the readout tables\n')
    if "layer0" in tables:  # layer 0's per-length factors (level layer_zero)
        lines += [f'        "{key}": {literal(tables["layer0"][key], 8)},\n' for key in LAYER0_LENGTH_KEYS]
    lines.append(f'        "gate": {numbers(tables["gate"])},  # FITTED: weight per readout head, then the bias\n')
    lines.append('        "readout": {  # FITTED: 1, features, then their products f[i] * f[j] (i <= j)\n')
    for side in ("palindrome", "not_palindrome"):
        lines.append(f'            "{side}": {numbers(tables["readout"][side])},\n')
    lines.append("        },\n    },\n")
    return "".join(lines)


def layer_norm_literal(ln: Mapping[str, Any] | None) -> str:
    return "None" if ln is None else (f'{{"eps": {number(ln["eps"])}, "weight": {numbers(ln["weight"])}, '
                                      f'"bias": {numbers(ln["bias"])}}}')


LAYER0_HEAD_KEYS = ("w_q", "b_q", "w_k", "b_k", "w_v", "b_v", "w_o")


def layer0_globals(l0: Mapping[str, Any]) -> str:
    """The layer_zero level's globals: layer 0's weights as the string-level program holds them, MLP 0's W_out and
    b_out, and layer 1's LayerNorm."""
    heads = l0["heads"]
    if sorted(heads) != sorted(LAYER0_HEAD_KEYS):
        raise DataFileError(f"the heads' weights are {sorted(heads)}, not {sorted(LAYER0_HEAD_KEYS)}")
    heads_text = "{\n" + "".join(f'    "{key}": {literal(heads[key], 4)},\n' for key in LAYER0_HEAD_KEYS) + "}"
    return (f"CAUSAL = {'True' if l0['causal'] else 'False'}\n"
            f"CHAR_EMBED = {literal(l0['char_embed'], 0)}  # one row per character\n"
            f"LN1 = {layer_norm_literal(l0['ln1'])}\n"
            f"HEADS = {heads_text}  # layer 0: W_Q, b_Q, W_K and b_K (divided by the attention scale), W_V, b_V, W_O\n"
            f"B_O = {numbers(l0['b_o'])}\n"
            f"LN2 = {layer_norm_literal(l0['ln2'])}\n"
            f"W_IN = {literal(l0['w_in'], 0)}  # one row per MLP 0 neuron\n"
            f"B_IN = {numbers(l0['b_in'])}\n"
            f"W_OUT = {literal(l0['w_out'], 0)}  # one row per residual-stream dimension\n"
            f"B_OUT = {numbers(l0['b_out'])}\n"
            f"LN_READ = {layer_norm_literal(l0['ln_read'])}  # layer 1's LayerNorm before its keys and values\n")


def level_filename(name: str) -> str:
    if not _LEVEL.match(str(name)):
        raise DataFileError(f"level name {name!r} is not a lower-case word")
    return f"{name}.py"


def compare_line(after_layer: int) -> str:
    """Step 1 of the algorithm: where each pair's flag is written (the hypothesis' layer, chosen where the attribute
    stage's read test finds one direction that carries it; before it, none does)."""
    if after_layer == 0:
        return "In layer 0, each character position compares its own character with its mirror's."
    before = "Layer 0 brings" if after_layer == 1 else f"Layers 0 to {after_layer - 1} bring"
    return (f"{before} each character position what it needs of its mirror's character; layer {after_layer}\n"
            "   writes each pair's flag in one direction that the readout reads (before it, no single direction does).")


def render_level(level: Mapping[str, Any], filename: str = "program.py") -> str:
    """A level's program from its compact constants: {name, adds, after_layer, readout, alphabet, n_read,
    n_model, n_fitted, n_context, lengths: {L: {heads, context, gate, readout}}}, or {name: exact, alphabet,
    means} for the floor."""
    if not _LEVEL.match(filename.removesuffix(".py")):
        raise DataFileError(f"program file name {filename!r} is not a lower-case word")
    common = {"filename": filename, "marker": CONSTANTS_MARKER, "main": MAIN.format(filename=filename),
              "alphabet": "(" + ", ".join(str(int(c)) for c in level["alphabet"]) + ",)"}
    if level["name"] == "exact":
        return EXACT.format(means=numbers(level["means"]), **common)
    lengths = level["lengths"]
    first = lengths[min(lengths, key=int)]
    return PAIR_COMPARISON.format(readout_code=READOUT.format(),
        level=level_filename(level["name"]).removesuffix(".py"), module=filename.removesuffix(".py"),
        adds=str(level["adds"]).replace('"', "'"), compare_line=compare_line(int(level["after_layer"])),
        heads=", ".join(head_name(h["name"]) for h in first["heads"]), readout=READOUT_WORDS[level["readout"]],
        n_context=int(level["n_context"]), n_read=int(level["n_read"]), n_model=int(level["n_model"]),
        context_line=(f"{READOUT_WORDS[level['readout']]}'s own layer-0 reading of the characters (CONTEXT, "
                      f"{int(level['n_context'])} directions) shifts the readout." if level["n_context"] else
                      "This level leaves out the readout position's own layer-0 reading of the characters."),
        n_fitted=int(level["n_fitted"]),
        layer_zero_code=(LAYER_ZERO + layer0_functions(level["layer0"]["act_fn"]).rstrip("\n") + "\n"
                         if "layer0" in level else ""),
        layer_zero_globals=layer0_globals(level["layer0"]) if "layer0" in level else "",
        head_loop=HEAD_LOOP_LAYER_ZERO if "layer0" in level else HEAD_LOOP,
        tables="".join(render_length(int(k), lengths[k]) for k in sorted(lengths, key=int)), **common)


def full_level(doc: Mapping[str, Any], n_model: int = 0) -> dict[str, Any]:
    """A constants document (constants.json: every table whole) as the compact constants of the `full` level."""
    def head(h: Mapping[str, Any], value: str, length: int) -> dict[str, Any]:
        special = h["special"]
        form = "pair" if len(h["salience"]) < length else "full"  # merged per mirrored pair (ladder.merged_pairs)
        return {"name": h["name"], "before": [special["bos"]] if "bos" in special else [],
                "after": [special["eos"]] if "eos" in special else [],
                "salience": {form: h["salience"]}, value: {form: h[value]}}

    lengths = {k: {"heads": [head(h, "evidence", int(k)) for h in e["heads"]],
                   "context": [head(c, "value", int(k)) for c in e["context"]],
                   "gate": e["gate"], "readout": e["readout"]} for k, e in doc["lengths"].items()}
    first = doc["lengths"][min(doc["lengths"], key=int)]
    n_context = len(first["context"][0]["value"][0][0]) if first["context"] else 0
    return {"name": "full", "adds": "every table whole", "after_layer": doc["after_layer"], "readout": doc["readout"],
            "alphabet": doc["alphabet"], "n_read": doc["counts"]["read"], "n_model": n_model, "n_context": n_context,
            "n_fitted": doc["counts"]["fitted"], "lengths": lengths}


def logic_lines(source: str) -> int:
    """Lines of the program above its constants."""
    return source[:source.index(CONSTANTS_MARKER)].rstrip().count("\n") + 1
