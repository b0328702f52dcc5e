"""pandas DataFrames as plain, escaped HTML tables."""

from __future__ import annotations

import html
import math
import numbers

import pandas as pd


def format_cell(value: object, digits: int) -> tuple[str, bool]:
    """(escaped text, is numeric) for one cell; floats use `digits` significant digits, missing -> ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "", False
    if isinstance(value, bool):
        return str(value).lower(), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}g}", True
    return html.escape(str(value)), False


def table_html(df: pd.DataFrame, *, index: bool = False, digits: int = 4) -> str:
    """`df` as an escaped `<table>` (with the index as the first column when `index`)."""
    frame = df.reset_index() if index else df
    head = "".join(f"<th>{html.escape(str(col))}</th>" for col in frame.columns)
    rows = []
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for value in row:
            text, numeric = format_cell(value, digits)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    body = "\n".join(rows)
    return f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'
