"""`attribute` (read by attribute): analysis sizes, the ablation, the circuit search and its gates, and the
hypotheses tested by causal scrubbing (data, so another one needs no new code)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from palindrome_lens import features
from palindrome_lens.params.rules import Section, choice, fail, integer, number, require_keys, rule

ABLATIONS = ("resample", "mean")  # zero ablation is only ever a contrast
NODE_POSITIONS = ("chars", "halves")
SCRUB_GROUPS = ("bos", "chars", "first_half", "centre", "second_half", "eos")
HALVES = ("first_half", "centre", "second_half")
HYPOTHESIS_KEYS = ("name", "claim", "after_layer", "keep")


def hypotheses_rule(key: str, value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise fail(key, value, "it must be a list of hypotheses, each with keys " + ", ".join(HYPOTHESIS_KEYS))
    seen = set()
    out = []
    for i, raw in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(raw, Mapping):
            raise fail(where, raw, "it must be a mapping with keys " + ", ".join(HYPOTHESIS_KEYS))
        keys = ", ".join(HYPOTHESIS_KEYS)
        require_keys(where, raw, HYPOTHESIS_KEYS, f"unknown key; a hypothesis has {keys}",
                     f"is missing; a hypothesis has {keys}")
        name = raw["name"]
        if not isinstance(name, str) or not name.isidentifier():
            raise fail(f"{where}.name", name, "it must be a name of letters, digits and underscores")
        if name in seen:
            raise fail(f"{where}.name", name, "names must not repeat")
        seen.add(name)
        if not isinstance(raw["claim"], str):
            raise fail(f"{where}.claim", raw["claim"], "it must be a sentence (a string)")
        after_layer = integer(lo=0, hi=47)(f"{where}.after_layer", raw["after_layer"])
        keep = raw["keep"]
        if not isinstance(keep, Mapping) or not keep:
            raise fail(f"{where}.keep", keep, f"it must map position groups ({', '.join(SCRUB_GROUPS)}) to features "
                       f"({', '.join(features.NAMES)}, or several joined by '+')")
        for group, feature in keep.items():
            if group not in SCRUB_GROUPS:
                raise fail(f"{where}.keep.{group}", feature, f"{group!r} is not a position group; groups are "
                           f"{', '.join(SCRUB_GROUPS)}")
            why = features.problem(feature, group)
            if why:
                raise fail(f"{where}.keep.{group}", feature, why)
        if "chars" in keep and any(g in keep for g in HALVES):
            raise fail(f"{where}.keep", dict(keep), "give chars or its parts (first_half, centre, second_half), not both")
        out.append({"name": name, "claim": raw["claim"], "after_layer": after_layer, "keep": dict(keep)})
    return tuple(out)


@dataclass(frozen=True)
class AttributeParams(Section):
    name = "attribute"
    n_adversarial: int = rule(integer(lo=1))  # test palindromes whose every single-character edit is scored
    batch_size: int = rule(integer(lo=1, hi=1 << 20))
    ablation: str = rule(choice(ABLATIONS))  # how nodes outside a circuit are removed
    node_positions: str = rule(choice(NODE_POSITIONS))  # how a component's positions split into nodes
    faithfulness_target: float = rule(number(lo=0.0, hi=1.0, lo_open=True))
    minimality_floor: float = rule(number(lo=0.0, hi=1.0))
    edge_floor: float = rule(number(lo=0.0, hi=1.0))
    search_budget: int = rule(integer(lo=1, hi=1_000_000))  # node sets tried exhaustively before greedy search
    discovery_budget: int = rule(integer(lo=1, hi=100_000))  # scrubs the hypothesis search may run, all layers together
    hypotheses: tuple[dict[str, Any], ...] = rule(hypotheses_rule)
