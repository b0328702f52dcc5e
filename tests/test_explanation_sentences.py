"""The explain stage's sentences put a figure beside its gate so that a reader can tell pass from fail: a figure
that rounds to the gate itself gets a third decimal (R^2 0.297 against 0.3 must not read "0.30 (target 0.30)")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from palindrome_lens.explanation.sentences import against, ceiling_sentence, ladder_sentence, program_pick


@pytest.mark.parametrize(("figure", "gate", "shown"), [
    (0.303, 0.3, "0.303"), (0.297, 0.3, "0.297"), (0.3, 0.3, "0.30"), (0.35, 0.3, "0.35"), (0.836, 0.8, "0.84"),
    (None, 0.3, "n/a"), (float("nan"), 0.8, "n/a")])
def test_a_figure_that_rounds_to_its_gate_shows_which_side_it_is_on(figure, gate, shown) -> None:
    assert against(figure, gate) == shown


def test_the_ceiling_sentence_says_where_the_fit_is_lost() -> None:
    """Four cases: the model's own features miss the gate (the template cannot pass), they pass and the top
    level fails (the tables lose it, and each half's share is given), both pass (the tables keep what the gate
    asks), they miss while the top level passes (then they bound nothing, and the sentence must not say they do)."""
    params = SimpleNamespace(spearman_target=0.8, r2_target=0.3)  # the gates the sentence reads

    def ceiling(spearman: float | None, r2: float | None) -> dict:
        return {"model": {"edits": {"spearman": spearman, "r2": r2}},
                "model_attention": {"edits": {"spearman": 0.91, "r2": 0.61}},
                "model_evidence": {"edits": {"spearman": 0.914, "r2": 0.63}}}

    top = {"name": "full", "spearman_edits": 0.7, "r2_edits": 0.25, "passes": False}
    low = ceiling_sentence(ceiling(0.75, 0.5), top, params)
    assert "reaches Spearman / R^2 0.75 / 0.50" in low and "even the model's own features miss the within-class fit" in low
    high = ceiling_sentence(ceiling(0.92, 0.8), top, params)
    assert "the full level reaches 0.70 / 0.25" in high and "lost in the tables" in high
    assert "the model's attention with the tables' evidence reaches 0.91 / 0.61" in high
    assert "the tables' attention with the model's evidence 0.91 / 0.63" in high
    both = ceiling_sentence(ceiling(0.92, 0.8), {**top, "spearman_edits": 0.9, "r2_edits": 0.38, "passes": True},
                            params)
    assert "the tables keep what the gate asks" in both
    # a 3-layer model: the top level passes while the readout on the model's own features does not carry over
    odd = ceiling_sentence(ceiling(0.88, -2.38), {**top, "spearman_edits": 0.82, "r2_edits": 0.5, "passes": True},
                           params)
    assert "while the full level passes at 0.82 / 0.50" in odd and "set no ceiling" in odd
    assert "a ceiling for every level" not in odd and "not expected to pass" not in odd
    assert ceiling_sentence(ceiling(None, None), top, params) == ""


def test_a_level_larger_than_the_model_is_called_so() -> None:
    """An explanation is a compression: a level with more numbers than the model has parameters is named as such
    (3 layers x 4 heads: the full level holds 57,256 + 141 numbers for 39,554 parameters)."""
    rows = [{"name": "context", "n_read": 3148, "n_fitted": 141, "n_total": 3289, "failed": ["the within-class fit"]},
            {"name": "full", "n_read": 57256, "n_fitted": 141, "n_total": 57397, "failed": ["the within-class fit"]}]
    text = ladder_sentence(rows, None, 39554, "context")
    assert "program.py is the context level: of the levels beyond the exact check (the baseline) that are no larger" in text
    assert "full (57,256 numbers read and 141 fitted, 1.45 times the model: more numbers than it explains)" in text
    assert "context (3,148 numbers read and 141 fitted) misses" in text
    passing = ladder_sentence([{**rows[1], "failed": []}], "full", 39554, "full")
    assert "141 fitted, 145.11% of the model's 39,554 parameters: more numbers than it explains." in passing
    fits = ladder_sentence([{**rows[0], "failed": []}], "context", 39554, "context")
    assert "8.32% of the model's 39,554 parameters." in fits and "more numbers" not in fits


def test_program_py_is_never_larger_than_the_model_while_a_smaller_level_does_as_well() -> None:
    """The smallest passing level; when none passes, among the levels beyond the exact check that are no larger than
    the model, the one failing the fewest gates, then the best edits Spearman, then the larger (ARENA: layer_zero,
    0.66x the model, fails 4 gates like the full tables at 5.1x; context fails 5)."""
    def row(name: str, n: int, failed: int, rho: float | None = 0.5) -> dict:
        return {"name": name, "n_total": n, "n_read": n, "n_fitted": 0, "failed": ["gate"] * failed,
                "passes": failed == 0, "spearman_edits": rho}

    arena = [row("exact", 2, 5), row("algorithm", 183, 5), row("layer_zero", 5459, 4, 0.75), row("context", 6395, 5),
             row("full", 42213, 4, 0.72)]
    assert arena[program_pick(arena, 8290)]["name"] == "layer_zero"
    tie = [row("exact", 2, 5), row("characters", 555, 3), row("context", 6395, 3), row("full", 42213, 1)]
    assert tie[program_pick(tie, 8290)]["name"] == "context"  # a tie in gates and Spearman: the larger
    assert tie[program_pick(tie, 100)]["name"] == "full"  # every level larger than the model: the fewest failed
    seed = [row("exact", 2, 1, 0.0), row("combination", 1339, 1, 0.42), row("layer_zero", 14691, 1, 0.74),
            row("full", 16207, 1, 0.64), row("unscored", 16300, 1, None)]
    assert seed[program_pick(seed, 26850)]["name"] == "layer_zero"  # seed 2: closer to the fit gate than full
    spread = [row("exact", 2, 1), row("string_level", 900, 3, 0.25)]  # seed 1: the accurate check is no explanation
    assert spread[program_pick(spread, 26850)]["name"] == "string_level"
    assert program_pick([row("exact", 2, 1)], 26850) == 0
    passing = [row("algorithm", 183, 1), row("combination", 1339, 0), row("full", 16207, 0)]
    assert passing[program_pick(passing, 26850)]["name"] == "combination"
    text = ladder_sentence(arena, None, 8290, "layer_zero")
    assert ("program.py is the layer_zero level: of the levels beyond the exact check (the baseline) that are no "
            "larger than the model, it fails the fewest gates (4) and, of those, follows the model best within a "
            "class (edits Spearman 0.75).") in text
    spread_text = ladder_sentence(spread, None, 26850, "string_level")
    assert "exact (2 numbers read and 0 fitted) misses gate" in spread_text  # fewer misses, and still not picked
    assert "program.py is the string_level level: of the levels beyond the exact check" in spread_text
