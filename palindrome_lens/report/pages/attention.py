"""The attention page: where the heads look from the readout, split by pair status (the reader's evidence),
the mirror head on one string, mean attention per head by length, mirror scores, CircuitsVis views of example
strings, and the weights-only views (positional QK per head, the cosine similarity of W_pos's rows)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from palindrome_lens.report.content import AttentionView, Figure, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.figures import label_figure
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
)
from palindrome_lens.report.roles import ratio_text, readings

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


def positional_qk_figure(pos_qk: pd.DataFrame, length: int, n_heads: int, several: bool = False) -> Figure:
    """Every head's positional QK pattern on strings of `length` characters."""
    rows = pos_qk[pos_qk["length"] == length]
    labels = position_labels(length, int(rows["query_pos"].max()) + 1)
    panels = head_panels(rows, "query_pos", "key_pos", "pattern", labels, lambda component, _: component)
    title = f"Positional QK pattern per head, strings of length {length}" + (" (the longest)" if several else "")
    fig = heatmap_grid(panels, title,
                       "key position", "query position", "attention", cols=n_heads, zmin=0, zmax=1,
                       colorscale=SEQUENTIAL, panel_height=320)
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


def reader_heads(by_position: pd.DataFrame) -> list[str]:
    """The heads that can read what layer 0 wrote: every head above layer 0 (every head of a one-layer model)."""
    later = by_position[by_position["layer"] > 0]
    return head_order(later if len(later) else by_position)


def reader_figure(by_position: pd.DataFrame, readout: str) -> Figure:
    """Per head, the mean attention from the readout on each character of the longest strings, split by whether
    that character's mirrored pair matches; one log axis shared by every panel."""
    length = int(by_position["length"].max())
    rows = by_position[by_position["length"] == length]
    heads = reader_heads(by_position)
    found = readings(by_position)
    titles = [f"{h}: {ratio_text(found[h].ratio)} more on a broken pair" if h in found else h for h in heads]
    fig = make_subplots(rows=1, cols=len(heads), shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.05)
    for i, head in enumerate(heads, start=1):
        mine = rows[rows["component"] == head]
        for status, name, color in (("mismatched", "pair broken", "#c92a2a"), ("matched", "pair matches", "#868e96")):
            cells = mine[mine["status"] == status].sort_values("pos")
            fig.add_trace(go.Scatter(x=cells["pos"].astype(str).tolist(), y=cells["attention"].tolist(),
                                     mode="lines+markers", name=name, legendgroup=name, showlegend=i == 1,
                                     line={"color": color}, hovertext=[f"{head}, character {p}, {name}: {num(a)} "
                                                                       f"(n={n})" for p, a, n in
                                                                       zip(cells["pos"], cells["attention"], cells["n"])],
                                     hoverinfo="text"), row=1, col=i)
    fig.update_yaxes(type="log", dtick=1, exponentformat="power")
    fig.update_xaxes(type="category")
    fig.update_layout(height=430, legend_title_text="the character's mirrored pair")
    label_figure(fig, f"Attention from {readout} to each character, strings of length {length}", "character position",
                 f"mean attention from {readout} (log scale)")
    for i in range(2, len(heads) + 1):  # the panels share the first one's y axis and its title
        fig.get_subplot(1, i).yaxis.title.text = None
    return Figure(fig)


def mirror_string_figure(attribution: Attribution) -> tuple[Figure, pd.DataFrame] | None:
    """The head with the highest mirror score on one string with a broken pair: its whole pattern, with the
    characters as tick labels."""
    mirrors = attribution.summary.get("mirror_scores") or {}
    strings, attention = attribution["example_strings"], attribution["example_attention"]
    candidates = strings[(strings["source"] == "analysis string") & (strings["kind"] == "near1")]
    if not mirrors or candidates.empty:
        return None
    head = max(sorted(mirrors), key=lambda h: mirrors[h])
    layer, number = (int(v) for v in head[1:].split("H"))
    row = candidates.iloc[0]
    cells = attention[(attention["key"] == row["key"]) & (attention["layer"] == layer) & (attention["head"] == number)]
    n = int(cells["dest"].max()) + 1
    tokens = ["BOS", *[f"{i + 1} {c}" for i, c in enumerate(row["text"])], *(["EOS"] if n > len(row["text"]) + 1
                                                                            else [])]
    z = grid(cells, "dest", "src", "value", range(n), range(n))
    fig = heatmap_grid([Panel("", z, tokens, tokens)], f"{head} (mirror score {num(mirrors[head], 2)}) on {row['text']}",
                       "key position (attended to)", "query position (attending)", "attention", zmin=0, zmax=1,
                       colorscale=SEQUENTIAL, text_format="%{z:.2f}", panel_height=max(320, 34 * n))
    fig.update_layout(width=max(560, 40 * n + 220))
    return Figure(fig), cells


def example_section(example: ExampleAttention, attention_dir: str, first: bool) -> Section:
    caption = (f"CircuitsVis view of every head on one analysis string of each kind (read from the stored "
               f"activations, no masking: attention is {attention_dir}). Pick a head; rows are query positions, "
               "columns key positions, darker = more attention. Hover a token to see where it attends. The Explorer "
               "page shows any string this way.") if first else f"The same view on a {example.kind} string."
    return Section(f"Example: {example.text!r} ({example.kind})", caption,
                   AttentionView(example.pattern, example.tokens, head_names=example.head_names))


