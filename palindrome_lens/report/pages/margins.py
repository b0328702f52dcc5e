"""The margin, and the two tables of the pages that list scored strings (evaluation, adversarial): the
misclassified rows, most confidently wrong first, and the correct rows closest to the wrong side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from palindrome_lens.report.content import Table, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.formatting import count
from palindrome_lens.report.html import Section

MARGIN = "logit difference signed towards the true class"


def with_margin(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` plus `margin`: `logit_diff` signed towards the true class `label` (< 0 = misclassified)."""
    return rows.assign(margin=np.where(rows["label"], rows["logit_diff"], -rows["logit_diff"]).astype("float64"))


def margin_sections(rows: pd.DataFrame, n: int, *, order: Sequence[str], columns: Sequence[str],
                    things: str, thing: str, wrong_caption: str, close_caption: str,
                    data: tuple[str, str], headers: Mapping[str, str] | None = None) -> list[Section]:
    """'Misclassified {things}' and 'Closest calls', `n` rows each, from `rows` with `margin` and `correct`.

    Rows are ordered by margin, ties by `order`; the tables show `columns`, renamed by `headers`. `thing`
    is the singular of `things` as the headings use it ('test strings' / 'string'). `data` (CSV name, pipeline
    file) writes the rows both tables show as one CSV, beside the pipeline file that holds every row.
    """
    ordered = rows.sort_values(["margin", *order], kind="stable")
    wrong, right = ordered[~ordered["correct"]], ordered[ordered["correct"]]

    def table(part: pd.DataFrame) -> Table:
        return Table(part[list(columns)].head(n).rename(columns=dict(headers or {})).reset_index(drop=True))

    shown = pd.concat([wrong.head(n), right.head(n)])[list(columns)]
    csv = [Download(data[0], shown, f"the rows shown; all {len(rows)} in {data[1]}")]
    if len(wrong):
        misclassified = Section(f"Misclassified {things} ({min(n, len(wrong))} of {len(wrong)})", wrong_caption,
                                table(wrong), data=csv)
    else:
        misclassified = Section(f"Misclassified {things}", f"{things.capitalize()} the model gets wrong.",
                                Text(f"None: all {len(rows)} {things} are classified correctly."))
    closest = Section(f"Closest calls ({count(min(n, len(right)), f'correct {thing}')} with the smallest margin)",
                      close_caption, table(right) if len(right) else Text(f"No {thing} is classified correctly."),
                      data=csv)
    return [misclassified, closest]
