"""Circuit selection and its IOI-style evaluation (Wang et al. 2022), with resample ablation.

F(C) is the class-balanced margin (see ablation.py) with every candidate node outside C ablated; the
embeddings are the input and stay. F(M) is the model's own value.

- faithfulness = F(C) / F(M)
- completeness = max over the K tried of |F(C \\ K) - F(M \\ K)| / F(M); the K tried are each single
  node of C, each layer's nodes of C, and the sets of a greedy search that grows K one node at a time
  by the largest gap (IOI's greedy completeness attack). 0 = complete.
- minimality of v in C = max over K of |F(C \\ (K + v)) - F(C \\ K)| / F(M), K ranging over every subset
  of C without v when C has at most MINIMALITY_EXHAUSTIVE + 1 nodes, else over every subset of at most
  MINIMALITY_K_SIZE nodes (the sets are shared between nodes, so this stays a few hundred forward passes).
- the circuit is the smallest set of nodes whose faithfulness reaches the target: every set of size
  0, 1, 2, ... is tried (exhaustive) while the number of sets fits the budget; past it a greedy
  search adds the node that raises F most, then drops every node it can do without. The result says
  which search ran. Sets are screened on a class-balanced subsample of SEARCH_ROWS analysis strings
  (one forward pass per set is the whole cost); every set within SCREEN_BAND of the target there is
  scored again on every string, and only that score decides. A circuit too large for the exhaustive forms
  ranks its completeness K (greedy), the nodes that take over and its minimality sets on RANK_ROWS strings and
  scores the best on every one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.attribution.ablation import Ablator
from palindrome_lens.attribution.common import balanced_accuracy, balanced_mean
from palindrome_lens.attribution.nodes import Node

MINIMALITY_EXHAUSTIVE = 8  # subsets of C \ {v} tried exhaustively up to 2**8 of them
MINIMALITY_K_SIZE = 2  # past that, every K of at most this many nodes
SCREEN_ABOVE = 64  # sets K per node past which minimality ranks them on the screen rows
GREEDY_SCREEN_ABOVE = 8  # circuit nodes past which completeness grows its greedy K on the screen rows
RESCORED = 2  # the best-ranked sets K scored again on every row (8 gave the same 14 values on the 3x4 model)
SEARCH_ROWS = 256  # strings (half palindromes) each candidate set is screened on
RANK_ROWS = 128  # the rows a large circuit's completeness K and minimality sets are ranked on (the best rescored on all)
SCREEN_BAND = 0.1  # sets screened within this of the target are scored on every string
_STREAM = 9


@dataclass
class CircuitScorer:
    """F(kept) for sets of kept candidate nodes, memoised (each set is one batched forward row-block)."""

    ablator: Ablator
    candidates: list[Node]
    label: np.ndarray
    rows: np.ndarray | None = None
    memo: dict[frozenset[Node], tuple[float, float]] = field(default_factory=dict)

    def _label(self) -> np.ndarray:
        return self.label if self.rows is None else self.label[self.rows]

    def evaluate(self, kept_sets: Iterable[Iterable[Node]]) -> list[tuple[float, float]]:
        """(balanced margin, balanced accuracy) of each kept set."""
        kept_sets = [frozenset(s) for s in kept_sets]
        todo = list(dict.fromkeys(s for s in kept_sets if s not in self.memo))
        if todo:
            ablated = [[nd for nd in self.candidates if nd not in s] for s in todo]
            self.remember(todo, self.ablator.logit_diffs(ablated, rows=self.rows))
        return [self.memo[s] for s in kept_sets]

    def remember(self, kept_sets: Iterable[Iterable[Node]], diffs: np.ndarray) -> None:
        """Take F of these kept sets from logit differences already run elsewhere (same ablator, same rows)."""
        label = self._label()
        for s, d in zip(kept_sets, diffs):
            m = np.where(label, d, -d)
            self.memo[frozenset(s)] = (float(balanced_mean(m, label)), float(balanced_accuracy(m, label)))

    def f(self, kept_sets: Iterable[Iterable[Node]]) -> np.ndarray:
        return np.array([m for m, _ in self.evaluate(kept_sets)])

    @property
    def n_evaluated(self) -> int:
        return len(self.memo)


@dataclass
class Search:
    nodes: list[Node]
    method: str  # exhaustive or greedy
    exhaustive_up_to: int  # every set of at most this many nodes was tried
    evaluated: int  # sets screened
    rescored: int  # sets scored again on every string
    reached: bool  # faithfulness >= target (on every string)


def screening_rows(examples: pd.DataFrame, seed: int, n: int = SEARCH_ROWS) -> np.ndarray | None:
    """Up to n/2 palindromes and n/2 other strings (kinds in turn), drawn with the seed; None = all rows."""
    if len(examples) <= n:
        return None
    rng = np.random.default_rng([seed, _STREAM])
    label = examples["label"].to_numpy(dtype=bool)
    kinds = examples["kind"].to_numpy()
    chosen = [rng.permutation(np.flatnonzero(label))[: n // 2]]
    negatives = [rng.permutation(np.flatnonzero(~label & (kinds == k))) for k in sorted(set(kinds[~label]))]
    interleaved = [row for group in itertools.zip_longest(*negatives) for row in group if row is not None]
    chosen.append(np.array(interleaved[: n - len(chosen[0])], dtype=np.int64))
    return np.sort(np.concatenate(chosen))


def n_sets_up_to(n: int, k: int) -> int:
    return sum(math.comb(n, i) for i in range(k + 1))


def search_circuit(screen: CircuitScorer, full: CircuitScorer, target: float, budget: int) -> Search:
    candidates = full.candidates
    f_model = full.f([candidates])[0]
    s_model = screen.f([candidates])[0]
    if f_model <= 0 or s_model <= 0:
        return Search([], "none (the model has no positive margin)", 0, 0, 0, False)
    n = len(candidates)
    size = 0
    while size <= n and n_sets_up_to(n, size) <= budget:
        sets = [list(c) for c in itertools.combinations(candidates, size)]
        screened = screen.f(sets) / s_model
        promising = [sets[i] for i in np.flatnonzero(screened >= target - SCREEN_BAND)]
        if promising:
            values = full.f(promising) / f_model
            best = int(np.argmax(values))  # first best: forward order breaks ties
            if values[best] >= target:
                return Search(promising[best], "exhaustive", size, screen.n_evaluated, full.n_evaluated, True)
        size += 1
    return _greedy(screen, full, target, size - 1)


def _greedy(screen: CircuitScorer, full: CircuitScorer, target: float, exhaustive_up_to: int) -> Search:
    """Add the node that raises F most (screened) until F reaches the target on every string, then drop
    every node the target does not need, latest additions first."""
    f_model = full.f([full.candidates])[0]
    chosen: list[Node] = []
    rest = list(full.candidates)
    value = full.f([chosen])[0] / f_model
    while rest and value < target:
        pick = int(np.argmax(screen.f([chosen + [nd] for nd in rest])))
        chosen.append(rest.pop(pick))
        value = full.f([chosen])[0] / f_model
    reached = bool(value >= target)  # a numpy bool would not go into JSON
    if reached:
        for nd in reversed(list(chosen)):
            trial = [c for c in chosen if c != nd]
            if full.f([trial])[0] / f_model >= target:
                chosen = trial
    order = {nd: i for i, nd in enumerate(full.candidates)}
    return Search(sorted(chosen, key=order.__getitem__), "greedy", exhaustive_up_to, screen.n_evaluated,
                  full.n_evaluated, reached)


def without(circuit: Sequence[Node], removed: Iterable[Node]) -> list[Node]:
    removed = set(removed)
    return [nd for nd in circuit if nd not in removed]


def completeness(scorer: CircuitScorer, circuit: list[Node], full: float,
                 screen: CircuitScorer | None = None) -> dict[str, Any]:
    """The worst |F(C \\ K) - F(M \\ K)| / F(M) over singles, layers and a greedy K. Past GREEDY_SCREEN_ABOVE nodes the
    greedy K grows on `screen`'s rows and each of its steps is then scored on every row."""
    model_nodes = scorer.candidates
    tried: dict[str, list[Node]] = {f"{{{nd.name}}}": [nd] for nd in circuit}
    for layer in sorted({nd.layer for nd in circuit}):
        in_layer = [nd for nd in circuit if nd.layer == layer]
        if len(in_layer) > 1:
            tried[f"layer {layer}"] = in_layer

    def gaps(sets: list[list[Node]], by: CircuitScorer) -> np.ndarray:
        f_c = by.f([without(circuit, k) for k in sets])
        f_m = by.f([without(model_nodes, k) for k in sets])
        return np.abs(f_c - f_m) / full

    grower = screen if screen is not None and len(circuit) > GREEDY_SCREEN_ABOVE else scorer
    k: list[Node] = []
    rest = list(circuit)
    while rest:  # greedy: grow K by the node that widens the gap most
        pick = int(np.argmax(gaps([k + [nd] for nd in rest], grower)))
        k.append(rest.pop(pick))
        tried[f"greedy {{{', '.join(nd.name for nd in k)}}}"] = list(k)
    named = list(tried.items())
    values = gaps([k for _, k in named], scorer) if named else np.zeros(0)
    results = {name: float(v) for (name, _), v in zip(named, values)}
    worst = max(results, key=results.__getitem__) if results else None
    return {"value": results[worst] if worst else 0.0, "worst_k": worst, "tried": results,
            "taking_over": taking_over(scorer, circuit, tried[worst], screen=screen if grower is screen else None)
            if worst else []}