def attention_page(attribution: Attribution, examples: list[ExampleAttention]) -> Page:
    attention, summary = attribution["attention"], attribution.summary
    n_heads = int(summary["model"]["n_heads"])
    lengths = sorted(int(v) for v in attention["length"].unique())
    max_length = max(lengths) if lengths else 0
    mirrors = summary.get("mirror_scores") or {}
    best = sorted(mirrors, key=lambda h: (-mirrors[h], h))[:2]
    readout = str(summary["model"].get("readout", "bos")).upper()
    intro = ("Where each head looks. A head that compares mirrored characters attends from character i to "
             "character L+1−i, which shows as an anti-diagonal; a head that reads the comparison looks from "
             f"{readout} at the characters whose pair is broken. "
             + (f"Highest mirror scores: {names([f'{h} {num(mirrors[h], 2)}' for h in best])}." if best else ""))
    attention_dir = str(summary["model"].get("attention_dir", "bidirectional"))
    source = "data/attribution/{}.parquet"
    sections = []
    several = len(lengths) > 1
    by_position = attribution["readout_by_position"]
    if not by_position.empty:
        sections.append(Section(f"Where the heads look from {readout}", (
            f"Per head (every head above layer 0), the mean attention {readout} puts on each character of the "
            "analysis strings that are not palindromes, split by whether that character's mirrored pair is broken "
            "(red) or matches (grey). The y axis is logarithmic and shared, so a head that reads mismatches shows "
            f"two lines far apart; the panel titles give the ratio over every position{' and length' * several}. "
            "The mean "
            "patterns further down average over strings whose broken pairs sit in different places, which is why "
            "they look nearly uniform."), reader_figure(by_position, readout), anchor="reader",
            data=[Download("readout_by_position.csv", by_position, source.format("readout_by_position"))]))
    mirror_view = mirror_string_figure(attribution)
    if mirror_view is not None:
        figure, cells = mirror_view
        sections.append(Section("The mirror head on one string", (
            "The head with the highest mirror score on one analysis string with one broken mirrored pair: each row "
            "is a query position, each column a key position, the number the attention. A mirror head lights up "
            "the anti-diagonal: character i looks at character L+1−i."), figure, anchor="mirror-head",
            data=[Download("mirror_head_string.csv", cells,
                           source.format("example_attention") + ", the rows of this string and head")]))
    sections += [Section("Mean attention" + (f", length {length}" if several else ""), (
        "One panel per head (rows of panels = layers). Rows are query positions (BOS, characters 1..L, EOS), "
        "columns the positions they attend to; colour is the mean attention over the analysis strings of this "
        f"length (each row sums to 1). An anti-diagonal means mirror comparison; the {readout} row shows what the "
        "classification position reads on average."), mean_pattern_figure(attention, length, n_heads),
        data=[Download("attention.csv", attention, source.format("attention"))]) for length in lengths]
    sections.append(Section("Mirror scores", (
        "Mirror score per head and kind of string (1 = every character attends only to its mirror; uniform "
        "attention gives about 1/(L+2))" + ("; averaged over lengths weighted by their string counts." if several
                                           else ".")), mirror_figure(attribution["mirror"]), anchor="mirror-scores",
        data=[Download("mirror.csv", attribution["mirror"], source.format("mirror"))]))
    if examples:
        sections += [example_section(example, attention_dir, i == 0) for i, example in enumerate(examples)]
    else:
        sections.append(Section("Example strings", "CircuitsVis views need attn.hook_pattern in extract.hooks.",
                                Text("No attention patterns were extracted, so there are no example views.")))
    qk_length = int(attribution["pos_qk"]["length"].max())  # one length shown; the table has every length
    sections += [
        Section("Positional QK per head", (
            "The part of each head's attention score that does not depend on the characters: the positional "
            "embedding through ln1 (with the real LayerNorm scale of each string) and the biases, averaged over the "
            "analysis strings of one length and softmaxed over the real positions"
            + (f". Shown for the longest length, {qk_length}; the data holds every length" if several else "")
            + ". A mirror-comparing head shows an anti-diagonal. Exact for layer 0; in later layers the residual "
            "stream holds more than positions, so read it as a guide."),
            positional_qk_figure(attribution["pos_qk"], qk_length, n_heads, several),
            data=[Download("pos_qk.csv", attribution["pos_qk"], source.format("pos_qk"))]),
        Section("Positional similarity", (
            "Cosine similarity of every pair of W_pos rows, the positional embeddings (red: same direction, blue: "
            "opposite). Mirrored "
            f"positions i and L+1−i of the {'longest ' if several else ''}string lie on the anti-diagonal between 1 "
            "and L; a strong colour "
            "there means W_pos itself pairs each position with its mirror."),
            pos_cosine_figure(attribution["pos_cosine"], max_length),
            data=[Download("pos_cosine.csv", attribution["pos_cosine"], source.format("pos_cosine"))]),
    ]
    return Page(FILENAME, TITLE, intro, sections)
