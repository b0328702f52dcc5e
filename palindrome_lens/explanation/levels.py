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
from palindrome_lens.explanation.layer_zero import ZeroEmulator, ZeroReading, reading_read, rounded_reading
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


def zero_constants(r: ZeroReading) -> dict[str, Any]:
    """The layer_zero level's globals (template.layer0_globals), from a rounded reading."""
    t = r.spread

    def ln(w: Any) -> dict[str, Any] | None:
        return None if w is None else {"weight": w[0].tolist(), "bias": w[1].tolist(), "eps": w[2]}

    return {"act_fn": t.act_fn, "causal": t.causal, "char_embed": t.char_embed.tolist(), "ln1": ln(t.ln1),
            "heads": {k: getattr(t, k).tolist() for k in ("w_q", "b_q", "w_k", "b_k", "w_v", "b_v", "w_o")},
            "b_o": t.b_o.tolist(), "ln2": ln(t.ln2), "w_in": t.w_in.T.tolist(), "b_in": t.b_in.tolist(),
            "w_out": t.w_out.T.tolist(), "b_out": t.b_out.tolist(), "ln_read": ln(r.ln_read)}


def build_layer_zero(level: Level, tables: Mapping[int, Any], readings: Mapping[int, ZeroReading],
                     header: Mapping[str, Any], fit_texts: Sequence[str], fit_logits: np.ndarray,
                     cache: dict | None = None) -> BuiltLevel:
    """The layer_zero level: layer 1's readout heads from each position's own layer-0 output (layer_zero.py), the
    other readout heads and the context as `level`'s tables, then its own readout fitted on the fit strings."""
    start = time.perf_counter()
    alphabet = "".join(map(chr, header["alphabet"]))
    lengths = np.array([len(t) for t in fit_texts])
    entries, expanded, order, specials, rounded_readings, fitted = {}, {}, {}, {}, {}, 0
    for n, t in sorted(tables.items()):
        reading = rounded_readings[n] = rounded_reading(readings[n])
        zero = {h.name: h for h in reading.heads}
        entry = level_tables(level, t, rounded, cache)
        heads = []
        for h in entry["heads"]:
            z = zero.get(h["name"])
            heads.append(h if z is None else {"name": h["name"], "before": h["before"], "after": h["after"],
                                              "key": z.key.tolist(), "key_bias": z.key_bias,
                                              "value": z.value.tolist(), "value_bias": z.value_bias})
        table_heads = [h for h in heads if "key" not in h]
        spread = reading.spread
        entry = {"heads": heads, "context": entry["context"], "cp": entry["cp"] if table_heads else {},
                 "layer0": {"pos_embed": spread.pos_embed.tolist(), "bos_key": spread.special_key["bos"].tolist(),
                            "bos_value": spread.special_value["bos"].tolist(),
                            "eos_key": spread.special_key["eos"].tolist() if "eos" in spread.special_key else [],
                            "eos_value": spread.special_value["eos"].tolist() if "eos" in spread.special_value else []}}
        order[n] = [h["name"] for h in heads]
        specials[n] = {h["name"]: (h["before"], h["after"]) for h in heads if "key" in h}
        expanded[str(n)] = emulation_entry({**entry, "heads": table_heads}, n, len(alphabet))
        n_context = int(t.context_directions.shape[0]) if entry["context"] else 0
        rows = np.flatnonzero(lengths == n)
        blank = ZeroEmulator({"alphabet": header["alphabet"], "lengths": {str(n): _blank(expanded[str(n)],
                                                                                         len(heads) + n_context)}},
                             {n: reading}, {n: order[n]}, {n: specials[n]})
        features = blank.features([fit_texts[i] for i in rows]).reshape(len(rows), -1)
        gate, sides = fit_readout(features, len(heads), fit_logits[rows])
        entry["gate"], entry["readout"] = rounded(gate), {k: rounded(v) for k, v in sides.items()}
        expanded[str(n)]["gate"], expanded[str(n)]["readout"] = entry["gate"], entry["readout"]
        entries[str(n)] = entry
        fitted += n_fitted(len(heads), len(heads) + n_context)
    first = min(tables)
    read = sum(n_read({**e, "heads": [h for h in e["heads"] if "key" not in h]}) for e in entries.values())
    read += sum(reading_read(r, with_shared=(n == first)) + sum(
        sum(np.asarray(m).size for pair in (*h["before"], *h["after"]) for m in pair)
        for h in entries[str(n)]["heads"] if "key" in h) for n, r in rounded_readings.items())
    constants = {"name": level.name, "adds": level.adds, "after_layer": header["after_layer"],
                 "readout": header["readout"], "alphabet": header["alphabet"], "n_read": read,
                 "n_model": header["n_model"], "n_fitted": fitted,
                 "n_context": int(tables[first].context_directions.shape[0]) if entries[str(first)]["context"] else 0,
                 "layer0": zero_constants(rounded_readings[first]), "lengths": entries}
    emulator = ZeroEmulator({"alphabet": header["alphabet"], "lengths": expanded}, rounded_readings, order, specials)
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
                 fit_texts: Sequence[str], fit_logits: np.ndarray, baseline: Mapping[bool, float],
                 readings: Mapping[int, ZeroReading] | None = None) -> list[BuiltLevel]:
    """Every level, smallest first (by numbers held: layer_zero holds layer 0's weights, which can outweigh the full
    tables of a small alphabet). `doc` is constants.json (the full tables with their fitted readout);
    `readings` (layer_zero.read_zero per length) for the layer_zero level."""
    header = {"after_layer": doc["after_layer"], "readout": doc["readout"], "alphabet": doc["alphabet"],
              "n_model": n_model}
    out, cache = [], {}  # the context level reuses the combination level's decomposition
    for level in levels:
        if level.pairs == "none":
            out.append(build_exact(level, "".join(map(chr, doc["alphabet"])), baseline))
        elif level.pairs == "full":
            out.append(build_full(level, doc, n_model))
        elif level.layer_zero:
            if readings is None:
                raise ValueError("the layer_zero level needs layer 0's readings")
            out.append(build_layer_zero(level, tables, readings, header, fit_texts, fit_logits, cache))
        else:
            out.append(build_compact(level, tables, header, fit_texts, fit_logits, cache))
    return sorted(out, key=lambda b: b.n_read + b.n_fitted)  # smallest first, whatever the model's shape
