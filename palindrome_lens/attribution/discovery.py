"""Discover what the residual stream carries: a search over hypotheses by causal scrubbing.

For each layer boundary (the residual stream after layer l), start from what is surely carried (`all`
at every position group, which recovers exactly 100%) and make one group at a time as coarse as the
scrub allows: the group's candidate features (palindrome_lens/features.py) are tried from fewest bits
up, the others kept at what they reached, and the first one whose scrub is supported (scrub_verdict:
the target share of loss on both scales and of balanced accuracy, each within the target of 100% on
either side, every pair scrubbed alone too, beating a constant predictor, a failing control, and
donors that are not the row's own string) is kept. Character groups go first (they hold the evidence),
then BOS and EOS. The result per boundary is the coarsest supported hypothesis found this way, with
every hypothesis tried, its bits, figures and verdict.

Candidates are screened on a class-balanced subset of rows with fewer draws; one that passes the
screen with a band to spare is scrubbed in full (every row, N_DRAWS draws), and only a full pass is
kept. The number of scrubs is bounded by `budget`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from palindrome_lens import features as F
from palindrome_lens.attribution.nodes import group_positions
from palindrome_lens.attribution.scrubbing import N_DRAWS, Hypothesis, Scrubber
from palindrome_lens.attribution.summary import scrub_facts

SCREEN_ROWS = 384  # class-balanced rows a candidate is screened on
SCREEN_DRAWS = 2
SCREEN_BAND = 0.05  # a screen within this of every gate earns a full scrub
CHARACTER_GROUPS = ("chars", "first_half", "centre", "second_half")
_STREAM = 8


@dataclass(frozen=True)
class Step:
    """One hypothesis the search scrubbed."""

    group: str
    feature: str
    keep: dict[str, str]
    bits: float
    screen: dict[str, Any]
    full: dict[str, Any] | None
    accepted: bool

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "feature": self.feature, "keep": self.keep, "bits": self.bits,
                "screen": self.screen, "full": self.full, "accepted": self.accepted}


def candidates(group: str, causal: bool) -> list[str]:
    """Features the search may keep at `group`: string-level ones everywhere, position-local ones at
    character positions; a causal model's restricted to what the position can see."""
    names = [*F.GLOBAL, *(F.LOCAL if group in CHARACTER_GROUPS else ())]
    if causal:
        names = [n if n == "char" else F.VISIBLE + n for n in names]
    return [F.NONE, *names]


def screening_rows(label: np.ndarray, seed: int, n: int = SCREEN_ROWS) -> np.ndarray:
    """Up to n rows, half palindromes, drawn with the seed (sorted)."""
    rng = np.random.default_rng([seed, _STREAM])
    picks = []
    for value in (True, False):
        pool = np.flatnonzero(label == value)
        picks.append(rng.choice(pool, size=min(n // 2, len(pool)), replace=False))
    return np.sort(np.concatenate(picks))


def partition_key(scrubber: Scrubber, feature: str, group: str, lengths: Sequence[int]) -> tuple:
    """A fingerprint of how `feature` splits the pool at the group's positions (two features with the
    same fingerprint scrub alike there, so only the first is tried)."""
    key = []
    for length in lengths:
        for pos in group_positions(length, group, scrubber.has_eos):
            code = scrubber.codes(feature, length, pos)
            _, first = np.unique(code, return_index=True)
            key.append(tuple(np.sort(first).tolist()))  # the first member of each block: the partition, up to naming
    return tuple(key)


def discover(scrubber: Scrubber, groups: Sequence[str], causal: bool, target: float, budget: int, seed: int,
             verdict: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """The search at every layer boundary; `verdict(result)` is the gate (summary.scrub_verdict)."""
    label = scrubber.label
    screen_rows = screening_rows(label, seed)
    lengths = sorted(set(scrubber.examples["length"].tolist()))
    present = [g for g in groups if any(group_positions(n, g, scrubber.has_eos) for n in lengths)]
    order = [g for g in present if g in CHARACTER_GROUPS] + [g for g in present if g not in CHARACTER_GROUPS]
    used = 0
    boundaries = []
    for layer in range(scrubber.model.cfg.n_layers):
        keep = {g: F.ALL for g in present}
        sanity = scrubber.scrub(Hypothesis("all", layer, keep), local=False)
        best = sanity
        path: list[Step] = []
        exhausted = False
        library: dict[str, dict[str, float]] = {}  # per group, every candidate tried or not, with its bits
        for group in order:
            bits_of = {}
            seen: dict[tuple, str] = {}
            for feature in candidates(group, causal):
                fingerprint = partition_key(scrubber, feature, group, lengths)
                if fingerprint in seen:
                    continue
                seen[fingerprint] = feature
                bits_of[feature] = scrubber.bits(Hypothesis("f", layer, {group: feature}))[group]
            library[group] = dict(sorted(bits_of.items(), key=lambda kv: (round(kv[1], 6), kv[0])))
            for feature in sorted(bits_of, key=lambda f: (round(bits_of[f], 6), f)):
                if used >= budget:
                    exhausted = True
                    break
                trial = Hypothesis(f"discovered_l{layer}", layer, {**keep, group: feature})
                screened = scrubber.scrub(trial, rows=screen_rows, draws=SCREEN_DRAWS)
                used += 1
                screen_verdict = verdict(screened)
                full = None
                if screen_verdict == "supported" or _near(screened, target):
                    if used >= budget:
                        exhausted = True
                        break
                    full = scrubber.scrub(trial, draws=N_DRAWS)
                    used += 1
                full_verdict = verdict(full) if full is not None else None
                accepted = full_verdict == "supported"
                path.append(Step(group, feature, dict(trial.keep), bits_of[feature], scrub_facts(screened, screen_verdict),
                                 scrub_facts(full, full_verdict) if full is not None else None, accepted))
                if accepted:
                    keep = dict(trial.keep)
                    best = full
                    break
            if exhausted:
                break
        best = {**best, "name": f"discovered_after_layer_{layer}", "verdict": verdict(best)}
        boundaries.append({
            "name": best["name"], "after_layer": layer, "keep": keep, "verdict": best["verdict"], "bits": best["bits"],
            "position_bits": scrubber.position_bits(Hypothesis("kept", layer, keep)),
            "library": library,
            "coarser_than_all": {g: keep[g] != F.ALL for g in present},
            "sanity_all_recovered": sanity["recovered"], "budget_exhausted": exhausted,
            "result": best, "path": [step.as_dict() for step in path],
        })
    return {"budget": budget, "evaluated": used, "screen_rows": int(len(screen_rows)), "screen_draws": SCREEN_DRAWS,
            "draws": N_DRAWS, "groups": order, "boundaries": boundaries}


def _near(result: dict[str, Any], target: float) -> bool:
    """Within SCREEN_BAND of the loss and accuracy gates on the screen (so noise cannot hide a pass)."""
    lo = target - SCREEN_BAND
    values = [result.get("recovered"), result.get("recovered_constant"), result.get("accuracy_recovered"),
              (result.get("local") or {}).get("recovered")]
    return all(v is None or v >= lo for v in values)
