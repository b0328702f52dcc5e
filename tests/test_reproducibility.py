"""Determinism of the whole pipeline, and DVC's view of it: same params -> identical outputs; a second
`dvc repro` does nothing; the committed dvc.lock agrees with dvc.yaml and params.yaml."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_repo_copy, run

# Plotly/circuitsvis can embed random ids; our report code sets ids itself, so nothing is stripped
# unless a pattern is listed here (exactly that, and nothing else).
VOLATILE: list[re.Pattern[str]] = []


PROVENANCE = re.compile(r'<section id="provenance">.*?</section>', re.S)  # names the commit and changed params


def _outputs(repo: Path, without_provenance: bool = False) -> dict[str, str]:
    files = sorted(p for d in ("data", "reports") for p in (repo / d).rglob("*") if p.is_file())
    out = {}
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".html":
            text = data.decode("utf-8")
            for pattern in VOLATILE + ([PROVENANCE] if without_provenance else []):
                text = pattern.sub("", text)
            data = text.encode("utf-8")
        out[str(path.relative_to(repo))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow  # two whole tiny pipelines
def test_two_full_runs_give_identical_outputs_and_repro_is_then_a_no_op(tiny_pipeline, tmp_path) -> None:
    second = make_repo_copy(tmp_path / "second")
    run(["dvc", "repro"], second)
    first_outputs, second_outputs = _outputs(tiny_pipeline), _outputs(second)
    assert set(first_outputs) == set(second_outputs)
    differ = [k for k in first_outputs if first_outputs[k] != second_outputs[k]]
    assert not differ, f"outputs differ between identical runs: {differ}"
    again = run(["dvc", "repro"], second)
    assert "didn't change, skipping" in again.stdout or "up to date" in again.stdout
    assert "Running stage" not in again.stdout
    status = json.loads(run(["dvc", "status", "--json"], second).stdout)
    assert status == {}


def test_committed_lock_agrees_with_dvc_yaml_and_params() -> None:
    """A fresh clone has no data, so missing outputs are expected (deps "deleted", outs "not in cache");
    changed params, code or commands are not."""
    status = json.loads(run(["dvc", "status", "--json"], ROOT).stdout)
    stale = []
    for stage, changes in status.items():
        for change in changes:
            if isinstance(change, dict):
                for kind, detail in change.items():
                    if kind == "changed command" or (kind in ("changed deps", "changed outs") and any(
                        state not in ("deleted", "not in cache") for state in _states(detail)
                    )):
                        stale.append(f"{stage}: {kind}: {detail}")
            elif change == "changed checksum":
                stale.append(f"{stage}: dvc.yaml changed since dvc.lock was written")
    assert not stale, "dvc.lock is stale; run `dvc repro` and commit dvc.lock:\n" + "\n".join(stale)


def _states(detail) -> list[str]:
    states = []
    for value in (detail or {}).values():
        if isinstance(value, dict):  # params: {"params.yaml": {"data.n_train": "modified"}}
            states += [str(v) for v in value.values()]
        else:
            states.append(str(value))
    return states


@pytest.mark.slow  # the stages that run the model, again
def test_device_auto_gives_the_same_bytes_as_the_device_it_resolves_to(tiny_pipeline, tmp_path) -> None:
    """The tiny profile says `device: cpu`; on a machine without CUDA `auto` resolves to the CPU, so every
    stage that reads `device` reruns (DVC tracks it) and must write exactly the same bytes."""
    import shutil

    import torch
    import yaml

    if torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA here; the CPU bytes are compared on a machine without a GPU")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_pipeline, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    assert params["device"] == "cpu"
    params["device"] = "auto"
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], copy)
    for stage in ("train", "evaluate", "extract", "attribute", "explain"):
        assert f"> python -m stages.{stage}" in out.stdout, stage  # the param is tracked: they rerun
    # The index's provenance says `device: auto` now (and names the fixture's later commit): everything else is equal.
    assert _outputs(copy, without_provenance=True) == _outputs(tiny_pipeline, without_provenance=True)
    assert "device: auto (committed: cpu)" in (copy / "reports" / "index.html").read_text()
