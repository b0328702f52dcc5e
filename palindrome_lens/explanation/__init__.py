"""The explanation as a program: the mechanism the attribute stage found, compiled into a short standard-library
program (data/explanation/program.py) whose tables are read from the model's own components, and measured
against the model: decisions, the model's own errors, the logit difference within each class, and
interchange interventions that align each program variable with the node that carries it.

    from palindrome_lens.explanation import explain, write_explanation, family

The names load lazily, so `palindrome_lens.explanation.family` and `.constants` import no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Explanation", "explain", "family", "write_explanation"]


def __getattr__(name: str) -> Any:
    if name == "family":
        from palindrome_lens.explanation.family import family

        return family
    if name in __all__:
        from palindrome_lens.explanation import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
