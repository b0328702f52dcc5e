"""The direct-logit-attribution page: what each component (embed, pos_embed, L{l}H{h}, {l}_mlp_out, bias)
writes towards "palindrome" at the readout position (BOS or EOS), per kind, and its distribution by class around the palindrome mean."""

from __future__ import annotations

import numpy as np
import pandas as pd

from palindrome_lens.report.content import Figure
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.formatting import num
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.plots import HistPanel, grouped_bars, histograms, kind_sorted

FILENAME = "attribution.html"
TITLE = "Direct logit attribution"
NAV = "Attribution"
SUMMARY = "how much each head, MLP and embedding pushes towards 'palindrome', by kind and by class"
CLASSES = ("palindrome", "not_palindrome")


def component_order(dla: pd.DataFrame) -> list[str]:
    """Components in the order the attribute stage wrote them (embed, pos_embed, per layer heads then MLP, bias)."""
    return list(dict.fromkeys(dla["component"].tolist()))


def mean_by_kind(dla: pd.DataFrame) -> pd.DataFrame:
    """(component x kind) mean contribution, plus the mean logit difference as a last row."""
    order = component_order(dla)
    kinds = kind_sorted(dla["kind"].unique().tolist())
    table = dla.pivot_table(index="component", columns="kind", values="value", aggfunc="mean")
    table = table.reindex(index=order, columns=kinds)
    per_example = dla.drop_duplicates("example_id")
    table.loc["logit_diff (sum)"] = per_example.groupby("kind")["logit_diff"].mean().reindex(kinds)
    return table


def dla_bar(means: pd.DataFrame) -> Figure:
    components = [c for c in means.index if c != "logit_diff (sum)"]
    series = {kind: means.loc[components, kind].tolist() for kind in means.columns}
    fig = grouped_bars(components, series, "Mean direct logit attribution per component, by kind",
                       "component (TransformerLens name)", "mean contribution to the logit difference",
                       legend_title="kind")
    return Figure(fig)


def class_histograms(distributions: pd.DataFrame, order: list[str], bins: int) -> Figure:
    panels = []
    for component in order:
        rows = distributions[distributions["component"] == component]
        groups = {c: rows.loc[rows["class"] == c, "centred"].to_numpy(np.float64) for c in CLASSES
                  if (rows["class"] == c).any()}
        panels.append(HistPanel(component, groups))
    fig = histograms(panels, bins, "Per-component contribution minus its palindrome-class mean, by class (one x "
                     "scale for every panel)", "contribution − palindrome mean", "share of the class",
                     legend_title="true class", same_x=True)
    return Figure(fig)


def attribution_page(attribution: Attribution, hist_bins: int) -> Page:
    dla, summary = attribution["dla"], attribution.summary
    order = component_order(dla)
    means = mean_by_kind(dla)
    n = dla["example_id"].nunique()
    intro = (
        f"Direct logit attribution splits the model's output at {str(summary['model']['readout']).upper()}, "
        f"logit[palindrome] − logit[not palindrome], into "
        f"what each component writes into the final residual stream, with the final LayerNorm folded in exactly. "
        f"On the {n} strings of the analysis set the components add up to the model's logit difference to within "
        f"{num(summary['dla_max_abs_error'], 2)}. Positive values push towards 'palindrome'.")
    table = means.reset_index().rename(columns={"component": "component \\ kind"})
    dla_data = [Download("dla_means.csv", table, "the means shown; every string's in data/attribution/dla.parquet")]
    return Page(FILENAME, TITLE, intro, [
        Section("Mean contribution per component", (
            "Each group of bars is one component (the glossary lists the names). Bar height is the mean "
            "contribution to the logit difference over strings of that kind. A component that separates the "
            "classes has its palindrome bar far from its near1/near2/random bars."), dla_bar(means), data=dla_data),
        Section("Distributions by class, centred on palindromes", (
            f"One panel per component: histograms ({hist_bins} bins) of each string's contribution minus the mean "
            "contribution over palindromes, as a share of its class. Every panel shares one x axis, so a component "
            "whose contributions barely move is a narrow spike at 0 and one that separates the classes spreads its "
            "non-palindromes far from 0 (negative: towards 'not palindrome'). Palindromes centre on 0 by "
            "construction."), class_histograms(attribution["distributions"], order, hist_bins),
            data=[Download("distribution_stats.csv", attribution["distribution_stats"],
                           "data/attribution/distribution_stats.parquet; every string's in distributions.parquet")]),
    ], nav_label=NAV)
