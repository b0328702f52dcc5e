"""The ladder built: every level's constants (read tables, compressed as ladder.py says, and a readout fitted
per level to the model's logits on the fit strings), its program's source, and a numpy function that computes
exactly what that program computes (checked on a sample by the stage)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from palindrome_lens.explanation.constants import counts, rounded
from palindrome_lens.explanation.emulate import Emulator
from palindrome_lens.explanation.ladder import Level, emulation_entry, level_tables, merged_pairs, n_read
from palindrome_lens.explanation.readout import fit_readout, n_fitted, quadratic_terms
from palindrome_lens.explanation.template import full_level, level_filename, render_level

LogitFn = Callable[..., np.ndarray]  # (texts, pair=None, sources=None) -> (n,) logit differences


@dataclass
class BuiltLevel:
    """One rung, ready to score: its constants (what the program holds), source and numpy twin."""

    level: Level
    constants: dict[str, Any]
    source: str
    logit_diff: LogitFn
    seconds: float

    @property
    def name(self) -> str:
        return self.level.name

    @property
    def filename(self) -> str:
        return level_filename(self.level.name)

    @property
    def n_read(self) -> int:
        return int(self.constants.get("n_read", 0))

    @property
    def n_fitted(self) -> int:
        return int(self.constants["n_fitted"])


def exact_logit_diff(means: Sequence[float]) -> LogitFn:
    """The floor's numpy twin: the model's class mean by the exact check (pair k optionally from a source)."""
    def logit_diff(texts: Sequence[str], pair: int | None = None, sources: Sequence[str] | None = None) -> np.ndarray:
        out = np.empty(len(texts))
        for row, text in enumerate(texts):
            seen = [(a, b) for a, b in zip(text, reversed(text))]
            if pair is not None and sources is not None:
                src, right = sources[row], len(text) - 1 - pair
                seen[pair], seen[right] = (src[pair], src[right]), (src[right], src[pair])
            out[row] = means[0] if all(a == b for a, b in seen) else means[1]
        return out

    return logit_diff


def build_exact(level: Level, alphabet: str, baseline: Mapping[bool, float]) -> BuiltLevel:
    start = time.perf_counter()
    means = [float(rounded(baseline[True])), float(rounded(baseline[False]))]
    constants = {"name": level.name, "adds": level.adds, "alphabet": [ord(c) for c in alphabet], "means": means,
                 "n_read": 0, "n_fitted": 2}
    source = render_level(constants, level_filename(level.name))
    return BuiltLevel(level, constants, source, exact_logit_diff(means), time.perf_counter() - start)


def _blank(entry: dict[str, Any], n_features: int) -> dict[str, Any]:
    width = quadratic_terms(np.zeros((1, n_features))).shape[1]
    return {**entry, "gate": np.zeros(len(entry["heads"]) + 1),
            "readout": {"palindrome": np.zeros(width), "not_palindrome": np.zeros(width)}}


def build_compact(level: Level, tables: Mapping[int, Any], header: Mapping[str, Any], fit_texts: Sequence[str],
                  fit_logits: np.ndarray, cache: dict | None = None) -> BuiltLevel:
    """A level below `full`: per length, the compact tables, then its own readout fitted on the fit strings."""
    start = time.perf_counter()
    alphabet = "".join(map(chr, header["alphabet"]))
    lengths = np.array([len(t) for t in fit_texts])
    entries, expanded, fitted = {}, {}, 0
    for n, t in sorted(tables.items()):
        entry = level_tables(level, t, rounded, cache)
        n_context = int(t.context_directions.shape[0]) if entry["context"] else 0
        n_features = len(entry["heads"]) + n_context
        emu = emulation_entry(entry, n, len(alphabet))
        rows = np.flatnonzero(lengths == n)
        features = Emulator({"alphabet": header["alphabet"], "lengths": {str(n): _blank(emu, n_features)}}).features(
            [fit_texts[i] for i in rows]).reshape(len(rows), -1)
        gate, sides = fit_readout(features, len(entry["heads"]), fit_logits[rows])
        entry["gate"], entry["readout"] = rounded(gate), {k: rounded(v) for k, v in sides.items()}
        emu["gate"], emu["readout"] = entry["gate"], entry["readout"]
        entries[str(n)], expanded[str(n)] = entry, emu
        fitted += n_fitted(len(entry["heads"]), n_features)
    first = entries[min(entries, key=int)]
    constants = {"name": level.name, "adds": level.adds, "after_layer": header["after_layer"],
                 "readout": header["readout"], "alphabet": header["alphabet"],
                 "n_read": sum(n_read(e) for e in entries.values()), "n_model": header["n_model"],
                 "n_fitted": fitted, "n_context": int(tables[min(tables)].context_directions.shape[0])
                 if first["context"] else 0, "lengths": entries}
    emulator = Emulator({"alphabet": header["alphabet"], "lengths": expanded})
    source = render_level(constants, level_filename(level.name))
    return BuiltLevel(level, constants, source, emulator.logit_diff, time.perf_counter() - start)


def merged_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """constants.json with each readout head's tables merged per mirrored pair (ladder.merged_pairs), rounded as
    the program holds them; the readout fitted there still applies, since the features are the same."""
    lengths = {}
    for key, entry in doc["lengths"].items():
        heads = []
        for head in entry["heads"]:
            salience, evidence = merged_pairs(np.asarray(head["salience"], dtype=np.float64),
                                              np.asarray(head["evidence"], dtype=np.float64))
            heads.append({**head, "salience": rounded(salience), "evidence": rounded(evidence)})
        lengths[key] = {**entry, "heads": heads}
    return {**doc, "lengths": lengths, "counts": counts(lengths)}


def render_program(doc: Mapping[str, Any]) -> str:
    """The full level's program from a constants document (constants.load_constants checks its shape first)."""
    return render_level(full_level(merged_document(doc)))


def build_full(level: Level, doc: Mapping[str, Any], n_model: int) -> BuiltLevel:
    """The top: every table whole (a readout head's merged per mirrored pair), its readout fitted in constants.json."""
    start = time.perf_counter()
    merged = merged_document(doc)
    constants = {**full_level(merged, n_model), "adds": level.adds}
    source = render_level(constants, level_filename(level.name))
    return BuiltLevel(level, constants, source, Emulator(merged).logit_diff, time.perf_counter() - start)


def build_ladder(levels: Sequence[Level], tables: Mapping[int, Any], doc: Mapping[str, Any], n_model: int,
                 fit_texts: Sequence[str], fit_logits: np.ndarray, baseline: Mapping[bool, float]) -> list[BuiltLevel]:
    """Every level, smallest first. `doc` is constants.json (the full tables with their fitted readout)."""
    header = {"after_layer": doc["after_layer"], "readout": doc["readout"], "alphabet": doc["alphabet"],
              "n_model": n_model}
    out, cache = [], {}  # the context level reuses the combination level's decomposition
    for level in levels:
        if level.pairs == "none":
            out.append(build_exact(level, "".join(map(chr, doc["alphabet"])), baseline))
        elif level.pairs == "full":
            out.append(build_full(level, doc, n_model))
        else:
            out.append(build_compact(level, tables, header, fit_texts, fit_logits, cache))
    return out
