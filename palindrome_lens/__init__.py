"""palindrome-lens: train a TransformerLens palindrome classifier with DVC and explain how it works."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from palindrome_lens.model.classifier import Classifier

__all__ = ["Classifier", "load_classifier"]


def load_classifier(directory: Any, device: Any = None) -> Classifier:
    """Load a trained model directory (e.g. "data/model"); see `palindrome_lens.model.classifier`."""
    from palindrome_lens.model.classifier import load_classifier as _load

    return _load(directory, device=device)


def __getattr__(name: str) -> Any:
    if name == "Classifier":
        from palindrome_lens.model.classifier import Classifier

        return Classifier
    raise AttributeError(name)
