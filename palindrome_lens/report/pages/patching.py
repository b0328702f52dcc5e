"""The activation-patching page: how much of the clean palindrome's answer each activation restores in its
distance-1 corruption, per layer/head and position, for every mismatch position."""

from __future__ import annotations

import pandas as pd

from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.formatting import num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.pages.ablation import balanced_rows
from palindrome_lens.report.plots import Panel, grid, head_order, heatmap_grid, pair_label, position_labels

FILENAME = "patching.html"
TITLE = "Activation patching"
NAV = "Patching"
SUMMARY = "which layer, head and position restores the right answer when patched from the clean palindrome"
READ = ("Colour is the recovery: 1 (red) restores the clean palindrome's answer, 0 (white) changes nothing, "
        "negative (blue) pushes further towards 'not palindrome'; the scale is clipped to [−1, 1] and hover shows "
        "the exact value.")
AS_ABOVE = "Colours as above: red restores, blue pushes the other way."
ALL = "every broken pair"
SOURCE = "data/attribution/patching.parquet"


GAP = 0.25  # ablation and patching disagree when the margin lost and the recovery differ by at least this


def account(attribution: Attribution) -> tuple[pd.DataFrame, list[str]]:
    """Per head and MLP (and each layer's heads together): the margin lost when ablated beside the recovery when
    patched from the clean palindrome (ratio of means, median per pair) at one position of the broken pair, at
    both and at every position; and a sentence per disagreement naming its measured cause. Empty without the
    attribute stage's set patching (summary.json patching.sets)."""
    sets = attribution.summary["patching"].get("sets") or []
    cells = {(r["component"], r["positions"]): r for r in sets}
    ablated = balanced_rows(attribution["ablation"], "all")
    lost = {mode: ablated[ablated["mode"] == mode].set_index("component")["margin_lost"].to_dict()
            for mode in ("resample", "mean")}
    rows, sentences = [], []
    for component in dict.fromkeys(r["component"] for r in sets):
        every, one, both = (cells.get((component, where), {}) for where in ("all", "one", "both"))
        rows.append({"component": component, "margin lost, ablated (resample)": lost["resample"].get(component),
                     "margin lost, ablated (mean)": lost["mean"].get(component),
                     "patched at every position: recovery": every.get("recovery"),
                     "median per pair": every.get("median"), "at one position of the broken pair": one.get("recovery"),
                     "at both": both.get("recovery")})
        sentence = disagreement(component, lost["resample"].get(component), cells)
        if sentence:
            sentences.append(sentence)
    frame = pd.DataFrame(rows)  # as percentages, the sentences' rounding rule
    return frame.apply(lambda column: column if column.name == "component" else column.map(pct)), sentences


def disagreement(component: str, lost: float | None, cells: dict) -> str | None:
    """The sentence for a component whose ablation and patching disagree by GAP or more, with its causes as
    measured: the layer's heads patched together, one position of the broken pair against both, the same
    layer's MLP at the pair's two positions."""
    every = cells.get((component, "all"), {})
    recovery = every.get("recovery")
    if lost is None or recovery is None or abs(lost - recovery) < GAP or component.startswith("layer"):
        return None
    layer = int(component[1:].split("H")[0]) if component.startswith("L") else int(component.split("_")[0])
    if recovery > lost:
        return (f"{component}: patching it restores {pct(recovery)} of the clean answer, yet ablating it loses only "
                f"{pct(lost)} of the margin: it carries the broken pair's information, but the model does without it.")
    causes = []
    joint = cells.get((f"layer {layer} heads", "all"), {}).get("recovery")
    if component.startswith("L") and joint is not None:
        causes.append(f"the heads of layer {layer} patched together restore {pct(joint)}"
                      + (": they carry the mismatch side by side, so restoring one head leaves the other to signal it"
                         if joint >= recovery + GAP else ", hardly more: the mismatch reaches the next layer by "
                         "another route as well"))
    one, both = (cells.get((component, where), {}).get("recovery") for where in ("one", "both"))
    if one is not None and both is not None and both >= 1.5 * one and both - one >= 0.05:
        causes.append(f"patched at one position of the broken pair it restores {pct(one)} and at both {pct(both)}: "
                      "each of the pair's two positions signals the mismatch")
    mlp = cells.get((f"{layer}_mlp_out", "both"), {}).get("recovery")
    if component.startswith("L") and mlp is not None and mlp >= recovery + GAP:
        causes.append(f"{layer}_mlp_out, which reads this layer's heads, restores {pct(mlp)} patched at the pair's "
                      "two positions alone: the mismatch is read there from more than this head's output")
    median = every.get("median")
    if median is not None and recovery - median >= GAP / 2:
        causes.append(f"the median pair recovers only {pct(median)}: a few pairs carry the mean")
    return (f"{component}: ablating it loses {pct(lost)} of the margin, but patching it alone from the clean "
            f"palindrome restores {pct(recovery)}. Needed, yet not enough on its own"
            + (": " + "; ".join(causes) if causes else "") + ".")


