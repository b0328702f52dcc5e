"""The attention page: mean attention per head by length, mirror scores, CircuitsVis views of example
strings, and the weights-only views (positional QK per head, W_pos and its cosine similarity)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from palindrome_lens.report.content import AttentionView, Figure, Text
from palindrome_lens.report.formatting import names, num
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution, ExampleAttention
from palindrome_lens.report.plots import (
    DIVERGING,
    SEQUENTIAL,
    Panel,
    grid,
    grouped_bars,
    head_order,
    heatmap_grid,
    kind_sorted,
    position_labels,
    symmetric_limit,
)

FILENAME = "attention.html"
TITLE = "Attention"
SUMMARY = "mean attention per head, mirror scores, example strings, positional QK and W_pos"


def head_panels(frame: pd.DataFrame, rows: str, columns: str, values: str, labels: list[str],
                title: Callable[[str, pd.DataFrame], str]) -> list[Panel]:
    """One square panel per head (TransformerLens order) over the positions named by `labels`."""
    positions = range(len(labels))
    panels = []
    for component in head_order(frame):
        cells = frame[frame["component"] == component]
        panels.append(Panel(title(component, cells), grid(cells, rows, columns, values, positions, positions),
                            labels, labels))
    return panels


def mean_pattern_figure(attention: pd.DataFrame, length: int, n_heads: int) -> Figure:
    rows = attention[attention["length"] == length]
    labels = position_labels(length, int(rows["dest"].max()) + 1)
    panels = head_panels(rows, "dest", "src", "value", labels,
                         lambda component, cells: f"{component} (n={int(cells['n'].max())})")
    fig = heatmap_grid(panels, f"Mean attention pattern per head, strings of length {length}",
                       "key position (attended to)", "query position (attending)", "attention", cols=n_heads,
                       zmin=0, zmax=1, colorscale=SEQUENTIAL, panel_height=320)
    return Figure(fig)


def mirror_figure(mirror: pd.DataFrame) -> Figure:
    """Mirror score per head and kind, averaged over lengths weighted by their string counts."""
    heads = head_order(mirror)
    series = {}
    for kind in kind_sorted(mirror["kind"].unique().tolist()):
        rows = mirror[mirror["kind"] == kind]
        series[kind] = [float(np.average(g["mirror_score"], weights=g["n"])) if g["n"].sum() else float("nan")
                        for g in (rows[rows["component"] == h] for h in heads)]
    fig = grouped_bars(heads, series, "Mirror score per head, by kind", "head",
                       "mirror score (attention from i to L+1−i)", legend_title="kind")
    fig.update_yaxes(range=[0, 1])
    return Figure(fig)


def positional_qk_figure(pos_qk: pd.DataFrame, length: int, n_heads: int) -> Figure:
    """Every head's positional QK pattern on strings of `length` characters."""
    rows = pos_qk[pos_qk["length"] == length]
    labels = position_labels(length, int(rows["query_pos"].max()) + 1)
    panels = head_panels(rows, "query_pos", "key_pos", "pattern", labels, lambda component, _: component)
    fig = heatmap_grid(panels, f"Positional QK pattern per head, strings of length {length} (the longest)",
                       "key position", "query position", "attention", cols=n_heads, zmin=0, zmax=1,
                       colorscale=SEQUENTIAL, panel_height=320)
    return Figure(fig)


def pos_embed_figure(pos_embed: pd.DataFrame, max_length: int) -> Figure:
    n_pos, n_dim = int(pos_embed["pos"].max()) + 1, int(pos_embed["dim"].max()) + 1
    z = grid(pos_embed, "pos", "dim", "value", range(n_pos), range(n_dim))
    limit = symmetric_limit(z)
    fig = heatmap_grid([Panel("", z, [str(d) for d in range(n_dim)], position_labels(max_length, n_pos))],
                       "Positional embedding W_pos", "residual-stream dimension", "position", "weight",
                       zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING, panel_height=24 * n_pos)
    return Figure(fig)


