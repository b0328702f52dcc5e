"""Shared fixtures: a temp git+DVC copy of the repo with the tiny params profile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from palindrome_lens.stage import prefer_fast_cpu_kernels

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "tiny_params.yaml"
BIN = Path(sys.executable).parent
os.environ.setdefault("PALINDROME_LENS_QUIET", "1")
prefer_fast_cpu_kernels()  # as every stage does (palindrome_lens/stage.py), before the first tensor
# One intra-op thread for the models run in the test process (stages run by `run` keep torch's default): the test
# models are tiny, and two threads spent most of their time waiting on each other (test_attribution_summary.py:
# 66 s of CPU with two, 15 s with one, on 2 cores). It also fixes the count for the whole session: before, it
# changed mid-run when test_explanation_string_level.py set it, so a test's thread count depended on the order.
torch.set_num_threads(1)


def tiny_params() -> dict:
    return yaml.safe_load(TINY.read_text())


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900, extra_env: dict | None = None,
        **kw) -> subprocess.CompletedProcess:
    """Run a command with the venv's binaries first on PATH (dvc runs `python -m stages.X`)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PALINDROME_LENS_QUIET": "1",
           **(extra_env or {})}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tracked_files() -> list[str]:
    """What a fresh clone has: tracked files plus untracked files that git does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


def make_repo_copy(dest: Path, params: dict | None = None) -> Path:
    """Copy the project into `dest` as a fresh git repo (one commit) with `params` as params.yaml."""
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q"], dest)
    commit_all(dest, "copy")
    return dest


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A fresh tiny-profile copy of the project (nothing run yet)."""
    return make_repo_copy(tmp_path / "repo")


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline reproduced once with `dvc repro` on the tiny profile; shared read-only."""
    repo = make_repo_copy(tmp_path_factory.mktemp("pipeline") / "repo")
    run(["dvc", "repro"], repo)
    commit_all(repo, "tiny pipeline results")
    return repo


# A fixed author and date: two copies of the same tree get the same commit, which the report's provenance names.
GIT_DATE = "2026-01-01T00:00:00+00:00"


def commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], repo,
        extra_env={"GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE})


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201  # ReportInputs
    """The report's synthetic pipeline outputs (tests/report_outputs.write_all with its defaults), loaded once per
    session and shared read-only by the report tests (a test that edits inputs writes its own with write_all)."""
    from palindrome_lens.report.inputs import load_inputs
    from tests.report_outputs import write_all

    return load_inputs(write_all(tmp_path_factory.mktemp("synthetic")))


@pytest.fixture(scope="session")
def synthetic_pages(synthetic):  # noqa: ANN001, ANN201
    """`synthetic_pages(n_examples=3, hist_bins=7)`: report_pages(synthetic, n_examples, hist_bins), built once per
    session for each (n_examples, hist_bins) and shared read-only (a new list of the same pages each call)."""
    from palindrome_lens.report.pages import report_pages

    built: dict[tuple[int, int], list] = {}

    def pages(n_examples: int = 3, hist_bins: int = 7) -> list:
        if (n_examples, hist_bins) not in built:
            built[n_examples, hist_bins] = report_pages(synthetic, n_examples, hist_bins)
        return list(built[n_examples, hist_bins])

    return pages


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium with the network cut (tests/browser.py); skips only if it cannot be found."""
    from tests.browser import Browser, find_chromium

    chromium, chromedriver = find_chromium()
    if chromium is None or chromedriver is None:
        pytest.skip(
            f"headless browser not found (chromium={chromium}, chromedriver={chromedriver}); "
            "install with `make browser` (apt-get install chromium chromium-driver) or set CHROMIUM_BIN/CHROMEDRIVER_BIN"
        )
    with Browser.start(chromium, chromedriver) as started:
        yield started
