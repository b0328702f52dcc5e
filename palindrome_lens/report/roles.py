"""What each circuit node does, each role gated by a number that could have come out against it. The graph
writes the role under the node and the index's algorithm steps (algorithm.py) say it in a sentence; a node
whose numbers pass no gate gets no role.

- mirror head: a head whose mirror score is at least MIRROR (uniform attention scores about 1/(L+2));
- reader: a head whose attention from the readout puts at least READS_MISMATCHES times more on a character
  whose mirrored pair is broken than on one whose pair matches (readout_by_position.parquet);
- mismatch flag: an MLP at the characters fed by a mirror head (an edge above the floor) whose layer's output
  is what a *supported* scrubbing hypothesis says carries only whether each pair matches;
- writes the answer: a node with an edge into the logits above the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from palindrome_lens.attribution.edges import LOGITS
from palindrome_lens.report.inputs import Attribution

MIRROR = 0.5
READS_MISMATCHES = 2.0
CHAR_GROUPS = ("chars", "first_half", "centre", "second_half")
PAIR_MATCH = "pair_match"


@dataclass(frozen=True)
class Reading:
    """Mean attention from the readout on a character whose pair is broken / matches, over every length."""

    head: str
    mismatched: float
    matched: float

    @property
    def ratio(self) -> float:
        if self.matched > 0:
            return self.mismatched / self.matched
        return math.inf if self.mismatched > 0 else math.nan


def circuit_nodes(circuit: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in circuit["nodes"] if n["role"] == "circuit"]


def readings(by_position: pd.DataFrame) -> dict[str, Reading]:
    """Per head, the n-weighted mean attention from the readout on broken and on matching characters."""
    out = {}
    for head, rows in by_position[by_position["n"] > 0].groupby("component", sort=True):
        means = {status: float((g["attention"] * g["n"]).sum() / g["n"].sum()) for status, g in rows.groupby("status")}
        out[str(head)] = Reading(str(head), means.get("mismatched", math.nan), means.get("matched", math.nan))
    return out


def mirror_heads(attribution: Attribution) -> dict[str, float]:
    """Heads with a circuit node at the characters and a mirror score of at least MIRROR."""
    scores = attribution.summary.get("mirror_scores") or {}
    at_chars = {n["component"] for n in circuit_nodes(attribution.circuit) if n["positions"] in CHAR_GROUPS}
    return {h: float(s) for h, s in sorted(scores.items()) if h in at_chars and s is not None and s >= MIRROR}


def readers(attribution: Attribution) -> dict[str, Reading]:
    """Heads with a circuit node at the readout whose reading ratio is at least READS_MISMATCHES."""
    readout = str(attribution.summary["model"].get("readout", "bos"))
    at_readout = {n["component"] for n in circuit_nodes(attribution.circuit) if n["positions"] == readout}
    return {h: r for h, r in readings(attribution["readout_by_position"]).items()
            if h in at_readout and r.ratio >= READS_MISMATCHES}


def flag_hypotheses(circuit: dict[str, Any]) -> list[dict[str, Any]]:
    """Supported scrubbing hypotheses that keep only whether each pair matches at some character group."""
    return [r for r in circuit["scrubbing"] if r["verdict"] == "supported"
            and any(g in CHAR_GROUPS and f == PAIR_MATCH for g, f in r["keep"].items())]


def flags(attribution: Attribution) -> dict[str, dict[str, Any]]:
    """MLP nodes that write the mismatch flag, each with the supported hypothesis behind it."""
    circuit = attribution.circuit
    mirrors = set(mirror_heads(attribution))
    out = {}
    for nd in circuit_nodes(circuit):
        if nd["component"].startswith("L") or nd["positions"] not in CHAR_GROUPS:
            continue
        fed = any(e["to"] == nd["name"] and e["from"].split("@")[0] in mirrors for e in circuit["edges"])
        backing = [r for r in flag_hypotheses(circuit) if int(r["after_layer"]) == int(nd["layer"])]
        if fed and backing:
            out[nd["name"]] = backing[0]
    return out


def writers(circuit: dict[str, Any]) -> dict[str, float]:
    """Nodes with an edge into the logits at or above the floor, and its effect, the largest first."""
    found = [(e["from"], float(e["effect"])) for e in circuit["edges"] if e["to"] == LOGITS]
    return dict(sorted(found, key=lambda item: -item[1]))


def node_roles(attribution: Attribution) -> dict[str, str]:
    """A short role per drawn node ('' when no gate passes), as the graph writes it under the node."""
    circuit = attribution.circuit
    readout = str(attribution.summary["model"].get("readout", "bos")).upper()
    mirrors, reads, flagged, writes = (mirror_heads(attribution), readers(attribution), flags(attribution),
                                       writers(circuit))
    roles: dict[str, list[str]] = {}
    for nd in circuit_nodes(circuit):
        name, component = nd["name"], nd["component"]
        mine = roles.setdefault(name, [])
        if component in mirrors and nd["positions"] in CHAR_GROUPS:
            mine.append(f"mirror head ({mirrors[component]:.2f})")
        if name in flagged:
            mine.append("mismatch flag")
        if component in reads and nd["positions"] == readout.lower():
            mine.append(f"reader at {readout} ({ratio_text(reads[component].ratio)})")
        if name in writes:
            mine.append(f"writes the answer ({writes[name]:.2f})")
    for nd in circuit["nodes"]:
        if nd["role"] == "input":
            roles[nd["name"]] = ["the characters" if nd["positions"] in CHAR_GROUPS else f"the {nd['positions']} token"]
    roles[LOGITS] = ["the answer"]
    return {name: "; ".join(parts) for name, parts in roles.items()}


def ratio_text(ratio: float) -> str:
    """77.4 -> '77×'; 2.34 -> '2.3×'; inf -> 'only broken pairs'."""
    if math.isinf(ratio):
        return "only on broken pairs"
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"
