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
    for name in ("lr-up", "one-head", "model.n_heads", "train.lr", "circuit nodes", "faithfulness", "Circuit edges",
                 "Mirror score per head", "Same circuit?", "circuit graph"):
        assert name in text
    result = browser.open_page(page)
    assert not result.console_errors and not result.network_requests
    assert result.plots and all(result.plots.values())


def test_dvc_api_exp_show_cannot_replace_exp_show_json(tiny_pipeline, remote, tmp_path) -> None:
    """Why compare reads `dvc exp show --json` and not dvc.api.exp_show(): the API's flat rows pass every cell
    through text and float(), so params lose their types (an int comes back a float; true, null and lists
    come back as strings; an all-digit alphabet comes back a number), the baseline is named by its branch
    with no commit, and nothing says which file a metric came from. If this fails, compare can switch."""
    import dvc.api

    from palindrome_lens.compare import _flatten, exp_show, list_runs

    clone = _clone(tiny_pipeline, tmp_path / "clone", remote)
    run(["dvc", "pull", "data/eval/metrics.json", "data/train/metrics.json"], clone)
    text = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(text.replace("alphabet: abcdefgh", "alphabet: '0123456789'"))  # valid

    runs = {name: (rev, data) for name, rev, data in list_runs(exp_show(clone))}
    ours = _flatten(runs["workspace"][1]["params"]["params.yaml"]["data"])
    keys = ("seed", "data.alphabet", "tokenize.add_eos", "model.d_head", "data.lengths")
    assert [ours[k] for k in keys] == [0, "0123456789", True, None, [5, 6]] and type(ours["seed"]) is int

    rows = dvc.api.exp_show(repo=str(clone))
    workspace, baseline = rows[0], rows[1]
    assert workspace["rev"] == "workspace"
    assert [workspace[k] for k in keys] == [0.0, 123456789.0, "True", "None", "[5, 6]"]
    assert type(workspace["seed"]) is float
    branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], clone).stdout.strip()
    commit = runs[branch][0]
    assert baseline["rev"] == branch and not {commit, commit[:7]} & {str(v) for v in baseline.values()}
    # eval's accuracy and train's step sit beside the params, with no file named
    assert {"accuracy", "step", "seed"} <= set(workspace) and not any(":" in key for key in workspace)


def test_a_causal_model_read_at_eos_runs_end_to_end_as_an_experiment(tiny_pipeline, remote, tmp_path,
                                                                       browser) -> None:
    """`dvc exp run -S` turns the tiny profile into ARENA's kind of model (causal, class read at END, redraw
    negatives): every stage reruns, every analysis reads the EOS readout, and the pages open offline."""
    from palindrome_lens.report.pages import PAGE_FILES

    clone = _clone(tiny_pipeline, tmp_path / "clone", remote)
    run(["dvc", "pull"], clone)
    out = run(["dvc", "exp", "run", "-n", "causal-eos", "-S", "model.attention_dir=causal", "-S", "model.readout=eos",
               "-S", "data.negative_mix={near1: 0.3, near2: 0.0, random: 0.0, redraw: 0.7}",
               "-S", "attribute.node_positions=halves"], clone)
    for stage in ("generate", "train", "evaluate", "extract", "attribute", "report"):
        assert f"> python -m stages.{stage}" in out.stdout, stage
    config = json.loads((clone / "data" / "model" / "config.json").read_text())
    assert config["attention_dir"] == "causal" and config["readout"] == "eos"
    metrics = json.loads((clone / "data" / "eval" / "metrics.json").read_text())
    assert "redraw" in metrics["kind"] and metrics["n"] > 0
    summary = json.loads((clone / "data" / "attribution" / "summary.json").read_text())
    circuit = json.loads((clone / "data" / "attribution" / "circuit.json").read_text())
    assert summary["model"]["readout"] == "eos" and summary["model"]["attention_dir"] == "causal"
    assert summary["dla_max_abs_error"] < 1e-4  # DLA folded at EOS sums to the logit difference there
    assert summary["patching"]["full_resid_pre_recovery_min"] == pytest.approx(1.0, abs=1e-3)
    last = summary["model"]["n_layers"] - 1
    assert all(n.endswith("@eos") for n in circuit["search"]["candidates"] if n.startswith(f"L{last}H"))
    assert {e["to"] for e in circuit["edges"] if e["via"] == "logits"} <= {"logits"}
    assert all(e["from"].endswith("@eos") for e in circuit["edges"] if e["via"] == "logits")
    for name in PAGE_FILES:
        result = browser.open_page(clone / "reports" / name)
        assert result.problems() == [] and result.network_requests == [], (name, result.problems())
    assert "EOS" in (clone / "reports" / "index.html").read_text()
