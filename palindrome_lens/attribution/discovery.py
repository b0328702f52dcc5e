"""Discover what the residual stream carries: a search over hypotheses by causal scrubbing.

For each layer boundary (the residual stream after layer l), start from what is surely carried (`all`
at every position group, which recovers exactly 100%) and make one group at a time as coarse as the
scrub allows: the group's candidate features (palindrome_lens/features.py) are tried from fewest bits
up, the others kept at what they reached, and the first one whose scrub is supported (scrub_verdict:
the target share of loss on both scales and of balanced accuracy, each within the target of 100% on
either side, every pair scrubbed alone too, beating a constant predictor, a failing control, and
donors that are not the row's own string) is kept. Character groups go first (they hold the evidence),
then BOS and EOS.

Two more passes look for what single features miss:
- joined features: after the singles, two features kept together (`pair_match+n_mismatches`), each a new
  way of splitting the strings, coarser than what the group then keeps, again from fewest bits up;
- halves: the first half, the centre and the second half, each starting from what every character position
  keeps, are searched apart for coarser features, since the two ends of a pair may carry different things
  after a layer; the split is kept only when a half goes coarser.
The result per boundary is the coarsest supported hypothesis found this way, with every hypothesis
tried (single or joined), its bits, figures and verdict.

Candidates are screened on a class-balanced subset of rows with fewer draws; one that passes the
screen with a band to spare is scrubbed in full (every row, N_DRAWS draws), and only a full pass is
kept. A scrub whose global shares fall below the band runs no pair-alone scrubs: it fails whatever they give. The number of scrubs is bounded by `budget`: each boundary may spend an even share of what is
left (what it does not spend goes to the next), and a boundary whose share ran out says so.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from palindrome_lens import features as F
from palindrome_lens.attribution.nodes import group_positions
from palindrome_lens.attribution.scrubbing import HALVES, N_DRAWS, Hypothesis, Scrubber
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
    kind: str = "single"  # single, or joined (two features kept together)

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "feature": self.feature, "keep": self.keep, "bits": self.bits,
                "screen": self.screen, "full": self.full, "accepted": self.accepted, "kind": self.kind}


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


@dataclass
class _Budget:
    """Scrubs the search may still run; a boundary may spend its share of what is left (`allowance`)."""

    limit: int
    used: int = 0
    stop_at: int = 0
    exhausted: bool = False

    def allow(self, boundaries_left: int) -> None:
        """Let this boundary spend an even share of what is left (what it does not spend rolls over)."""
        self.stop_at = self.used + max(1, (self.limit - self.used) // max(1, boundaries_left))
        self.stop_at = min(self.stop_at, self.limit)

    def take(self) -> bool:
        if self.used >= self.stop_at:
            self.exhausted = True
            return False
        self.used += 1
        return True


@dataclass
class _Search:
    """What one boundary's passes share: the scrubber, the gate and the running result."""

    scrubber: Scrubber
    layer: int
    causal: bool
    lengths: list[int]
    screen_rows: np.ndarray
    target: float
    verdict: Callable[[dict[str, Any]], str]
    budget: _Budget
    keep: dict[str, str]
    best: dict[str, Any]
    path: list[Step]

    def bits(self, group: str, feature: str) -> float:
        return self.scrubber.bits(Hypothesis("f", self.layer, {**self.keep, group: feature}))[group]

    def library(self, group: str) -> tuple[dict[str, float], dict[tuple, str]]:
        """The group's single features with their bits, one per way of splitting the pool, and the fingerprints."""
        bits_of, seen = {}, {}
        for feature in candidates(group, self.causal):
            fingerprint = partition_key(self.scrubber, feature, group, self.lengths)
            if fingerprint not in seen:
                seen[fingerprint] = feature
                bits_of[feature] = self.bits(group, feature)
        return dict(sorted(bits_of.items(), key=lambda kv: (round(kv[1], 6), kv[0]))), seen

    def joins(self, group: str, singles: dict[str, float], seen: dict[tuple, str]) -> dict[str, float]:
        """Two single features kept together, each a new way of splitting the pool, coarser than what the group
        keeps now (a join is never coarser than its parts, so only parts that failed alone are joined)."""
        ceiling = self.bits(group, self.keep[group])
        parts = [f for f in singles if f not in (F.NONE, F.ALL) and singles[f] < ceiling]
        out = {}
        for a, b in itertools.combinations(parts, 2):
            feature = a + F.JOIN + b
            fingerprint = partition_key(self.scrubber, feature, group, self.lengths)
            if fingerprint in seen:
                continue
            seen[fingerprint] = feature
            bits = self.bits(group, feature)
            if bits < ceiling - 1e-9:
                out[feature] = bits
        return out

    def coarsen(self, group: str, bits_of: dict[str, float], kind: str) -> bool:
        """Try the features from fewest bits up; keep the first whose full scrub is supported."""
        for feature in sorted(bits_of, key=lambda f: (round(bits_of[f], 6), f)):
            if not self.budget.take():
                return False
            trial = Hypothesis(f"discovered_l{self.layer}", self.layer, {**self.keep, group: feature})
            lo = self.target - SCREEN_BAND  # below this on a global share, neither a pass nor near one
            screened = self.scrubber.scrub(trial, rows=self.screen_rows, draws=SCREEN_DRAWS, local_from=lo)
            screen_verdict = self.verdict(screened)
            full = None
            if screen_verdict == "supported" or _near(screened, self.target):
                if not self.budget.take():
                    return False
                full = self.scrubber.scrub(trial, draws=N_DRAWS, local_from=lo)
            full_verdict = self.verdict(full) if full is not None else None
            accepted = full_verdict == "supported"
            self.path.append(Step(group, feature, dict(trial.keep), bits_of[feature], scrub_facts(screened, screen_verdict),
                                  scrub_facts(full, full_verdict) if full is not None else None, accepted, kind))
            if accepted:
                self.keep, self.best = dict(trial.keep), full
                return True
        return False

    def group(self, group: str, library: dict[str, dict[str, float]]) -> None:
        """Singles first, then joined features coarser than what the group then keeps."""
        singles, seen = self.library(group)
        library[group] = singles
        current = self.keep[group]
        if current != F.ALL:  # a half starts from what the characters keep: only coarser features are tried
            ceiling = self.bits(group, current)
            singles = {f: b for f, b in singles.items() if b < ceiling - 1e-9}
        self.coarsen(group, singles, "single")
        if self.budget.exhausted:
            return
        joined = self.joins(group, singles, seen)
        if joined:
            library[group] = {**singles, **joined}
            self.coarsen(group, joined, "joined")


