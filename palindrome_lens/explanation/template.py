"""The fixed program template of the pair-comparison family, and its rendering from a constants document.

Only numbers go into the code: every constant is written as a number literal, the alphabet as its code
points, head names are rebuilt from their layer and head numbers, and the readout is one of two fixed
words. No text from any input is pasted into the program.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from palindrome_lens.errors import DataFileError

CONSTANTS_MARKER = "# ---- constants"
READOUT_WORDS = {"bos": "BOS", "eos": "EOS"}
_HEAD = re.compile(r"^L(\d+)H(\d+)$")

PAIR_COMPARISON = '''"""How this palindrome classifier decides, as a program (family: pair comparison), compiled by
palindrome-lens from the trained model; standard library only. `python program.py TEXT` prints the decision
and the logit difference; `from program import logit_diff, is_palindrome` gives them to Python.

1. Up to layer {after_layer}, each character position compares its own character with its mirror's.
2. The readout heads {heads} at {readout} weigh position i by softmax(SALIENCE) and average its EVIDENCE:
   a broken pair draws the readout's attention and carries evidence against "palindrome".
3. {readout}'s own layer-0 reading of the characters (CONTEXT, {n_context} numbers) shifts the readout.
4. A GATE says which side the evidence is on, a quadratic per side (READOUT) gives the logit difference,
   and the string is a palindrome when it is above THRESHOLD.
Every table was read from the model's own components on controlled strings (constants.json says which
component, which inputs and how); only GATE and READOUT ({n_fitted} numbers) are FITTED, to the model's
logits on the train split.
"""
import math
import sys


def weighted_mean(scores, values):
    """The mean of `values` weighted by softmax(scores)."""
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


def compared(text, pairs=None):
    """Per character, the (own, mirror) characters it compares; `pairs` {{k: (left, right)}} sets pair k's."""
    n = len(text)
    seen = [(text[i], text[n - 1 - i]) for i in range(n)]
    for k, (left, right) in (pairs or {{}}).items():
        seen[k], seen[n - 1 - k] = (left, right), (right, left)
    return [(INDEX[a], INDEX[b]) for a, b in seen]


def features(text, pairs=None):
    """The readout's inputs: each readout head's evidence, then the readout's context."""
    table, seen, out = table_of(text), compared(text, pairs), []
    for head in table["heads"]:
        marks = head["before"] + [(head["salience"][i][a][b], head["evidence"][i][a][b])
                                  for i, (a, b) in enumerate(seen)] + head["after"]
        out.append(weighted_mean([s for s, _ in marks], [e for _, e in marks]))
    context = [0.0] * N_CONTEXT
    for head in table["context"]:
        marks = head["before"] + [(head["salience"][i][INDEX[c]], head["value"][i][INDEX[c]])
                                  for i, c in enumerate(text)] + head["after"]
        for k in range(N_CONTEXT):
            context[k] += weighted_mean([s for s, _ in marks], [v[k] for _, v in marks])
    return out + context


def logit_diff(text, pairs=None):
    """logit[palindrome] - logit[not] for `text` (characters only, no [BOS]/[EOS]); `pairs` intervenes."""
    table, f = table_of(text), features(text, pairs)
    gate = table["gate"]
    z = gate[-1] + sum(w * e for w, e in zip(gate[:-1], f))  # the heads' evidence comes first in f
    side = 0.5 * (1.0 + math.tanh(z / 2.0))  # logistic(z): how far the string is on the palindrome side
    terms = [1.0, *f] + [f[i] * f[j] for i in range(len(f)) for j in range(i, len(f))]
    value = {{name: sum(c * t for c, t in zip(coefs, terms)) for name, coefs in table["readout"].items()}}
    return side * value["palindrome"] + (1.0 - side) * value["not_palindrome"]


def is_palindrome(text, pairs=None):
    return logit_diff(text, pairs) > THRESHOLD


def table_of(text):
    if not isinstance(text, str) or any(c not in INDEX for c in text) or len(text) not in TABLES:
        raise ValueError(f"{{text!r}}: use lengths {{sorted(TABLES)}} of the alphabet {{ALPHABET!r}}")
    return TABLES[len(text)]


