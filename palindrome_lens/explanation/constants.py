"""constants.json: every constant of the program, where it was read from (which component, which inputs) and
how; the fitted ones marked and counted apart. The program is rendered from this document, and whatever
reads it back (the report, `compare`, a rebuild of the program) goes through `load_constants`, which names
the file and the key when something is missing or malformed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from palindrome_lens.atomic import read_json
from palindrome_lens.errors import DataFileError
from palindrome_lens.explanation.readout import n_fitted

if TYPE_CHECKING:  # the report reads constants.json without importing torch
    from palindrome_lens.explanation.tables import LengthTables

FORMAT = "palindrome-lens/explanation-constants/v1"
DIGITS = 7  # significant digits kept (the program and this file hold the same numbers)
RERUN = "; rerun dvc repro explain"


def rounded(values: Any) -> Any:
    """Numbers (or nested arrays of them) rounded to DIGITS significant digits, as plain lists."""
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise DataFileError("a constant of the program is not finite; the model's activations overflowed")
    return np.vectorize(lambda x: float(f"{x:.{DIGITS}g}"), otypes=[float])(array).tolist() if array.size else []


def length_entry(tables: LengthTables, gate: np.ndarray, sides: Mapping[str, np.ndarray]) -> dict[str, Any]:
    heads = [{"name": h.name, "salience": rounded(h.salience), "evidence": rounded(h.evidence),
              "special": {k: rounded(v) for k, v in h.special.items()}} for h in tables.heads]
    context = [{"name": c.name, "salience": rounded(c.salience), "value": rounded(c.value),
                "special": {k: [rounded(s), rounded(v)] for k, (s, v) in c.special.items()}} for c in tables.context]
    return {"heads": heads, "context": context, "gate": rounded(gate),
            "readout": {side: rounded(coefs) for side, coefs in sides.items()}}


def provenance(readout: str, after_layer: int, n_contexts: int, n_fit: int, n_fit_edits: int) -> list[dict[str, str]]:
    """Where each kind of constant comes from, in words."""
    where = "BOS" if readout == "bos" else "EOS"
    return [
        {"constant": "heads[].salience", "how": "read",
         "component": f"the readout head's query at {where} (blocks.L.attn.hook_q, mean over the controlled strings) "
                      "dotted with its key at the position (blocks.L.attn.hook_k), divided by the attention scale",
         "inputs": f"per position, own and mirror character: {n_contexts} random palindromes of the length with "
                   "that pair set to (own, mirror); mean over them"},
        {"constant": "heads[].evidence", "how": "read",
         "component": "the readout head's value at the position through W_O (blocks.L.attn.hook_v), projected on "
                      "the head's evidence direction: the first principal direction of those vectors over every "
                      "table entry, signed so that broken pairs point the positive way",
         "inputs": "the same controlled strings"},
        {"constant": "heads[].special", "how": "read",
         "component": "salience and evidence of [BOS] and [EOS], the same way", "inputs": "every controlled string"},
        {"constant": "context[].salience, context[].value", "how": "read",
         "component": f"layer 0's heads at {where}: query . key / scale, and the value through W_O projected on the "
                      f"principal directions of {where}'s layer-0 attention output; in layer 0 both depend only on "
                      "the token and its position, so they are exact",
         "inputs": "strings of one repeated character (keys, values); uniformly random strings (directions)"},
        {"constant": "gate", "how": "fitted",
         "component": "a logistic gate in the readout heads' evidence, fitted to the model's decisions",
         "inputs": f"{n_fit} train strings" + (f" and every single edit of {n_fit_edits} train palindromes"
                                               if n_fit_edits else "")},
        {"constant": "readout", "how": "fitted",
         "component": "one quadratic in every feature per side, fitted by least squares to the model's logit "
                      "differences on the strings the model puts on that side",
         "inputs": "the same train strings"},
        {"constant": "after_layer", "how": "read",
         "component": f"the supported hypothesis: after layer {after_layer} a character position carries its "
                      "pair's comparison", "inputs": "circuit.json"},
    ]


def counts(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """How many numbers are read from the model and how many are fitted."""
    read = fitted = 0
    for entry in entries.values():
        n_heads = len(entry["heads"])
        n_features = n_heads + (len(entry["context"][0]["value"][0][0]) if entry["context"] else 0)
        fitted += n_fitted(n_heads, n_features)
        for table in (*entry["heads"], *entry["context"]):
            for key in ("salience", "evidence", "value"):
                read += int(np.asarray(table.get(key, [])).size)
            read += sum(int(np.asarray(v[0]).size + np.asarray(v[1]).size) for v in table["special"].values())
    return {"read": read, "fitted": fitted}


# --- reading it back ------------------------------------------------------------------------------------

TOP_KEYS = ("format", "family", "alphabet", "readout", "after_layer", "lengths", "counts", "provenance")
STRING_KEYS = ("format", "family", "alphabet", "readout", "after_layer", "string_level", "counts", "provenance")


def _shape(path: Path, where: str, value: Any, shape: tuple[int, ...]) -> None:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: {where} must be an array of numbers of shape {shape}{RERUN}") from exc
    if array.shape != shape or not np.isfinite(array).all():
        raise DataFileError(f"{path}: {where} has shape {array.shape}, expected finite numbers of shape {shape}{RERUN}")


def read_checked(path: Path, what: str, keys: tuple[str, ...], fmt: str | None) -> dict[str, Any]:
    """A JSON object of the explain stage with `keys` (and format `fmt`), or a DataFileError naming the file."""
    doc = read_json(path, what, RERUN)
    missing = [k for k in keys if k not in doc]
    if missing:
        raise DataFileError(f"{path}: key {missing[0]!r} is missing{RERUN}")
    if fmt is not None and doc.get("format") != fmt:
        raise DataFileError(f"{path}: format {doc.get('format')!r}, expected {fmt!r}{RERUN}")
    return doc


def load_constants(path: str | os.PathLike[str]) -> dict[str, Any]:
    """constants.json, checked: a missing, corrupt or malformed file is a DataFileError naming the file."""
    path = Path(path)
    doc = read_checked(path, "the explanation's constants (constants.json)", ("family",), FORMAT)
    if doc["family"] == "string_level":  # the string-level program's constants (explanation/string_run.py)
        doc = read_checked(path, "the explanation's constants (constants.json)", STRING_KEYS, FORMAT)
        if not isinstance(doc["string_level"], Mapping) or not isinstance(doc["string_level"].get("lengths"), Mapping):
            raise DataFileError(f"{path}: string_level.lengths must be a mapping{RERUN}")
        return doc
    doc = read_checked(path, "the explanation's constants (constants.json)", TOP_KEYS, FORMAT)
    if doc["readout"] not in ("bos", "eos") or not isinstance(doc["lengths"], Mapping) or not doc["lengths"]:
        raise DataFileError(f"{path}: readout must be bos or eos and lengths a non-empty mapping{RERUN}")
    alphabet = doc["alphabet"]
    if not isinstance(alphabet, list) or not alphabet or not all(isinstance(c, int) and 32 < c < 0x110000
                                                                  for c in alphabet):
        raise DataFileError(f"{path}: alphabet must be a list of printable code points{RERUN}")
    n_alpha = len(alphabet)
    for key, entry in doc["lengths"].items():
        if not str(key).isdigit() or not isinstance(entry, Mapping):
            raise DataFileError(f"{path}: lengths.{key} must be a string length mapping to its tables{RERUN}")
        length, at = int(key), f"lengths.{key}"
        for part in ("heads", "context", "gate", "readout"):
            if part not in entry:
                raise DataFileError(f"{path}: key '{at}.{part}' is missing{RERUN}")
        if not entry["heads"]:
            raise DataFileError(f"{path}: {at}.heads is empty{RERUN}")
        dims = None
        for i, head in enumerate(entry["heads"]):
            for name, shape in (("salience", (length, n_alpha, n_alpha)), ("evidence", (length, n_alpha, n_alpha))):
                _shape(path, f"{at}.heads[{i}].{name}", head.get(name), shape)
            for special, pair in head.get("special", {}).items():
                _shape(path, f"{at}.heads[{i}].special.{special}", pair, (2,))
        for i, head in enumerate(entry["context"]):
            value = np.asarray(head.get("value"), dtype=object)
            dims = value.shape[-1] if value.ndim == 3 else -1
            _shape(path, f"{at}.context[{i}].salience", head.get("salience"), (length, n_alpha))
            _shape(path, f"{at}.context[{i}].value", head.get("value"), (length, n_alpha, dims))
        n_features = len(entry["heads"]) + (dims or 0)
        _shape(path, f"{at}.gate", entry["gate"], (len(entry["heads"]) + 1,))
        for side in ("palindrome", "not_palindrome"):
            _shape(path, f"{at}.readout.{side}", entry["readout"].get(side),
                   (1 + n_features + n_features * (n_features + 1) // 2,))
    return doc
