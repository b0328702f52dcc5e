"""The explain stage's sentences put a figure beside its gate so that a reader can tell pass from fail: a figure
that rounds to the gate itself gets a third decimal (R^2 0.297 against 0.3 must not read "0.30 (target 0.30)")."""

from __future__ import annotations

import pytest

from palindrome_lens.explanation.sentences import against


@pytest.mark.parametrize(("figure", "gate", "shown"), [
    (0.303, 0.3, "0.303"), (0.297, 0.3, "0.297"), (0.3, 0.3, "0.30"), (0.35, 0.3, "0.35"), (0.836, 0.8, "0.84"),
    (None, 0.3, "n/a"), (float("nan"), 0.8, "n/a")])
def test_a_figure_that_rounds_to_its_gate_shows_which_side_it_is_on(figure, gate, shown) -> None:
    assert against(figure, gate) == shown
