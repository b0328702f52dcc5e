"""Full-page PNG screenshots of every report page at 1400 px width, for reviewing the pages without running the
pipeline. Opens each page from disk in headless Chromium with the network cut (tests/browser.py), waits until
every figure has drawn, and prints each page's size and any problem the page showed.

    python scripts/screenshots.py [--reports reports] [--out screenshots] [--width 1400]
    make screenshots
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import Browser  # noqa: E402

MAX_HEIGHT = 30000  # px; Chromium refuses larger captures


def capture(browser: Browser, page: Path, out: Path, width: int) -> list[str]:
    """Open `page`, write its full-page screenshot to `out`; return the problems the page showed."""
    driver = browser.driver
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    result = browser.open_page(page)
    height = min(MAX_HEIGHT, int(driver.execute_script("return document.documentElement.scrollHeight")))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_script("window.dispatchEvent(new Event('resize'))")  # responsive plots refit the width
    driver.execute_script("return new Promise(r => setTimeout(r, 500))")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": {"x": 0, "y": 0, "width": width,
                                                                      "height": height, "scale": 1}})
    out.write_bytes(base64.b64decode(shot["data"]))
    return result.problems()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", default=str(ROOT / "reports"))
    parser.add_argument("--out", default=str(ROOT / "screenshots"))
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    pages = sorted(Path(args.reports).glob("*.html"))
    if not pages:
        print(f"no pages in {args.reports}; run `dvc repro` first", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with Browser.start() as browser:
        for page in pages:
            target = out / f"{page.stem}.png"
            problems = capture(browser, page, target, args.width)
            failed += bool(problems)
            print(f"{page.name:18s} {page.stat().st_size:>10,d} bytes  ->  {target}"
                  + ("" if not problems else f"  PROBLEMS: {'; '.join(problems)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
