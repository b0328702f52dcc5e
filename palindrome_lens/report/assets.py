"""The JavaScript every report page loads from disk: plotly.js and the CircuitsVis bundle, shipped once.

Pages reference them relatively (`assets/plotly.min.js`), so a report folder opens from `file://` with
no network.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import re
from pathlib import Path

from palindrome_lens.atomic import write_text
from palindrome_lens.report.errors import ReportError

ASSETS_DIR = "assets"
PLOTLY_JS = f"{ASSETS_DIR}/plotly.min.js"
CIRCUITSVIS_JS = f"{ASSETS_DIR}/circuitsvis.js"
EXPLORER_JS = f"{ASSETS_DIR}/explorer.js"  # the explorer page's own script (palindrome_lens/report/assets/)
SCRIPT_ORDER = (PLOTLY_JS, CIRCUITSVIS_JS, EXPLORER_JS)  # a page loads the ones its sections need, in this order

_SOURCE_MAP = re.compile(r"\n?//# sourceMappingURL=\S*\s*$")


@functools.cache
def plotly_js() -> str:
    """The plotly.js bundle that ships with the installed plotly package."""
    import plotly.offline

    return plotly.offline.get_plotlyjs()


@functools.cache
def circuitsvis_js() -> str:
    """CircuitsVis's self-contained browser bundle (the code its `local_src` inlines), as a classic script.

    It defines the global `CircuitsVis`. The source-map comment is dropped: the .map is not shipped.
    Found without importing circuitsvis (which imports torch).
    """
    spec = importlib.util.find_spec("circuitsvis")
    if spec is None or not spec.submodule_search_locations:
        raise ReportError("circuitsvis is not installed; run `pip install circuitsvis`")
    bundle = Path(next(iter(spec.submodule_search_locations))) / "dist" / "cdn" / "iife.js"
    if not bundle.is_file():
        raise ReportError(f"circuitsvis browser bundle not found at {bundle}; reinstall circuitsvis")
    return _SOURCE_MAP.sub("", bundle.read_text(encoding="utf-8")).rstrip() + "\n"


def explorer_js() -> str:
    """The explorer's script, shipped with the package."""
    return importlib.resources.files("palindrome_lens.report").joinpath(EXPLORER_JS).read_text(encoding="utf-8")


def write_assets(out_dir: str | Path) -> list[Path]:
    """Write `assets/plotly.min.js`, `assets/circuitsvis.js` and `assets/explorer.js` under `out_dir`; return their
    paths."""
    written = []
    for rel, text in ((PLOTLY_JS, plotly_js()), (CIRCUITSVIS_JS, circuitsvis_js()), (EXPLORER_JS, explorer_js())):
        path = Path(out_dir) / rel
        write_text(path, text)
        written.append(path)
    return written
