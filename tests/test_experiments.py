"""Sharing and experimenting the DVC way: a local remote with the run-cache, and `dvc exp run -S`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run

pytestmark = pytest.mark.slow  # the whole tiny pipeline, dvc push/pull and dvc exp run


@pytest.fixture(scope="module")
def remote(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local-directory DVC remote holding the tiny pipeline's outputs and run-cache."""
    path = tmp_path_factory.mktemp("remote")
    run(["dvc", "remote", "add", "--local", "-f", "-d", "shared", str(path)], tiny_pipeline)
    run(["dvc", "push", "--run-cache"], tiny_pipeline)
    return path


def _clone(source: Path, dest: Path, remote: Path) -> Path:
    run(["git", "clone", "-q", str(source), str(dest)], dest.parent)
    run(["dvc", "remote", "add", "--local", "-d", "shared", str(remote)], dest)
    return dest


def test_fresh_clone_pulls_results_instead_of_recomputing(tiny_pipeline, remote, tmp_path) -> None:
    clone = _clone(tiny_pipeline, tmp_path / "clone", remote)
    run(["dvc", "pull", "--run-cache"], clone)
    repro = run(["dvc", "repro"], clone)
    assert "> python -m stages." not in repro.stdout, repro.stdout
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}
    assert (clone / "data" / "model" / "model.safetensors").read_bytes() == (
        tiny_pipeline / "data" / "model" / "model.safetensors"
    ).read_bytes()


def test_exp_run_with_a_set_param_shows_in_exp_show_and_compare_reads_it(tiny_pipeline, remote, tmp_path,
                                                                         browser) -> None:
    clone = _clone(tiny_pipeline, tmp_path / "clone", remote)
    run(["dvc", "pull"], clone)
    out = run(["dvc", "exp", "run", "-n", "lr-up", "-S", "train.lr=0.005"], clone)
    assert "> python -m stages.train" in out.stdout and "> python -m stages.generate" not in out.stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json"], clone).stdout)
    exps = [exp for baseline in shown for exp in (baseline.get("experiments") or [])]
    named = [e for e in exps if e.get("name") == "lr-up"]
    assert named, shown
    data = named[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.005
    metrics = data["metrics"]
    assert "accuracy" in json.dumps(metrics["data/eval/metrics.json"]["data"])

    # A second experiment, then the cross-experiment comparison over all of them.
    run(["dvc", "exp", "run", "-n", "one-head", "-S", "model.n_heads=1"], clone)
    out = run(["python", "-m", "palindrome_lens.compare"], clone)
    assert "3 runs" in out.stdout or "4 runs" in out.stdout, out.stdout
    page = clone / "reports" / "experiments.html"
    text = page.read_text()
    for name in ("lr-up", "one-head", "model.n_heads", "train.lr", "circuit heads", "Mirror score per head"):
        assert name in text
    result = browser.open_page(page)
    assert not result.console_errors and not result.network_requests
    assert result.plots and all(result.plots.values())