def range_text(lo: float | None, hi: float | None) -> str:
    """'between 0.998 and 1' or, when the two read the same, 'exactly 1'."""
    if lo is None or hi is None:
        return "n/a"
    return f"{num(lo, 4)}" if num(lo, 4) == num(hi, 4) else f"between {num(lo, 4)} and {num(hi, 4)}"


def _panels(rows: pd.DataFrame, length: int, row_key: str, row_labels: dict[object, str]) -> list[Panel]:
    """One panel per mismatch pair (rows with a position): y = `row_key` values, x = token position."""
    with_pos = rows[rows["pos"].notna()]
    n_positions = int(with_pos["pos"].max()) + 1
    x = position_labels(length, n_positions)
    panels = []
    for pair in sorted(int(p) for p in with_pos["mismatch_pos"].dropna().unique()):
        cells = with_pos[with_pos["mismatch_pos"] == pair]
        z = grid(cells, row_key, "pos", "recovery", list(row_labels), range(n_positions))
        n = int(cells["n"].max()) if len(cells) else 0
        panels.append(Panel(f"{pair_label(length, pair)} (n={n})", z, x, list(row_labels.values())))
    return panels


def position_figure(rows: pd.DataFrame, length: int, activation: str, what: str) -> Figure | None:
    """One panel per broken pair: rows = layers (resid_pre, mlp_out) or heads (z), x = token position."""
    rows = rows[rows["activation"] == activation]
    if rows.empty:
        return None
    if activation == "z":
        heads = sorted({(int(r.layer), int(r.head)) for r in rows.itertuples(index=False)})
        key, labels = "component", {f"L{layer}H{head}": f"L{layer}H{head}" for layer, head in heads}
    else:
        hook = {"resid_pre": "blocks.{l}.hook_resid_pre", "mlp_out": "{l}_mlp_out"}[activation]
        key, labels = "layer", {layer: hook.format(l=layer) for layer in sorted(int(v) for v in rows["layer"].unique())}
    panels = _panels(rows, length, key, labels)
    if not panels:
        return None
    return Figure(heatmap_grid(panels, f"{what} patched per position, length {length}", "token position",
                               "head" if activation == "z" else "layer", "recovery", zmin=-1, zmax=1, zmid=0,
                               panel_height=(32 if activation == "z" else 40) * len(labels)))


def head_all_positions_figure(patching: pd.DataFrame) -> Figure | None:
    """Head x mismatch pair (plus all pairs), z patched at every position at once; one panel per length."""
    rows = patching[(patching["activation"] == "z") & patching["pos"].isna()]
    if rows.empty:
        return None
    panels = []
    for length, group in rows.groupby("length", sort=True):
        heads = head_order(group)
        pairs = sorted(int(p) for p in group["mismatch_pos"].dropna().unique())
        columns = [ALL, *[f"pair {p}" for p in pairs]]
        cells = group.assign(column=[ALL if pd.isna(p) else f"pair {p}" for p in group["mismatch_pos"]])
        z = grid(cells, "component", "column", "recovery", heads, columns)
        panels.append(Panel(f"length {length}", z, columns, heads))
    fig = heatmap_grid(panels, "Head output patched at every position, by mismatch pair", "mismatch pair",
                       "head", "recovery", zmin=-1, zmax=1, zmid=0, cols=2, text_format="%{z:.2f}",
                       panel_height=36 * max(len(p.y) for p in panels))
    return Figure(fig)


