"""The explain stage's outputs are a function of its inputs and the seed: computed twice, summary.json's content
is the same to the byte (a wall-clock figure written into it, such as a level's build time, makes the DVC
output change on every rerun; the stage prints timings instead)."""

from __future__ import annotations

import json

from tests.test_explanation_mutations import explained


def test_explaining_the_same_model_twice_gives_the_same_summary() -> None:
    _, cached = explained()
    again = explained.__wrapped__()[1]  # computed afresh (explained() is cached for the other tests)
    assert again is not cached
    first, second = (json.dumps(result.summary, sort_keys=True) for result in (cached, again))
    assert first == second
