"""The published-mechanism page: ARENA's July 2023 palindrome findings beside this run's numbers, point by
point, with each point's rule and verdict (report/published.py). For a run whose setup is not ARENA's the
points are still measured, and marked not comparable."""

from __future__ import annotations

import pandas as pd

from palindrome_lens.report.content import Table, Text
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.published import compare, comparison_table, published_findings, setup_differences

FILENAME = "published.html"
TITLE = "Published mechanism: ARENA's palindromes"
NAV = "Published"
SUMMARY = "ARENA's published palindrome mechanism (July 2023) beside this run's numbers, point by point"


def published_page(tables: Attribution) -> Page:
    published = published_findings()
    differences = setup_differences(tables.summary["model"], published)
    points = compare(tables.summary, tables.circuit, tables.tables)
    setup = pd.DataFrame([{"setting": key, "published": str(value), "this run": str(tables.summary["model"].get(key))}
                          for key, value in published["setup"].items()])
    verdicts = pd.Series([p.verdict for p in points]).value_counts()
    if differences:
        status = ("This run's setup is not ARENA's (" + "; ".join(differences) + "), so the points below are "
                  "measured but marked not comparable. Run params/arena.yaml (see README) to compare.")
    else:
        status = (f"This run uses ARENA's setup. Of {len(points) - int(verdicts.get('new', 0))} published points, "
                  f"{int(verdicts.get('agrees', 0))} agree and {int(verdicts.get('differs', 0))} differ; "
                  "a difference is a result, stated with its numbers.")
    intro = (f"{published['source']}. Each point is measured from this run's attribute outputs with the rule given "
             "in the caption; heads are named as TransformerLens does (ARENA's 0.0 is L0H0), and heads within a layer "
             "are interchangeable, so a point about 0.0 is checked on whichever layer-0 head plays that part here.")
    return Page(FILENAME, TITLE, intro, [
        Section("Verdict", "Whether this run can be compared with the published setup, and how the points came out.",
                Text(status)),
        Section("Point by point", (
            "Rules: mirror head = a layer-0 head with mirror score >= 0.5 (over the positions that can see their "
            "mirror); reader = the layer-1 head whose attention from the readout to a mismatched second-half "
            "position is highest relative to a matched one, agreeing at >= 2x; composition agrees when both K- and "
            "V-composition of mirror into reader exceed the 95th percentile of random matrices; mean ablation "
            "agrees when mean-ablating the mirror or the reader loses >= 80% of the class-balanced margin and every "
            "other head <= 20%; zero ablation misleads when zeroing the other layer-0 head loses >= 30 points more "
            "of the margin than mean-ablating it; adversarial examples are near the end when >= 70% of the "
            "misclassified single edits (with none, the 20 weakest) break one of the outer half of the pairs."), Table(comparison_table(points))),
        Section("Setup", "The published setup beside this run's model (from summary.json).", Table(setup)),
    ], nav_label=NAV)