def discover(scrubber: Scrubber, groups: Sequence[str], causal: bool, target: float, budget: int, seed: int,
             verdict: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """The search at every layer boundary; `verdict(result)` is the gate (summary.scrub_verdict)."""
    screen_rows = screening_rows(scrubber.label, seed)
    lengths = sorted(set(scrubber.examples["length"].tolist()))
    present = _present(groups, lengths, scrubber.has_eos)
    order = [g for g in present if g in CHARACTER_GROUPS] + [g for g in present if g not in CHARACTER_GROUPS]
    spend = _Budget(budget)
    boundaries = []
    n_layers = scrubber.model.cfg.n_layers
    for layer in range(n_layers):
        spend.allow(n_layers - layer)
        spend.exhausted = False
        sanity = scrubber.scrub(Hypothesis("all", layer, {g: F.ALL for g in present}), local=False)
        search = _Search(scrubber, layer, causal, lengths, screen_rows, target, verdict, spend,
                         {g: F.ALL for g in present}, sanity, [])
        library: dict[str, dict[str, float]] = {}  # per group, every candidate tried or not, with its bits
        for group in order:
            if spend.exhausted:
                break
            search.group(group, library)
        split, whole = _halves(lengths, scrubber.has_eos), search.keep.get("chars", F.NONE)
        if whole != F.NONE and split and not spend.exhausted:
            # the two ends of a pair may carry different things: each half starts from what every character
            # position keeps and may go coarser on its own
            search.keep = {**{g: f for g, f in search.keep.items() if g != "chars"}, **{g: whole for g in split}}
            for group in split:
                if spend.exhausted:
                    break
                search.group(group, library)
            if all(search.keep[g] == whole for g in split):  # no half is coarser: keep the unsplit statement
                search.keep = {**{g: f for g, f in search.keep.items() if g not in split}, "chars": whole}
        keep = dict(search.keep)
        best = {**search.best, "name": f"discovered_after_layer_{layer}", "verdict": verdict(search.best)}
        boundaries.append({
            "name": best["name"], "after_layer": layer, "keep": keep, "verdict": best["verdict"], "bits": best["bits"],
            "position_bits": scrubber.position_bits(Hypothesis("kept", layer, keep)),
            "library": library,
            "coarser_than_all": {g: f != F.ALL for g, f in keep.items()},
            "sanity_all_recovered": sanity["recovered"], "budget_exhausted": spend.exhausted,
            "result": best, "path": [step.as_dict() for step in search.path],
        })
    return {"budget": budget, "evaluated": spend.used, "screen_rows": int(len(screen_rows)),
            "screen_draws": SCREEN_DRAWS, "draws": N_DRAWS, "groups": order, "boundaries": boundaries}


def _present(groups: Sequence[str], lengths: Sequence[int], has_eos: bool) -> list[str]:
    return [g for g in groups if any(group_positions(n, g, has_eos) for n in lengths)]


def _halves(lengths: Sequence[int], has_eos: bool) -> list[str]:
    """The groups the character positions split into (first half, centre, second half) where strings have them."""
    return _present(HALVES, lengths, has_eos)


def _near(result: dict[str, Any], target: float) -> bool:
    """Within SCREEN_BAND of the loss and accuracy gates on the screen (so noise cannot hide a pass)."""
    lo = target - SCREEN_BAND
    values = [result.get("recovered"), result.get("recovered_constant"), result.get("accuracy_recovered"),
              (result.get("local") or {}).get("recovered")]
    return all(v is None or v >= lo for v in values)