def taking_over(scorer: CircuitScorer, circuit: list[Node], k: list[Node], top: int = 3,
                screen: CircuitScorer | None = None) -> list[dict[str, Any]]:
    """Which nodes outside the circuit make up for K: with K ablated from the model, ablating one more outside node
    u closes this share of the gap F(M \\ K) - F(C \\ K) (1: u alone takes over), the largest first. With `screen`,
    the outside nodes are ranked on its rows and the best 2 * `top` scored on every row."""
    outside = [nd for nd in scorer.candidates if nd not in circuit]
    if screen is not None and len(outside) > 2 * top:
        f_m, f_c = screen.f([without(screen.candidates, k), without(circuit, k)])
        if abs(f_m - f_c) >= 1e-9:
            ranked = (f_m - screen.f([without(screen.candidates, [*k, u]) for u in outside])) / (f_m - f_c)
            outside = [outside[i] for i in sorted(np.argsort(-ranked, kind="stable")[:2 * top])]
    f_m, f_c = scorer.f([without(scorer.candidates, k), without(circuit, k)])
    gap = f_m - f_c
    if not outside or abs(gap) < 1e-9:
        return []
    closed = (f_m - scorer.f([without(scorer.candidates, [*k, u]) for u in outside])) / gap
    order = np.argsort(-closed, kind="stable")[:top]
    return [{"node": outside[i].name, "share": float(closed[i])} for i in order if closed[i] > 0]


