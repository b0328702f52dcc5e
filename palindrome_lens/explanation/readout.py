"""The program's only fitted part: the readout that turns its features into the logit difference.

The model's readout (the last MLP, the final LayerNorm and the unembedding) saturates: the logit difference
sits near one value per class and moves a little within each. A gate (logistic in the readout heads'
evidence) says which side a string is on; one quadratic per side in every feature gives the value. The gate
is fitted to the model's *decisions*, each quadratic to the model's *logits* on the strings the model puts
on its side, all on the train split: the labels are never used.
"""

from __future__ import annotations

import numpy as np

GATE_RIDGE = 1e-3  # keeps the gate finite when the train split separates the sides perfectly
NEWTON_STEPS = 100


def quadratic_terms(features: np.ndarray) -> np.ndarray:
    """(n, 1 + F + F(F+1)/2): 1, every feature, then f[i] * f[j] for i <= j (the program's order)."""
    n, width = features.shape
    products = [features[:, i] * features[:, j] for i in range(width) for j in range(i, width)]
    return np.column_stack([np.ones(n), features, *products]) if width else np.ones((n, 1))


def fit_gate(evidence: np.ndarray, palindrome: np.ndarray) -> np.ndarray:
    """[weight per readout head..., bias] of a logistic gate, by Newton's method with a small ridge."""
    x = np.column_stack([evidence, np.ones(len(evidence))])
    y = palindrome.astype(np.float64)
    beta = np.zeros(x.shape[1])
    ridge = GATE_RIDGE * np.eye(x.shape[1])
    ridge[-1, -1] = 0.0  # the bias is free
    for _ in range(NEWTON_STEPS):
        p = 0.5 * (1.0 + np.tanh(x @ beta / 2.0))
        grad = x.T @ (p - y) + ridge @ beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def fit_side(features: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of the quadratic in `features` (zeros but the mean when too few rows)."""
    terms = quadratic_terms(features)
    coefs = np.zeros(terms.shape[1])
    if len(logits) == 0:
        return coefs
    if len(logits) < terms.shape[1]:
        coefs[0] = float(np.mean(logits))
        return coefs
    return np.linalg.lstsq(terms, logits, rcond=None)[0]


def fit_readout(features: np.ndarray, n_heads: int, logits: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The gate and the two quadratics, fitted to the model's `logits` (and the decisions they imply)."""
    decided = logits > 0
    gate = fit_gate(features[:, :n_heads], decided)
    sides = {"palindrome": fit_side(features[decided], logits[decided]),
             "not_palindrome": fit_side(features[~decided], logits[~decided])}
    return gate, sides


def apply_readout(features: np.ndarray, n_heads: int, gate: np.ndarray, sides: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) the logit difference the fitted readout gives for `features` (n, F): the program's arithmetic."""
    z = features[:, :n_heads] @ np.asarray(gate)[:-1] + np.asarray(gate)[-1]
    side = 0.5 * (1.0 + np.tanh(z / 2.0))
    terms = quadratic_terms(features)
    return side * (terms @ np.asarray(sides["palindrome"])) + (1 - side) * (terms @ np.asarray(sides["not_palindrome"]))


def n_fitted(n_heads: int, n_features: int) -> int:
    """How many numbers the gate and the two quadratics hold."""
    return n_heads + 1 + 2 * (1 + n_features + n_features * (n_features + 1) // 2)
