"""Which program template fits the mechanism the attribute stage found: the hypothesis family.

The family comes from circuit.json: the hypothesis search's result (`discovered`, issue 15) when present,
else the hand-written scrubbing hypotheses (`scrubbing`). A supported hypothesis whose character positions
keep a pair-local feature (`pair_match`, `pair_diff`, `pair_chars`, or their `visible_` forms for causal
models) is the pair-comparison algorithm: each character compares itself with its mirror and the readout
reads the comparisons. A string-level feature (`label`, `n_mismatches`, `mismatch_set`) is the string-level
family: the answer is computed at every position at once (its template: string_level.py). Other supported
features name a family that has no template yet (said in the report, not an error); with nothing supported there
is no family. Where several are supported, pair comparison is preferred; within a family, the first boundary where the
attribute stage's read test finds the family's variable written (the pair flags, or the label) goes first, so a
model that moves the mirror in layer 0 and compares in layer 1 gets the program after layer 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from palindrome_lens.features import JOIN

PAIR_COMPARISON = "pair_comparison"
PAIR_LOCAL = ("pair_match", "pair_diff", "pair_chars")
STRING_LEVEL = ("mismatch_set", "n_mismatches", "label")
CHAR_GROUPS = ("chars", "first_half", "centre", "second_half")
STRING_LEVEL_FAMILY = "string_level"
TEMPLATES = (PAIR_COMPARISON, STRING_LEVEL_FAMILY)  # in order of preference when several are supported
SUPPORTED = "supported"


@dataclass(frozen=True)
class FamilyChoice:
    """The family (None: no supported hypothesis), where it was read and what it rests on."""

    name: str | None
    source: str  # "discovered", "scrubbing" or "none"
    hypothesis: str | None = None
    after_layer: int | None = None
    keep: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    verdict: str | None = None  # the hypothesis' own verdict
    forced: bool = False  # compiled on request (explain.family) although no supported hypothesis names it

    @property
    def has_template(self) -> bool:
        return self.name in TEMPLATES


def base_feature(feature: str) -> str:
    """`visible_pair_match` -> `pair_match`: what a causal position can see is the same kind of feature."""
    return feature.removeprefix("visible_")


def feature_family(keep: Mapping[str, str]) -> str | None:
    """The family a `keep` mapping (position group -> feature) states at the character positions; a joined
    feature (`label+pair_chars`) counts by each of its parts, so a position that keeps its pair's characters
    among other things is read as holding what a later layer compares."""
    kept = [base_feature(part) for g, f in keep.items() if g in CHAR_GROUPS for part in str(f).split(JOIN)]
    if any(f in PAIR_LOCAL for f in kept):
        return PAIR_COMPARISON
    if any(f in STRING_LEVEL for f in kept):
        return STRING_LEVEL_FAMILY
    if "char" in kept:
        return "characters"
    return None


def is_read(row: Mapping[str, Any], name: str | None) -> bool:
    """Whether the attribute stage's read test (attribution/readable.py) found the family's variable written at this
    boundary: the pair flags for pair comparison, the label for the string-level family."""
    kind = {PAIR_COMPARISON: "flag", STRING_LEVEL_FAMILY: "label"}.get(str(name))
    verdicts = (row.get("read") or {}).get("verdicts") or {}
    return kind is not None and verdicts.get(kind) == "read"


def _candidates(circuit: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    discovered = circuit.get("discovered")
    if isinstance(discovered, Mapping) and isinstance(discovered.get("boundaries"), list):
        rows = [dict(b, name=b.get("name", f"discovered after layer {b.get('after_layer')}"))
                for b in discovered["boundaries"] if isinstance(b, Mapping)]
        return "discovered", rows
    scrubbing = circuit.get("scrubbing")
    return "scrubbing", [dict(r) for r in scrubbing if isinstance(r, Mapping)] if isinstance(scrubbing, list) else []


def choose_family(circuit: Mapping[str, Any], wanted: str = "auto") -> FamilyChoice:
    """The first supported hypothesis with a template, else the first supported one, else none. With `wanted` a
    template's name, that template whatever the verdicts: on the first hypothesis of its family (supported
    first), or after layer 0 when none names it."""
    source, rows = _candidates(circuit)
    supported = [r for r in rows if r.get("verdict") == SUPPORTED and isinstance(r.get("keep"), Mapping)]
    named = [(feature_family(r["keep"]), r) for r in supported]
    # within a family, the first boundary where its variable is written where the later layers read it goes first
    preferred = [(n, r) for t in TEMPLATES for n, r in sorted(named, key=lambda nr: not is_read(nr[1], nr[0])) if n == t]
    for name, row in [*preferred, *[(n, r) for n, r in named if n]]:
        if wanted in ("auto", name):
            return FamilyChoice(name, source, str(row.get("name")), int(row["after_layer"]), dict(row["keep"]),
                                "" if name in TEMPLATES else f"no program template for the {name} family yet",
                                SUPPORTED)
    if wanted in TEMPLATES:
        family_rows = [r for r in rows if isinstance(r.get("keep"), Mapping) and feature_family(r["keep"]) == wanted]
        row = family_rows[0] if family_rows else {"after_layer": 0, "keep": {}}
        return FamilyChoice(wanted, source, row.get("name"), int(row["after_layer"]), dict(row["keep"]),
                            verdict=row.get("verdict"), forced=True)
    if supported:
        return FamilyChoice(None, source, reason=f"the supported {source} hypotheses keep no feature at the "
                                                 "character positions that a template reads")
    return FamilyChoice(None, "none" if not rows else source,
                        reason=f"no {source} hypothesis is supported, so there is no algorithm to compile")


def family(circuit: Mapping[str, Any]) -> str | None:
    """The hypothesis family of a circuit.json (`pair_comparison`, another family's name, or None)."""
    return choose_family(circuit).name