def main(argv):
    try:
        value = logit_diff(*argv) if len(argv) == 1 else None
    except ValueError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        return 2
    if value is None:
        print("usage: python program.py TEXT", file=sys.stderr)
        return 2
    print(f"{{'palindrome' if value > THRESHOLD else 'not a palindrome'}} (logit difference {{value:.4f}})")
    return 0


{marker} (numbers only: read from the model unless marked FITTED) -----------------------------------
ALPHABET = "".join(map(chr, {alphabet}))
INDEX = {{c: i for i, c in enumerate(ALPHABET)}}
THRESHOLD = 0.0
N_CONTEXT = {n_context}
TABLES = {{
{tables}}}

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


def nested(values: Sequence[Any], indent: int) -> str:
    """A nested list of numbers, one innermost list per line."""
    if not isinstance(values[0], list | tuple):
        return numbers(values)
    if not isinstance(values[0][0], list | tuple):
        pad = " " * (indent + 4)
        return "[\n" + "".join(f"{pad}{numbers(row)},\n" for row in values) + " " * indent + "]"
    pad = " " * (indent + 4)
    return "[\n" + "".join(f"{pad}{nested(row, indent + 4)},\n" for row in values) + " " * indent + "]"


def specials(marks: Mapping[str, Any], which: Sequence[str]) -> str:
    """`before`/`after` lists of (salience, value) for the special positions present."""
    items = []
    for name in which:
        if name in marks:
            salience, value = marks[name]
            items.append(f"({number(salience)}, {numbers(value) if isinstance(value, list) else number(value)})")
    return "[" + ", ".join(items) + "]"


def render_head(head: Mapping[str, Any], value: str, axes: str) -> str:
    """One head's tables: its special positions, `salience` and `value` (`evidence` or `value`)."""
    pad = " " * 12
    return (f'{pad}{{"name": "{head_name(head["name"])}",\n'
            f'{pad} "before": {specials(head["special"], ["bos"])}, "after": {specials(head["special"], ["eos"])},\n'
            f'{pad} "salience": {nested(head["salience"], 13)},  # {axes}\n'
            f'{pad} "{value}": {nested(head[value], 13)}}},\n')


def render_length(length: int, tables: Mapping[str, Any]) -> str:
    lines = [f"    {int(length)}: {{\n", '        "heads": [\n']
    lines += [render_head(head, "evidence", "[position][own][mirror]") for head in tables["heads"]]
    lines.append("        ],\n        \"context\": [\n")
    lines += [render_head(head, "value", "[position][character]") for head in tables["context"]]
    lines.append("        ],\n")
    lines.append(f'        "gate": {numbers(tables["gate"])},  # FITTED: weight per readout head, then the bias\n')
    lines.append('        "readout": {  # FITTED: 1, features, then their products f[i] * f[j] (i <= j)\n')
    for side in ("palindrome", "not_palindrome"):
        lines.append(f'            "{side}": {numbers(tables["readout"][side])},\n')
    lines.append("        },\n    },\n")
    return "".join(lines)


def render_program(doc: Mapping[str, Any]) -> str:
    """program.py from a constants document (constants.load_constants checks its shape first)."""
    lengths = doc["lengths"]
    first = lengths[min(lengths, key=int)]
    heads = ", ".join(head_name(h["name"]) for h in first["heads"])
    n_context = len(first["context"][0]["value"][0][0]) if first["context"] else 0
    alphabet = "(" + ", ".join(str(int(c)) for c in doc["alphabet"]) + ",)"
    return PAIR_COMPARISON.format(
        after_layer=int(doc["after_layer"]), heads=heads, readout=READOUT_WORDS[doc["readout"]],
        n_context=int(n_context), n_fitted=int(doc["counts"]["fitted"]), marker=CONSTANTS_MARKER,
        alphabet=alphabet, tables="".join(render_length(int(k), lengths[k]) for k in sorted(lengths, key=int)))


def logic_lines(source: str) -> int:
    """Lines of the program above its constants."""
    return source[:source.index(CONSTANTS_MARKER)].rstrip().count("\n") + 1
