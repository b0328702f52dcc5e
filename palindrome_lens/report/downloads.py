"""The tables behind the figures, as CSV files under `reports/data/`, each naming the pipeline file it comes
from (a Parquet table or a JSON document), so a reader can redraw or check any figure."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from palindrome_lens.atomic import write_text
from palindrome_lens.report.errors import ReportError

DATA_DIR = "data"
FLOAT_FORMAT = "%.7g"  # enough to redraw any figure; the Parquet file named beside the link has every digit
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.csv$")


@dataclass(frozen=True, eq=False)
class Download:
    """`frame` written as `data/<name>`; `source` is the pipeline file it is read from (shown beside the link)."""

    name: str
    frame: pd.DataFrame
    source: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ReportError(f"download {self.name!r} must look like 'name.csv' (a-z, 0-9, _ and -)")

    @property
    def href(self) -> str:
        return f"{DATA_DIR}/{self.name}"

    def csv(self) -> str:
        return self.frame.to_csv(index=False, lineterminator="\n", float_format=FLOAT_FORMAT)


def download_links(downloads: Iterable[Download]) -> str:
    """One line under a caption: each CSV linked, with the file it comes from."""
    items = [f'<a href="{d.href}" download>{html.escape(d.name)}</a> (from {html.escape(d.source)})' for d in downloads]
    return f'<p class="data">Data: {"; ".join(items)}</p>' if items else ""


def write_downloads(out_dir: str | Path, downloads: Iterable[Download]) -> list[Path]:
    """Write each CSV once; two downloads sharing a name must hold the same table."""
    texts: dict[str, str] = {}
    for d in downloads:
        text = d.csv()
        if texts.setdefault(d.name, text) != text:
            raise ReportError(f"two different tables are both offered as {d.name}")
    written = []
    for name, text in sorted(texts.items()):
        path = Path(out_dir) / DATA_DIR / name
        write_text(path, text)
        written.append(path)
    return written
