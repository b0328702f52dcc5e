"""The circuit search and its IOI-style metrics on a scorer whose F is known exactly: the smallest set that
reaches the target (exhaustive, and greedy past the budget), completeness and minimality by hand, and the
class-balanced screening rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from palindrome_lens.attribution.circuit import (
    CircuitScorer,
    completeness,
    minimality,
    screening_rows,
    search_circuit,
    taking_over,
    without,
)
from palindrome_lens.attribution.nodes import Node

A, B, C, D = (Node(0, name, "chars") for name in ("L0H0", "L0H1", "0_mlp_out", "L1H0"))
NODES = [A, B, C, D]
LABEL = np.array([True, True, False, False, False, False])


class FakeAblator:
    """Per-row logit differences +-F(kept) (so every row's margin is F), for F a known function of the kept set."""

    mode = "resample"

    def __init__(self, value: Callable[[frozenset], float]) -> None:
        self.value = value

    def logit_diffs(self, sets: Sequence[Sequence[Node]], rows: np.ndarray | None = None, desc: str | None = None):
        label = LABEL if rows is None else LABEL[rows]
        out = []
        for ablated in sets:
            f = self.value(frozenset(NODES) - set(ablated))
            out.append(np.where(label, f, -f))
        return np.array(out)


def scorers(value: Callable[[frozenset], float]) -> tuple[CircuitScorer, CircuitScorer]:
    ablator = FakeAblator(value)
    return CircuitScorer(ablator, NODES, LABEL, np.array([0, 2, 3])), CircuitScorer(ablator, NODES, LABEL)


def and_of_a_and_b(kept: frozenset) -> float:
    """A and B together carry the decision; C adds a little; D nothing."""
    return 9.0 * (A in kept and B in kept) + 1.0 * (C in kept)


def test_exhaustive_search_finds_the_smallest_set_reaching_the_target() -> None:
    screen, full = scorers(and_of_a_and_b)
    found = search_circuit(screen, full, target=0.9, budget=100)
    assert found.method == "exhaustive" and found.reached
    assert found.nodes == [A, B] and found.exhaustive_up_to == 2
    found = search_circuit(*scorers(and_of_a_and_b), target=0.95, budget=100)
    assert found.nodes == [A, B, C]


def test_greedy_search_past_the_budget_prunes_what_it_does_not_need() -> None:
    # greedy adds C first (A or B alone is worth nothing), then needs A and B; pruning drops C
    found = search_circuit(*scorers(and_of_a_and_b), target=0.9, budget=3)
    assert found.method == "greedy" and found.reached and found.exhaustive_up_to == 0
    assert found.nodes == [A, B]


def test_a_decision_spread_over_everything_and_a_model_without_margin() -> None:
    spread = search_circuit(*scorers(lambda kept: 10.0 if len(kept) == 4 else 5.0), target=0.9, budget=100)
    assert spread.reached and spread.nodes == NODES  # only the whole model will do
    broken = search_circuit(*scorers(lambda kept: -1.0), target=0.9, budget=100)
    assert not broken.reached and broken.method.startswith("none")


def test_completeness_and_minimality_by_hand() -> None:
    # the model also has a backup: D carries the decision alone when A is gone
    def backup(kept: frozenset) -> float:
        return 10.0 if (A in kept and B in kept) or (D in kept and B in kept and A not in kept) else 0.0

    screen, full = scorers(backup)
    f_model = full.f([NODES])[0]
    assert f_model == 10.0
    circuit = [A, B]
    comp = completeness(full, circuit, f_model)
    # K = {A}: the circuit without A scores 0, the model without A scores 10 through D -> gap 1
    assert comp["tried"]["{L0H0@chars}"] == pytest.approx(1.0)
    assert comp["tried"]["{L0H1@chars}"] == pytest.approx(0.0)
    assert comp["value"] == pytest.approx(1.0)
    assert comp["taking_over"] == [{"node": D.name, "share": pytest.approx(1.0)}]  # the backup, and only it
    minimal = minimality(full, circuit, f_model)
    assert minimal["L0H0@chars"]["value"] == pytest.approx(1.0) and minimal["L0H0@chars"]["k"] == []
    # a node that never matters has minimality 0
    assert minimality(full, [A, B, C], f_model)["0_mlp_out@chars"]["value"] == 0.0


def test_without_keeps_order() -> None:
    assert without(NODES, [C]) == [A, B, D]


def test_screening_rows_are_class_balanced_and_seeded() -> None:
    n = 1000
    rng = np.random.default_rng(3)
    kinds = rng.choice(["palindrome", "near1", "near2", "random"], n, p=[0.2, 0.5, 0.2, 0.1])
    examples = pd.DataFrame({"label": kinds == "palindrome", "kind": kinds})
    rows = screening_rows(examples, seed=0, n=100)
    assert len(rows) == 100 and len(set(rows)) == 100
    assert examples["label"].to_numpy()[rows].sum() == 50
    negatives = pd.Series(kinds[rows][~examples["label"].to_numpy()[rows]]).value_counts()
    assert negatives.max() - negatives.min() <= 1  # the other kinds in turn
    assert (screening_rows(examples, seed=0, n=100) == rows).all()
    assert screening_rows(examples.head(50), seed=0, n=100) is None


def test_minimality_of_a_large_circuit_tries_every_k_of_two_nodes() -> None:
    """Past MINIMALITY_EXHAUSTIVE + 1 nodes, K ranges over every set of at most two others: a node that matters
    only once two particular others are gone is still found needed."""
    nodes = [Node(0, f"L0H{i}", "chars") for i in range(10)]
    backup = {nodes[1], nodes[2]}

    def value(kept: frozenset) -> float:  # node 0 carries the decision when both backups are gone
        return 10.0 if backup & kept or nodes[0] in kept else 0.0

    class Ablator(FakeAblator):
        def logit_diffs(self, sets, rows=None, desc=None):
            return np.array([np.where(LABEL, f, -f) for f in (value(frozenset(nodes) - set(s)) for s in sets)])

    full = CircuitScorer(Ablator(value), nodes, LABEL)
    minimal = minimality(full, nodes, 10.0)
    assert minimal["L0H0@chars"]["value"] == 1.0 and sorted(minimal["L0H0@chars"]["k"]) == ["L0H1@chars", "L0H2@chars"]
    assert minimal["L0H0@chars"]["search"] == "every K of at most 2 nodes"
    assert minimal["L0H5@chars"]["value"] == 0.0


def test_a_large_circuits_minimality_ranks_its_sets_on_the_screen_and_scores_the_best_on_every_row() -> None:
    """Past SCREEN_ABOVE sets K a node's sets are ranked on the screen scorer; the value reported is the full
    scorer's (here half the screen's, so a value read off the screen would show)."""
    nodes = [Node(0, f"L0H{i}", "chars") for i in range(13)]  # 1 + 12 + 66 = 79 sets K per node
    backup = {nodes[1], nodes[2]}

    def value(kept: frozenset) -> float:
        return 10.0 if backup & kept or nodes[0] in kept else 0.0

    def scorer(scale: float) -> CircuitScorer:
        class Ablator(FakeAblator):
            def logit_diffs(self, sets, rows=None, desc=None):
                return np.array([np.where(LABEL, f, -f) * scale for f in (value(frozenset(nodes) - set(s))
                                                                           for s in sets)])
        return CircuitScorer(Ablator(value), nodes, LABEL)

    minimal = minimality(scorer(0.5), nodes, 10.0, screen=scorer(1.0))
    assert sorted(minimal["L0H0@chars"]["k"]) == ["L0H1@chars", "L0H2@chars"]
    assert minimal["L0H0@chars"]["value"] == pytest.approx(0.5)
    assert minimal["L0H5@chars"]["value"] == 0.0
    comp = completeness(scorer(0.5), nodes, 10.0, screen=scorer(1.0))
    assert all(v <= 0.5 + 1e-9 for v in comp["tried"].values())  # every gap scored on the full scorer


def test_a_large_circuits_minimality_always_scores_the_empty_k_on_every_row() -> None:
    """The screen ranks sets K on a few rows; where it ranks K = {} low but every row says v alone matters most, the
    value is still v's effect with nothing else removed (3x4 model: 14 of 15 nodes kept their values with the
    smaller ranking screen only once K = {} was always scored)."""
    nodes = [Node(0, f"L0H{i}", "chars") for i in range(13)]
    pair = {nodes[1], nodes[2]}

    def scorer(value: Callable[[frozenset], float]) -> CircuitScorer:
        class Ablator(FakeAblator):
            def logit_diffs(self, sets, rows=None, desc=None):
                return np.array([np.where(LABEL, f, -f) for f in (value(frozenset(nodes) - set(s)) for s in sets)])
        return CircuitScorer(Ablator(value), nodes, LABEL)

    full = scorer(lambda kept: 10.0 * (nodes[0] in kept) + 2.0 * (pair <= kept))  # K = {}: 10 of F(M)'s 12
    screen = scorer(lambda kept: 10.0 * (nodes[0] in kept and not pair <= kept))  # the screen ranks K = {} at 0
    minimal = minimality(full, nodes, 12.0, screen=screen)
    assert minimal["L0H0@chars"]["k"] == [] and minimal["L0H0@chars"]["value"] == pytest.approx(10 / 12)
    assert "the best 2 and K = {} scored on every row" in minimal["L0H0@chars"]["search"]


def test_a_large_circuits_taking_over_ranks_outside_nodes_on_the_screen_and_reports_every_rows_shares() -> None:
    """Past 2 * top outside nodes, the screen ranks which nodes take over for K and the shares reported are the full
    scorer's: here the screen's shares are the squares of the true ones (same order), so a share read off the
    screen would show."""
    nodes = [Node(0, f"L0H{i}", "chars") for i in range(13)]

    def scorer(weight: Callable[[int], float]) -> CircuitScorer:
        def value(kept: frozenset) -> float:  # node 0 decides; without it, every other node kept adds its weight
            return 100.0 if nodes[0] in kept else sum(weight(i) for i in range(1, 13) if nodes[i] in kept)

        class Ablator(FakeAblator):
            def logit_diffs(self, sets, rows=None, desc=None):
                return np.array([np.where(LABEL, f, -f) for f in (value(frozenset(nodes) - set(s)) for s in sets)])
        return CircuitScorer(Ablator(value), nodes, LABEL)

    full, screen = scorer(float), scorer(lambda i: float(i * i))
    shares = taking_over(full, [nodes[0]], [nodes[0]], screen=screen)
    assert [t["node"] for t in shares] == ["L0H12@chars", "L0H11@chars", "L0H10@chars"]
    assert [t["share"] for t in shares] == pytest.approx([12 / 78, 11 / 78, 10 / 78])
    assert taking_over(full, [nodes[0]], [nodes[0]]) == shares  # every node scored on every row: the same three
    scored = len(full.memo)
    assert scored == 2 + 12  # F(M \ K), F(C \ K) and every outside node, on every row
    # a screen that ranks the other way round: only its best 6 (nodes 1-6) reach every row, and the three reported
    # are the best of those by every row's shares
    fresh = scorer(float)
    shares = taking_over(fresh, [nodes[0]], [nodes[0]], screen=scorer(lambda i: float(13 - i)))
    assert len(fresh.memo) == 2 + 6
    assert [t["node"] for t in shares] == ["L0H6@chars", "L0H5@chars", "L0H4@chars"]
    assert [t["share"] for t in shares] == pytest.approx([6 / 78, 5 / 78, 4 / 78])


def test_remembered_sets_equal_what_the_scorer_would_compute() -> None:
    """`remember` takes F from logit differences run elsewhere: the same figures as evaluating them."""
    _, full = scorers(and_of_a_and_b)
    sets = [[A, B], [A, C], [B, C, D]]
    ablated = [without(NODES, s) for s in sets]
    other = CircuitScorer(full.ablator, NODES, LABEL)
    other.remember(sets, full.ablator.logit_diffs(ablated))
    assert other.evaluate(sets) == full.evaluate(sets)
    assert other.n_evaluated == 3
