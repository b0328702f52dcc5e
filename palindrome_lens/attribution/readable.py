"""Where the comparison is made: whether a boundary already holds the pair flags (or the label) in one direction
that the later layers read.

Causal scrubbing says *what* a position carries after a layer, not in what form: a position that holds its own and
its mirror's letters carries "whether its pair matches" as surely as one that holds a flag, though only the second
has made the comparison. So at each boundary, per string length and character position, take the direction along
which broken and matched pairs differ on average (the difference of class means of the residual over the donor
pool; for the label, palindromes against the rest) and swap only each character position's component along it for
a donor's, every character position at once. Each analysis row gets a donor of the other class (a palindrome for a
non-palindrome and back). If the later layers read the comparison from that direction, the output follows the
donor; if the positions only hold letters (compared later), or hold a comparison spread over several directions
(one that depends on the characters), or the direction is a loud copy nothing reads, it does not: one direction
is a sharp test of "compared and written as a flag", not of "compared" itself. Beside it: the whole residual at the character positions swapped (the ceiling: whether the characters matter
there at all) and the flag's vectors with their coordinates shuffled (a control that must fail before a direction is
called read). Rows the model answers like their donor say nothing and are left out.

The move is oblique, as in a linear probe: a row's coordinate is read with the within-class-whitened vector (so the
loud directions that vary inside a class, such as letters and positions, do not count) and moved along the class-
mean difference by the donor's coordinate minus its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from palindrome_lens.attribution.common import resume_logit_diff
from palindrome_lens.attribution.scrubbing import Scrubber

KINDS = ("flag", "label")  # the pair's own flag at each position, or the string's label
_STREAM = 21
RIDGE = 1e-2  # of the mean within-class variance: keeps the read-out finite where a class never varies


def directions(scrubber: Scrubber, layer: int, kind: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per character position, the class-mean difference `mean` (broken minus matched) and the read-out vector
    `read` = (within-class covariance + ridge)^-1 mean, scaled so that read . mean = 1: a row's coordinate along
    the feature is read . resid, which ignores directions that vary within a class (loud letters, positions).
    Both (width, d_model), zero where the position has no pair (the centre of an odd length, for the flag) or a
    class is missing."""
    pool = scrubber.pool
    resid = pool.resid[layer][torch.from_numpy(pool.index[length])].double()  # (n, width, d)
    chars = pool.chars[length]
    broken = chars[:, : length // 2] != chars[:, ::-1][:, : length // 2]
    mean = torch.zeros(resid.shape[1:], dtype=resid.dtype, device=resid.device)
    read = torch.zeros_like(mean)
    for pos in range(1, length + 1):
        pair = min(pos - 1, length - pos)
        if kind == "flag" and pair >= length // 2:
            continue
        split = broken[:, pair] if kind == "flag" else broken.any(axis=1)
        if split.all() or not split.any():
            continue
        mask = torch.from_numpy(split).to(resid.device)
        a, b = resid[mask, pos], resid[~mask, pos]
        diff = a.mean(0) - b.mean(0)
        centred = torch.cat([a - a.mean(0), b - b.mean(0)])
        cov = centred.T @ centred / max(1, len(centred) - 1)
        ridge = RIDGE * float(torch.diagonal(cov).mean()) + 1e-12
        w = torch.linalg.solve(cov + ridge * torch.eye(len(diff), dtype=cov.dtype, device=cov.device), diff)
        scale = float(w @ diff)
        if scale > 0:
            mean[pos], read[pos] = diff, w / scale
    return mean, read


def _donors(scrubber: Scrubber, seed: int, layer: int) -> np.ndarray:
    """Per analysis row, another analysis row of the same length and the other class."""
    lengths = scrubber.examples["length"].to_numpy()
    label = scrubber.label
    rng = np.random.default_rng([seed, _STREAM, layer])
    donors = np.arange(len(label))
    for length in np.unique(lengths):
        for value in (True, False):
            mine = np.flatnonzero((lengths == length) & (label == value))
            other = np.flatnonzero((lengths == length) & (label != value))
            if len(mine) and len(other):
                donors[mine] = rng.choice(other, size=len(mine))
    return donors


def _swap(own: torch.Tensor, donor: torch.Tensor, mean: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
    """own moved along each position's `mean` by how far the donor's coordinate (read . resid) is from its own."""
    along = ((donor.double() - own.double()) * read).sum(-1, keepdim=True)
    return (own.double() + along * mean).to(own.dtype)


def read_test(scrubber: Scrubber, layer: int, seed: int, target: float) -> dict[str, Any]:
    """How often the output follows the donor when the characters' flag (or label) direction is swapped, beside the
    whole residual at the characters and a random direction; with a verdict per kind."""
    pool, lengths = scrubber.pool, scrubber.examples["length"].to_numpy()
    donors = _donors(scrubber, seed, layer)
    decision = scrubber.model_diff > 0
    informative = decision != decision[donors]
    rng = torch.Generator().manual_seed(int(seed) * 1000 + _STREAM + layer)  # the control's shuffles
    resid = pool.resid[layer]
    variants: dict[str, list[torch.Tensor]] = {"whole": [], "control": [], **{k: [] for k in KINDS}}
    order = []
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        order.append(rows)
        own = resid[torch.from_numpy(pool.own[rows])]
        donor = resid[torch.from_numpy(pool.own[donors[rows]])]
        chars = torch.zeros(own.shape[1], dtype=torch.bool, device=own.device)
        chars[1:int(length) + 1] = True
        whole = own.clone()
        whole[:, chars] = donor[:, chars]
        variants["whole"].append(whole)
        flag_mean, flag_read = directions(scrubber, layer, "flag", int(length))
        shuffle = torch.randperm(own.shape[-1], generator=rng).to(own.device)
        variants["control"].append(_swap(own, donor, flag_mean[:, shuffle], flag_read[:, shuffle]))
        variants["flag"].append(_swap(own, donor, flag_mean, flag_read))
        variants["label"].append(_swap(own, donor, *directions(scrubber, layer, "label", int(length))))
    rows = np.concatenate(order)
    tokens = scrubber.tokens[torch.from_numpy(rows)]
    follows = {}
    for name, parts in variants.items():
        patched = torch.cat([resume_logit_diff(scrubber.model, batch, tokens[i:i + scrubber.batch_size], layer)
                             for i, batch in _batches(torch.cat(parts), scrubber.batch_size)]).cpu().numpy()
        followed = (patched > 0) == decision[donors[rows]]
        keep = informative[rows]
        follows[name] = float(followed[keep].mean()) if keep.any() else None
    out: dict[str, Any] = {"after_layer": layer, "n_rows": int(informative.sum()), **follows}
    out["verdicts"] = {kind: verdict(follows[kind], follows["whole"], follows["control"], target) for kind in KINDS}
    return out


def _batches(stacked: torch.Tensor, size: int):
    for start in range(0, len(stacked), size):
        yield start, stacked[start:start + size]


def verdict(value: float | None, whole: float | None, control: float | None, target: float) -> str:
    """`read` (the swap moves the decisions as the whole residual does, and the control does not), `spread` (the
    characters matter but no single direction per position carries them), `not needed` (swapping the characters'
    whole residual moves too few decisions), `inconclusive` (read, but the control moves decisions too)."""
    if value is None or whole is None or control is None:
        return "undefined"
    if whole < target:
        return "not needed"
    if value < target * whole:
        return "spread"
    return "read" if control <= 1 - target else "inconclusive"
