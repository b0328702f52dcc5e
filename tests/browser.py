"""A real headless Chromium, with the network cut, for checking report pages opened from disk.

    with Browser.start() as browser:
        result = browser.open_page(Path("reports/index.html"))
        assert result.ok, result.problems()

`open_page` waits until every plotly div has drawn its SVG, every CircuitsVis div has content and every
vega-embed view has drawn (or a timeout), then reports severe console entries (JS errors, failed
loads) and what rendered.
The network is cut two ways (a dead proxy, and a host resolver that resolves nothing), so a page that
tries to load from the network gets a "Failed to load resource" console error; every request the page
makes to an http(s), ws(s) or ftp URL is also listed (from the DevTools performance log).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
EXTRA_DIRS = ("/usr/bin", "/usr/lib/chromium", "/usr/lib/chromium-browser", "/snap/bin")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--window-size=1280,900",
    # No network: every proxied request goes to a closed port, and no host name resolves.
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
NETWORK_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")

_STATE_JS = """
const plots = Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => [
  d.id, d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg') !== null]);
const views = Array.from(document.querySelectorAll('div.circuitsvis')).map(d => [
  d.id, d.childElementCount > 0]);
const vega = Array.from(document.querySelectorAll('.vega-embed')).map(d => [
  d.id, d.querySelector('canvas, svg') !== null]);
return {ready: document.readyState, title: document.title, plots: plots, views: views, vega: vega,
        scripts: Array.from(document.scripts).map(s => s.getAttribute('src')).filter(s => s)};
"""


def _find(names: tuple[str, ...], env_var: str) -> str | None:
    override = os.environ.get(env_var)
    if override:
        return override if Path(override).is_file() else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in EXTRA_DIRS:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def find_chromium() -> tuple[str | None, str | None]:
    """(chromium binary, chromedriver binary); CHROMIUM_BIN / CHROMEDRIVER_BIN override the search."""
    return _find(CHROMIUM_NAMES, "CHROMIUM_BIN"), _find(CHROMEDRIVER_NAMES, "CHROMEDRIVER_BIN")


@dataclass
class PageResult:
    """What one page did in the browser."""

    path: Path
    title: str
    console_errors: list[str] = field(default_factory=list)
    plots: dict[str, bool] = field(default_factory=dict)  # plotly div id -> drew an SVG
    attention_views: dict[str, bool] = field(default_factory=dict)  # circuitsvis div id -> has content
    vega_views: dict[str, bool] = field(default_factory=dict)  # vega-embed element id -> drew canvas/svg
    script_srcs: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)  # http(s)/ws(s)/ftp URLs requested

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        out = [f"console: {message}" for message in self.console_errors]
        out += [f"network request: {url}" for url in self.network_requests]
        out += [f"plot div {div} did not render" for div, done in self.plots.items() if not done]
        out += [f"circuitsvis div {div} is empty" for div, done in self.attention_views.items() if not done]
        out += [f"vega view {div} drew nothing" for div, done in self.vega_views.items() if not done]
        return out


class Browser:
    """One headless Chromium session (fresh profile, no network); use as a context manager."""

    def __init__(self, driver: object, profile: Path) -> None:
        self.driver = driver
        self.profile = profile

    @classmethod
    def start(cls, chromium: str | None = None, chromedriver: str | None = None) -> Browser:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        found_chromium, found_driver = find_chromium()
        chromium = chromium or found_chromium
        chromedriver = chromedriver or found_driver
        if chromium is None or chromedriver is None:
            raise FileNotFoundError(f"chromium={chromium} chromedriver={chromedriver}")
        profile = Path(tempfile.mkdtemp(prefix="palindrome-lens-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        try:
            driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        except Exception:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        return cls(driver, profile)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def open_page(self, path: str | Path, timeout: float = 30.0) -> PageResult:
        """Load `path` via file://, wait for plots and attention views, return what happened."""
        path = Path(path).resolve()
        for log in ("browser", "performance"):
            self.driver.get_log(log)  # drain entries from earlier pages
        self.driver.get(path.as_uri())
        deadline = time.monotonic() + timeout
        while True:
            state = self.driver.execute_script(_STATE_JS)
            done = state["ready"] == "complete" and all(ok for _, ok in state["plots"] + state["views"] + state["vega"])
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.2)  # let late errors (async renders) reach the log
        state = self.driver.execute_script(_STATE_JS)
        errors = [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]
        requests = self._requested_urls()
        return PageResult(
            path=path,
            title=state["title"],
            console_errors=errors,
            plots=dict(state["plots"]),
            attention_views=dict(state["views"]),
            vega_views=dict(state["vega"]),
            script_srcs=list(state["scripts"]),
            network_requests=[url for url in requests if url.lower().startswith(NETWORK_SCHEMES)],
        )

    def _requested_urls(self) -> list[str]:
        """URLs of requests and websockets since the last drain, in order, from the performance log."""
        urls = []
        for entry in self.driver.get_log("performance"):
            event = json.loads(entry["message"])["message"]
            if event["method"] == "Network.requestWillBeSent":
                urls.append(event["params"]["request"]["url"])
            elif event["method"] == "Network.webSocketCreated":
                urls.append(event["params"]["url"])
        return urls
