"""CircuitsVis attention-head views (bidirectional: nothing masked), drawn from the shared bundle."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from palindrome_lens.report.errors import ReportError

DECIMALS = 5


def script_json(obj: object) -> str:
    """JSON that is safe inside an inline `<script>` (no `<`, `>` or `&` survive as raw characters)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def attention_props(
    pattern: object, tokens: Sequence[str], head_names: Sequence[str] | None, where: str
) -> dict[str, object]:
    """CircuitsVis AttentionHeads props from a (heads, dest, src) or (dest, src) pattern."""
    array = np.asarray(pattern, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    n = len(tokens)
    if array.ndim != 3 or array.shape[1:] != (n, n):
        raise ReportError(f"{where}: attention must be (heads, {n}, {n}) for {n} tokens, got {array.shape}")
    if not np.isfinite(array).all():
        raise ReportError(f"{where}: attention contains NaN or infinite values")
    props: dict[str, object] = {
        "attention": np.round(array, DECIMALS).tolist(),
        "tokens": [str(token) for token in tokens],
        "maskUpperTri": False,
    }
    if head_names is not None:
        if len(head_names) != array.shape[0]:
            raise ReportError(f"{where}: {len(head_names)} head names for {array.shape[0]} heads")
        props["attentionHeadNames"] = [str(name) for name in head_names]
    return props


def attention_html(
    pattern: object, tokens: Sequence[str], div_id: str, where: str, head_names: Sequence[str] | None = None
) -> str:
    """A `<div>` and the script that renders `CircuitsVis.AttentionHeads` into it."""
    props = script_json(attention_props(pattern, tokens, head_names, where))
    return (
        f'<div id="{div_id}" class="circuitsvis"></div>\n'
        f'<script>CircuitsVis.render("{div_id}", CircuitsVis.AttentionHeads, {props});</script>'
    )
