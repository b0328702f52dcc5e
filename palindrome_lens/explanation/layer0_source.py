"""Layer 0 as standard-library Python: the functions every program that runs the model's layer 0 holds (the
string-level family's program, and the pair-comparison ladder's layer_zero level). They read the globals CHAR_EMBED,
LN1, HEADS, B_O, CAUSAL and INDEX, and a length's table: pos_embed, bos_key, bos_value, eos_key, eos_value."""

from __future__ import annotations

from palindrome_lens.errors import DataFileError

ACTIVATION_BODIES = {
    "relu": "    return max(x, 0.0)",
    "gelu": "    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))",
    "gelu_new": "    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))",
}

LAYER0_FUNCTIONS = '''def dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def activation(x):
{activation}


def layer_norm(x, ln):
    """LayerNorm with the model's weight and bias; `ln` None: the model has none there."""
    if not ln:
        return x
    mean = sum(x) / len(x)
    centred = [v - mean for v in x]
    scale = math.sqrt(sum(v * v for v in centred) / len(x) + ln["eps"])
    return [v / scale * w + b for v, w, b in zip(centred, ln["weight"], ln["bias"])]


def project(x, w, b):
    """x through a (rows of x's length) matrix w, plus b."""
    return [dot(x, column) + c for column, c in zip(zip(*w), b)]


def layer0_attention(table, text):
    """Every character position's residual stream after layer 0's attention: its own, plus every head's average."""
    streams = [[c + p for c, p in zip(CHAR_EMBED[INDEX[ch]], table["pos_embed"][i])] for i, ch in enumerate(text)]
    normed = [layer_norm(x, LN1) for x in streams]
    heads = range(len(HEADS["w_q"]))
    keys = [table["bos_key"]] + [[project(x, HEADS["w_k"][h], HEADS["b_k"][h]) for h in heads] for x in normed]
    values = [table["bos_value"]] + [[project(project(x, HEADS["w_v"][h], HEADS["b_v"][h]), HEADS["w_o"][h],
                                              [0.0] * len(x)) for h in heads] for x in normed]
    if table["eos_key"]:
        keys, values = keys + [table["eos_key"]], values + [table["eos_value"]]
    out = []
    for i, x in enumerate(normed):
        seen = i + 2 if CAUSAL else len(keys)  # causal: character i is token i + 1 and sees tokens 0 .. i + 1
        mid = [s + b for s, b in zip(streams[i], B_O)]
        for h in heads:
            query = project(x, HEADS["w_q"][h], HEADS["b_q"][h])
            scores = [dot(query, key[h]) for key in keys[:seen]]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            for w, value in zip(weights, values[:seen]):
                mid = [m + w / total * v for m, v in zip(mid, value[h])]
        out.append(mid)
    return out'''


def layer0_functions(act_fn: str) -> str:
    """The functions' source with the model's activation (one of three fixed bodies)."""
    if act_fn not in ACTIVATION_BODIES:
        raise DataFileError(f"activation {act_fn!r} is not one of {tuple(ACTIVATION_BODIES)}")
    return LAYER0_FUNCTIONS.replace("{activation}", ACTIVATION_BODIES[act_fn])