def patching_page(attribution: Attribution) -> Page:
    patching, summary = attribution["patching"], attribution.summary
    facts = summary["patching"]
    if patching.empty:
        return Page(FILENAME, TITLE, "The analysis set holds no clean/corrupted pairs, so nothing was patched.",
                    [Section("No pairs", "Patching needs extract.n_pairs > 0.", Text("Nothing to show."))],
                    nav_label=NAV)
    intro = (
        f"Each of {facts['n_pairs']} example pairs is a test palindrome (clean) and its copy with one mirrored pair "
        "broken (corrupted). We run the corrupted string and replace one activation by its value on the clean "
        "palindrome (transformer_lens.patching); the recovery says how much of the clean answer that restores. "
        "Where it restores the palindrome answer, the activation carries the information that the broken pair "
        "matches. Sanity check: patching the whole residual stream before a layer recovers "
        f"{range_text(facts['full_resid_pre_recovery_min'], facts['full_resid_pre_recovery_max'])} in every layer "
        "(1 = exact).")
    readout = str(summary["model"]["readout"]).upper()  # where the class is read (BOS, or EOS)
    data = [Download("patching.csv", patching, SOURCE)]
    sections = []
    table, sentences = account(attribution)
    if len(table):
        sections.append(Section("Why patching and ablation differ", (
            "One account per component. Ablating a component asks whether the model needs it (margin lost: 100% = "
            "down to a constant predictor); patching it from the clean palindrome into the corrupted string asks "
            "whether it alone is enough to restore the answer (recovery: 100% = the clean answer). Patching is shown "
            "at every position (the recovery is a ratio of means; the median per pair beside it), at one position of "
            "the broken pair and at both; a layer's heads are also patched together. A component can be needed and "
            "yet not enough when the mismatch reaches the readout by several routes at once: the sentences below "
            "name the route, measured."),
            Text("\n\n".join(sentences) if sentences else "Ablation and patching agree on every component (their "
                 f"figures differ by less than {pct(GAP, 0)})."),
            anchor="account"))
        sections.append(Section("Patching beside ablation, per component", (
            "The figures behind the sentences, one row per component; the 'layer l heads' rows patch every head of "
            "a layer together (no ablation is measured for them)."), Table(table, digits=3), anchor="account-table"))
    fig = head_all_positions_figure(patching)
    if fig is not None:
        sections.append(Section("Heads, every position at once", (
            f"Each cell patches one head's output (hook_z) at every position at once; the '{ALL}' column pools the "
            "example pairs of every mirrored pair. A pale cell does not mean the head is idle: the account above "
            "says why a needed head can restore little alone. " + READ), fig,
            data=data))
    first = not sections
    lengths = sorted(int(v) for v in patching["length"].unique())
    for length in lengths:
        tag = f", length {length}" if len(lengths) > 1 else ""
        rows = patching[patching["length"] == length]
        pos = (f"x is the token position: BOS, characters 1..L, EOS; the class is read at {readout}. Pair k "
               "breaks positions k+1 and L−k.")
        for fig, heading, caption in (
            (position_figure(rows, length, "resid_pre", "Residual stream (hook_resid_pre)"),
             f"Residual stream by layer and position{tag}",
             "One panel per broken pair; each cell patches the residual stream entering a layer at one position. "
             f"Information about the broken pair starts at its two positions and must reach {readout} by the last "
             "layer. "),
            (position_figure(rows, length, "z", "Head output (hook_z)"), f"Heads by position{tag}",
             f"One panel per broken pair; each cell patches one head's output (hook_z) at one position. Only {readout} "
             "feeds the answer directly; red cells elsewhere matter through later layers. "),
            (position_figure(rows, length, "mlp_out", "MLP output (hook_mlp_out)"),
             f"MLPs by position{tag}",
             "One panel per broken pair; each cell patches one MLP's output at one position. "),
        ):
            if fig is not None:
                sections.append(Section(heading, caption + (READ if first else AS_ABOVE) + " " + pos, fig, data=data))
                first, pos = False, ""
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)
