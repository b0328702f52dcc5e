"""pandas DataFrames as escaped HTML tables, rendered by pandas' Styler (which needs jinja2)."""

from __future__ import annotations

import html
import numbers

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from palindrome_lens.report.formatting import missing

NUMBER_CLASS = "num"  # the page's CSS aligns these cells right


def is_number(value: object) -> bool:
    """A number shown as one (booleans and missing values are not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and not missing(value)


def cell_text(value: object, digits: int) -> str:
    """One cell, escaped: booleans 'true'/'false', integers in full, other numbers to `digits` significant digits."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}g}"
    return html.escape(str(value))


def table_html(df: pd.DataFrame, table_id: str, *, index: bool = False, digits: int = 4) -> str:
    """`df` as a `<table>` with id `T_{table_id}` (with the index as the first column when `index`); missing
    cells are blank."""
    frame = df.reset_index() if index else df
    styler = Styler(frame, uuid=table_id, cell_ids=False)
    styler.hide(axis="index")
    styler.format(lambda value: cell_text(value, digits), na_rep="")
    styler.format_index(lambda name: html.escape(str(name)), axis="columns")
    styler.set_td_classes(frame.map(lambda value: NUMBER_CLASS if is_number(value) else ""))
    return f'<div class="table-wrap">{styler.to_html()}</div>'
