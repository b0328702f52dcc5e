"""The explorer's data: every string of example_strings.parquet with its DLA, per-node patching and attention,
packed as one JSON payload the page's script (assets/explorer.js) draws from, offline.

Attention patterns travel as one byte per value (round(255 x attention), base64), a quarter of the size of
JSON numbers: 1/255 is finer than any colour difference the view can show. Other numbers keep 4 decimals.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.attribution.per_example import ANALYSIS, FOOLING, MISCLASSIFIED
from palindrome_lens.report.formatting import num
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.plots import kind_sorted

DECIMALS = 4
SOURCES = (MISCLASSIFIED, FOOLING, ANALYSIS)


def _round(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, DECIMALS)


def packed_attention(attention: pd.DataFrame) -> dict[int, tuple[int, str]]:
    """{key: (positions, base64 of the uint8 patterns in (layer, head, dest, src) order)}."""
    frame = attention.sort_values(["key", "layer", "head", "dest", "src"], kind="stable")
    keys = frame["key"].to_numpy()
    values = np.rint(np.clip(frame["value"].to_numpy(np.float64), 0, 1) * 255).astype(np.uint8)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    out = {}
    for start, end in zip(starts, ends):
        key = int(keys[start])
        n = int(frame["dest"].iat[end - 1]) + 1
        out[key] = (n, base64.b64encode(values[start:end].tobytes()).decode("ascii"))
    return out


def option_label(row: pd.Series) -> str:
    truth = "palindrome" if row["label"] else "not a palindrome"
    verdict = "right" if row["correct"] else "WRONG"
    return f"{row['text']} · {row['kind']} ({truth}) · logit difference {num(row['logit_diff'])} · {verdict}"


def option_groups(strings: pd.DataFrame) -> list[tuple[str, list[tuple[int, str]]]]:
    """Misclassified test strings, fooling edits, then the analysis strings by kind; (label, [(index, text)])."""
    groups = []
    for source in SOURCES:
        rows = strings[strings["source"] == source]
        kinds = kind_sorted(rows["kind"].unique().tolist()) if source == ANALYSIS else [None]
        for kind in kinds:
            mine = rows if kind is None else rows[rows["kind"] == kind]
            if len(mine):
                label = f"{source}s ({len(mine)})" if kind is None else f"{source}s: {kind} ({len(mine)})"
                groups.append((label, [(int(i), option_label(r)) for i, r in mine.iterrows()]))
    return groups


def start_index(strings: pd.DataFrame) -> int:
    """A misclassified string when there is one (test strings first, then edits), else the first near1 string."""
    for mask in (strings["source"] == MISCLASSIFIED, strings["source"] == FOOLING, ~strings["correct"],
                 strings["kind"] == "near1"):
        if mask.any():
            return int(np.flatnonzero(mask.to_numpy())[0])
    return 0


def explorer_payload(attribution: Attribution) -> tuple[dict[str, Any], pd.DataFrame]:
    """The JSON payload and the strings (in payload order, index = position in the picker)."""
    strings = attribution["example_strings"].sort_values("key", kind="stable").reset_index(drop=True)
    dla, patching = attribution["example_dla"], attribution["example_patching"]
    components = list(dict.fromkeys(dla["component"]))
    nodes = list(attribution.circuit["search"]["candidates"])
    dla_of = dla.pivot(index="key", columns="component", values="value").reindex(columns=components)
    recovery = patching.pivot(index="key", columns="node", values="recovery").reindex(columns=nodes)
    patched = patching.pivot(index="key", columns="node", values="patched_logit_diff").reindex(columns=nodes)
    attention = packed_attention(attribution["example_attention"])
    model = attribution.summary["model"]
    rows = []
    for r in strings.itertuples(index=False):
        n, attn = attention.get(int(r.key), (0, ""))
        rows.append({"text": r.text, "source": r.source, "kind": r.kind, "label": bool(r.label),
                     "diff": _round(r.logit_diff), "correct": bool(r.correct), "cp": r.counterpart,
                     "cdiff": _round(r.counterpart_logit_diff),
                     "dla": [_round(v) for v in dla_of.loc[r.key]] if r.key in dla_of.index else [],
                     "rec": [_round(v) for v in recovery.loc[r.key]] if r.key in recovery.index else [],
                     "pld": [_round(v) for v in patched.loc[r.key]] if r.key in patched.index else [],
                     "n": n, "attn": attn})
    payload = {"readout": str(model.get("readout", "bos")).upper(), "components": components, "nodes": nodes,
               "circuit": [n["name"] for n in attribution.circuit["nodes"] if n["role"] == "circuit"],
               "heads": [f"L{layer}H{head}" for layer in range(int(model["n_layers"]))
                         for head in range(int(model["n_heads"]))],
               "strings": rows}
    return payload, strings