def minimality(scorer: CircuitScorer, circuit: list[Node], full: float,
               screen: CircuitScorer | None = None) -> dict[str, dict[str, Any]]:
    """Per node v: max over K of |F(C \\ (K + v)) - F(C \\ K)| / F(M), and the K that gives it. Where a node has
    more than SCREEN_ABOVE sets K, they are ranked on `screen`'s rows and the RESCORED best, with K = {}, scored on
    every row."""
    plans = {}
    for v in circuit:
        others = [nd for nd in circuit if nd != v]
        exhaustive = len(others) <= MINIMALITY_EXHAUSTIVE
        sizes = range(len(others) + 1) if exhaustive else range(min(MINIMALITY_K_SIZE, len(others)) + 1)
        ks = [list(c) for r in sizes for c in itertools.combinations(others, r)]
        plans[v] = (ks, exhaustive, screen is not None and len(ks) > SCREEN_ABOVE)
    # every node's sets go into one call (the memo answers the per-node reads): sets that ablate the same early
    # nodes share those blocks' runs across nodes too
    ranked_ks = [(v, k) for v, (ks, _, screened) in plans.items() if screened for k in ks]
    if ranked_ks:
        screen.f([without(circuit, k) for _, k in ranked_ks] + [without(circuit, [*k, v]) for v, k in ranked_ks])
    for v, (ks, exhaustive, screened) in plans.items():
        if screened:
            ranked = np.abs(screen.f([without(circuit, [*k, v]) for k in ks]) - screen.f([without(circuit, k)
                                                                                          for k in ks]))
            plans[v] = ([ks[i] for i in dict.fromkeys([0, *np.argsort(-ranked, kind="stable")[:RESCORED]])],  # K = {}
                        exhaustive, screened)
    scorer.f([without(circuit, k) for ks, _, _ in plans.values() for k in ks]
             + [without(circuit, [*k, v]) for v, (ks, _, _) in plans.items() for k in ks])
    out = {}
    for v, (ks, exhaustive, screened) in plans.items():
        with_v = scorer.f([without(circuit, k) for k in ks])
        without_v = scorer.f([without(circuit, [*k, v]) for k in ks])
        diffs = np.abs(without_v - with_v) / full
        best = int(np.argmax(diffs))
        out[v.name] = {"value": float(diffs[best]), "k": [nd.name for nd in ks[best]],
                       "search": ("exhaustive" if exhaustive else f"every K of at most {MINIMALITY_K_SIZE} nodes")
                       + (f", ranked on {len(screen.rows) if screen.rows is not None else 'every'} rows, the best "
                          f"{RESCORED} and K = {{}} scored on every row" if screened else "")}
    return out
