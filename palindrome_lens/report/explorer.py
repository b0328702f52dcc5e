"""The explorer's data: the failures the explanation predicted that the model gets wrong (the explain stage's
failure_views/), then every string of example_strings.parquet, each with its DLA, per-node patching and attention,
packed column by column into one script (`data/explorer-data.js`) that the page loads beside assets/explorer.js,
so the page itself stays small and the data loads offline from file://.

Attention patterns travel as one byte per value in steps of 1/63 (finer than any colour difference the view can
show; at 1/255 they would double the file), all strings in one zlib-compressed block. Logit differences keep 3 decimals, recoveries and DLA 2 or 3 (the view prints 2).
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.attribution.per_example import ANALYSIS, FOOLING, FOUND, MISCLASSIFIED
from palindrome_lens.report.inputs import Attribution

SOURCES = (FOUND, MISCLASSIFIED, FOOLING, ANALYSIS)
TABLES = ("example_strings", "example_dla", "example_attention", "example_patching")
DATA_FILE = "data/explorer-data.js"
LEVELS = 63  # attention is stored as round(LEVELS x value)


def _rounded(values: Any, decimals: int) -> list[float | None]:
    return [None if math.isnan(v) else round(v, decimals) for v in np.asarray(values, dtype=np.float64).ravel()]


def packed_attention(attention: pd.DataFrame, keys: Sequence[int]) -> tuple[list[int], bytes]:
    """(real positions per key, every key's patterns in (layer, head, dest, src) order, one byte per value in
    steps of 1/LEVELS), keys in the order given; a key without patterns has 0 positions."""
    frame = attention.sort_values(["key", "layer", "head", "dest", "src"], kind="stable")
    values = np.rint(np.clip(frame["value"].to_numpy(np.float64), 0, 1) * LEVELS).astype(np.uint8)
    spans = {int(k): (int(g.index.min()), len(g), int(g["dest"].max()) + 1)
             for k, g in frame.reset_index(drop=True).groupby("key", sort=False)}
    sizes, chunks = [], []
    for key in keys:
        start, size, n = spans.get(int(key), (0, 0, 0))
        sizes.append(n)
        chunks.append(values[start:start + size].tobytes())
    return sizes, b"".join(chunks)


def start_index(strings: pd.DataFrame) -> int:
    """The first string of the first source in SOURCES order that is misclassified (a predicted failure, a test
    string, an edit), else the first wrong one, else the first near1 string."""
    for mask in (*(strings["source"] == s for s in SOURCES[:-1]), ~strings["correct"], strings["kind"] == "near1"):
        if mask.any():
            return int(np.flatnonzero(mask.to_numpy())[0])
    return 0


def merged(attribution: Attribution, views: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The attribute stage's four tables with `views` (the same tables, keys from 0) before them, keys shifted."""
    if not views:
        return {name: attribution[name] for name in TABLES}
    shift = len(views["example_strings"])
    return {name: pd.concat([views[name], attribution[name].assign(key=attribution[name]["key"] + shift)],
                            ignore_index=True) for name in TABLES}


def explorer_payload(attribution: Attribution, views: Mapping[str, pd.DataFrame] | None = None
                     ) -> tuple[dict[str, Any], bytes, pd.DataFrame]:
    """The payload (one list per field, index i = the i-th string of `strings`), the attention bytes, the strings.
    `views`: the explain stage's failure_views tables, shown first."""
    tables = merged(attribution, views or {})
    strings = tables["example_strings"].sort_values("key", kind="stable").reset_index(drop=True)
    dla, patching = tables["example_dla"], tables["example_patching"]
    components = list(dict.fromkeys(dla["component"]))
    nodes = list(attribution.circuit["search"]["candidates"])
    keys = strings["key"]
    dla_of = dla.pivot(index="key", columns="component", values="value").reindex(index=keys, columns=components)
    recovery = patching.pivot(index="key", columns="node", values="recovery").reindex(index=keys, columns=nodes)
    patched = patching.pivot(index="key", columns="node", values="patched_logit_diff").reindex(index=keys,
                                                                                              columns=nodes)
    sizes, attention = packed_attention(tables["example_attention"], keys.tolist())
    model = attribution.summary["model"]
    sources = [s for s in SOURCES if s in set(strings["source"])] + sorted(set(strings["source"]) - set(SOURCES))
    kinds = list(dict.fromkeys(strings["kind"]))
    payload = {
        "readout": str(model.get("readout", "bos")).upper(), "components": components, "nodes": nodes,
        "circuit": [n["name"] for n in attribution.circuit["nodes"] if n["role"] == "circuit"],
        "heads": [f"L{layer}H{head}" for layer in range(int(model["n_layers"])) for head in range(int(model["n_heads"]))],
        "sources": sources, "kinds": kinds, "start": start_index(strings),
        "text": strings["text"].tolist(), "cp": strings["counterpart"].tolist(),
        "source": [sources.index(s) for s in strings["source"]], "kind": [kinds.index(k) for k in strings["kind"]],
        "label": [int(v) for v in strings["label"]], "correct": [int(v) for v in strings["correct"]],
        "diff": _rounded(strings["logit_diff"], 3), "cdiff": _rounded(strings["counterpart_logit_diff"], 3),
        "dla": [_rounded(row, 3) for row in dla_of.to_numpy()],
        "rec": [_rounded(row, 3) for row in recovery.to_numpy()],
        "pld": [_rounded(row, 2) for row in patched.to_numpy()],
        "n": sizes, "levels": LEVELS,
    }
    return payload, attention, strings


def payload_script(payload: dict[str, Any], attention: bytes) -> str:
    """The data file: one global holding the payload's JSON, zlib-compressed, in base64; the page's script
    inflates it with the browser's DecompressionStream (a plain script works from file://, where fetch does not)."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    packed, attn = (base64.b64encode(zlib.compress(b, 9)).decode("ascii") for b in (text, attention))
    return f'window.EXPLORER_DATA_Z = "{packed}";\nwindow.EXPLORER_ATTENTION_Z = "{attn}";\n'
