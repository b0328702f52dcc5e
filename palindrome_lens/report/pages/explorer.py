"""The explorer page: one string at a time, opening on a failure found from the mechanism. A reader filters
those failures, the misclassified test strings, fooling edits and analysis strings by source or kind, broken pair
and margin, picks one, and sees its logit difference, its DLA by component, what patching each node from its
counterpart does, and every head's attention. Static and offline: the data is one script under data/, drawn by
assets/explorer.js with plotly and CircuitsVis."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from palindrome_lens.attribution.per_example import FOOLING, FOUND, MAX_SHOWN, MISCLASSIFIED
from palindrome_lens.report.content import ExplorerPicker, ExplorerView
from palindrome_lens.report.explorer import explorer_payload
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution

FILENAME = "explorer.html"
TITLE = "Explorer: one string at a time"
NAV = "Explorer"
SUMMARY = ("opens on the failures found from the mechanism; filter every string by source, kind, broken pair and "
           "margin: each one's logit difference, DLA, per-node patching and every head's attention")


def explorer_page(attribution: Attribution, views: Mapping[str, pd.DataFrame] | None = None) -> Page:
    payload, attention, strings = explorer_payload(attribution, views)
    counts = strings["source"].value_counts()
    n_found, n_wrong, n_fooling = (int(counts.get(s, 0)) for s in (FOUND, MISCLASSIFIED, FOOLING))
    readout = payload["readout"]
    opening = ("It opens on the failure found from the mechanism that the model gets most confidently wrong."
               if n_found else "It opens on the misclassified string with the most confident wrong answer."
               if n_wrong or n_fooling else "No test string or single edit is misclassified, so it opens on a string "
               "with one broken pair.")
    intro = (f"The failures found from the mechanism ({n_found}: strings the explanation's programs proposed as weak "
             "spots that the model gets wrong; Explanation page, 'Where it breaks'), the misclassified test strings "
             f"({n_wrong}), the fooling edits ({n_fooling}; at most {MAX_SHOWN} of each, most confidently wrong first) "
             f"and every analysis string ({int(counts.get('analysis string', 0))}), each with the numbers the other "
             f"pages average. {opening} Narrow the list by source or kind, by a broken pair and by margin (the logit "
             "difference signed towards the true class: below 0 = wrong), then pick a string: every figure below "
             "follows it. The numbers are in data/attribution/example_*.parquet and, for the failures found from the "
             "mechanism, data/explanation/failure_views/.")
    longest = int(strings["text"].str.len().max()) if len(strings) else 0
    return Page(FILENAME, TITLE, intro, [
        Section("Pick a string", (
            "The string with its broken mirrored pairs highlighted, the true class, the model's answer (the logit "
            f"difference at {readout}) and the counterpart the patching below starts from."),
            ExplorerPicker(payload, attention, longest // 2), anchor="pick"),
        Section("What each component writes", (
            f"Direct logit attribution of this one string: each bar is what a component writes towards "
            f"'palindrome' (red, up) or 'not' (blue, down) at {readout}; the bars add up to the logit difference."),
            ExplorerView("dla"), anchor="dla"),
        Section("Patching one node at a time", (
            "Each bar replaces one node's activation by its value on the counterpart and shows the recovery: the "
            "share of the way from this string's logit difference to the counterpart's that this node alone moves "
            "it (1 = all the way, 0 = not at all). Dark bars are circuit nodes. For a string the model gets wrong, "
            "the nodes that move it are where the error is carried. Where the model answers the string and its "
            "counterpart alike (a failure found from the mechanism) there is no gap to share, so the bars show "
            "the logit difference after patching instead."),
            ExplorerView("patching"), anchor="patching"),
        Section("Attention of every head", (
            "CircuitsVis view of every head on this string: pick a head; rows are query positions, columns the "
            "positions they attend to, darker = more attention. Nothing is masked (the model's own attention "
            "direction applies). Patterns are stored in steps of 1/63."),
            ExplorerView("attention"), anchor="attention"),
    ], nav_label=NAV)
