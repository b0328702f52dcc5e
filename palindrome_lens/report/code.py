"""Source code shown in a report section, highlighted by Pygments with inline styles (no stylesheet to load)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


@dataclass(frozen=True, eq=False)
class Code:
    """Python source, escaped and highlighted; `start` numbers its first line."""

    source: str
    start: int = 1
    kind: ClassVar[str] = "code"
    scripts: ClassVar[tuple[str, ...]] = ()  # plain HTML: no script to load

    def to_html(self, div_id: str, where: str) -> str:
        formatter = HtmlFormatter(noclasses=True, linenos="inline", linenostart=self.start, style="default")
        return f'<div id="{div_id}" class="code">{highlight(self.source, PythonLexer(), formatter)}</div>'