def pos_cosine_figure(pos_cosine: pd.DataFrame, max_length: int) -> Figure:
    n = int(pos_cosine["pos_i"].max()) + 1
    z = grid(pos_cosine, "pos_i", "pos_j", "cosine", range(n), range(n))
    labels = position_labels(max_length, n)
    fig = heatmap_grid([Panel("", z, labels, labels)], "Cosine similarity between positional embeddings",
                       "position", "position", "cosine", zmin=-1, zmax=1, zmid=0, colorscale=DIVERGING,
                       panel_height=max(300, 28 * n))
    fig.update_layout(width=max(520, 28 * n + 200))
    return Figure(fig)


def example_section(example: ExampleAttention, attention_dir: str) -> Section:
    return Section(f"Example: {example.text!r} ({example.kind})", (
        f"CircuitsVis view of every head on this analysis string (read from the stored activations, no masking: "
        f"attention is {attention_dir}). Pick a head; rows are query positions, columns key positions, darker = more "
        "attention. Hover a token to see where it attends."),
        AttentionView(example.pattern, example.tokens, head_names=example.head_names))


def attention_page(attribution: Attribution, examples: list[ExampleAttention]) -> Page:
    attention, summary = attribution["attention"], attribution.summary
    n_heads = int(summary["model"]["n_heads"])
    lengths = sorted(int(v) for v in attention["length"].unique())
    max_length = max(lengths) if lengths else 0
    mirrors = summary.get("mirror_scores") or {}
    best = sorted(mirrors, key=lambda h: (-mirrors[h], h))[:2]
    intro = ("Where each head looks. A head that compares mirrored characters attends from character i to "
             "character L+1−i, which shows as an anti-diagonal. "
             + (f"Highest mirror scores: {names([f'{h} {num(mirrors[h], 2)}' for h in best])}." if best else ""))
    readout = str(summary["model"].get("readout", "bos")).upper()
    attention_dir = str(summary["model"].get("attention_dir", "bidirectional"))
    sections = [Section(f"Mean attention, length {length}", (
        "One panel per head (rows of panels = layers). Rows are query positions (BOS, characters 1..L, EOS), "
        "columns the positions they attend to; colour is the mean attention over the analysis strings of this "
        f"length (each row sums to 1). An anti-diagonal means mirror comparison; the {readout} row shows what the "
        "classification position reads."), mean_pattern_figure(attention, length, n_heads)) for length in lengths]
    sections.append(Section("Mirror scores", (
        "Mirror score = the attention that character position i puts on its mirror L+1−i, averaged over the "
        "characters that can see their mirror (all of them under bidirectional attention, the second half under "
        "causal attention; 1 = every such character attends only to its mirror; uniform attention gives about "
        "1/(L+2)). "
        "Averaged over lengths; one bar per kind of string."), mirror_figure(attribution["mirror"])))
    if examples:
        sections += [example_section(example, attention_dir) for example in examples]
    else:
        sections.append(Section("Example strings", "CircuitsVis views need attn.hook_pattern in extract.hooks.",
                                Text("No attention patterns were extracted, so there are no example views.")))
    qk_length = int(attribution["pos_qk"]["length"].max())  # one length shown; the table has every length
    sections += [
        Section("Positional QK per head", (
            "The part of each head's attention score that does not depend on the characters: the positional "
            "embedding through ln1 (with the real LayerNorm scale of each string) and the biases, averaged over the "
            "analysis strings of one length and softmaxed over the real positions. Shown for the longest length, "
            f"{qk_length}; pos_qk.parquet holds every length. A mirror-comparing head shows an anti-diagonal. Exact "
            "for layer 0; in later layers the residual stream holds more than positions, so read it as a guide."),
            positional_qk_figure(attribution["pos_qk"], qk_length, n_heads)),
        Section("Positional embeddings", (
            "W_pos, one row per position (BOS, characters, EOS; later rows are PAD slots), one column per "
            "residual-stream dimension; red positive, blue negative."),
            pos_embed_figure(attribution["pos_embed"], max_length)),
        Section("Positional similarity", (
            "Cosine similarity of every pair of W_pos rows (red: same direction, blue: opposite). Mirrored "
            "positions i and L+1−i of the longest string lie on the anti-diagonal between 1 and L; a strong colour "
            "there means W_pos itself pairs each position with its mirror."),
            pos_cosine_figure(attribution["pos_cosine"], max_length)),
    ]
    return Page(FILENAME, TITLE, intro, sections)
