"""End to end: the report of a real tiny pipeline run (`dvc repro` in a temp copy), opened from disk in
headless Chromium with the network cut; report.* params rerun only `report`; reruns are byte-identical."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from palindrome_lens.report.pages import PAGE_FILES
from tests.browser import Browser
from tests.conftest import run

pytestmark = pytest.mark.slow
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)
MIN_PLOTS = {"index.html": 1, "evaluation.html": 4, "attribution.html": 2, "patching.html": 4,
             "attention.html": 7, "ablation.html": 5, "circuit.html": 3, "discovery.html": 2, "explorer.html": 2,
             "adversarial.html": 1,
             "explanation.html": 0}  # the tiny model supports no hypothesis: no program (test_explanation_report)


def page_bytes(repo: Path) -> dict[str, bytes]:
    return {name: (repo / "reports" / name).read_bytes() for name in PAGE_FILES}


def test_repro_writes_every_page_and_leaves_the_pipeline_up_to_date(tiny_pipeline: Path) -> None:
    for name in PAGE_FILES:
        text = (tiny_pipeline / "reports" / name).read_text()
        assert 'src="http' not in text and REMOTE.search(text) is None, name
    assert (tiny_pipeline / "reports/assets/plotly.min.js").is_file()
    assert (tiny_pipeline / "reports/assets/circuitsvis.js").is_file()
    status = json.loads(run(["dvc", "status", "--json"], tiny_pipeline).stdout or "{}")
    assert status == {}  # every dep and out of `report` is declared and current
    lock = yaml.safe_load((tiny_pipeline / "dvc.lock").read_text())["stages"]["report"]
    assert sorted(Path(o["path"]).name for o in lock["outs"]) == sorted([*PAGE_FILES, "assets", "data"])


def test_every_page_renders_offline_without_errors(browser: Browser, tiny_pipeline: Path) -> None:
    for name in PAGE_FILES:
        result = browser.open_page(tiny_pipeline / "reports" / name)
        assert result.problems() == [], name
        assert result.network_requests == [], name
        assert len(result.plots) >= MIN_PLOTS[name] and all(result.plots.values()), (name, result.plots)
        assert all(src.startswith(("assets/", "data/")) for src in result.script_srcs), (name, result.script_srcs)
        if name == "attention.html":  # one CircuitsVis view per kind of the longest length
            assert len(result.attention_views) == 4 and all(result.attention_views.values())
        elif name == "explorer.html":  # one view, of the picked string
            assert len(result.attention_views) == 1 and all(result.attention_views.values())
        else:
            assert result.attention_views == {}, name
        for href in browser.driver.execute_script(
                "return Array.from(document.querySelectorAll('a[download]')).map(a => a.getAttribute('href'))"):
            assert len(pd.read_csv(tiny_pipeline / "reports" / href)) > 0, (name, href)


def test_provenance_names_the_commit_and_the_model_dvc_lock_records(tiny_pipeline: Path) -> None:
    """The report stage reads dvc.lock mid-repro: train's entry is already there, and the page names it."""
    index = (tiny_pipeline / "reports" / "index.html").read_text()
    provenance = index.split('<section id="provenance">')[1].split("</section>")[0]
    copy_commit = run(["git", "rev-list", "--max-parents=0", "HEAD"], tiny_pipeline).stdout.strip()
    lock = yaml.safe_load((tiny_pipeline / "dvc.lock").read_text())["stages"]["train"]["outs"]
    model = next(o["md5"] for o in lock if o["path"] == "data/model")
    assert copy_commit[:12] in provenance and "(copy)" in provenance  # HEAD when the report ran
    assert f">{model}</td>" in provenance and provenance.count(">none</td>") == 2  # no code or params changed
    steps = index.split('<ol id="steps-1" class="steps">')
    assert len(steps) == 2 or "No step of an algorithm is established" in index


def test_report_params_rerun_only_report_and_reruns_are_byte_identical(tiny_pipeline: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_pipeline, repo, symlinks=True)
    # Back to the commit the pages were written at (the fixture committed its results since): the same inputs.
    run(["git", "reset", "-q", "--soft", run(["git", "rev-list", "--max-parents=0", "HEAD"], repo).stdout.strip()], repo)
    before = page_bytes(repo)
    out = run(["dvc", "repro", "--force", "--single-item", "report"], repo).stdout
    assert out.count("Running stage") == 1 and "Running stage 'report'" in out
    assert page_bytes(repo) == before  # same inputs, same bytes

    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["report"]["n_examples"] != 1
    params["report"]["n_examples"] = 1
    params["report"]["hist_bins"] = 7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], repo).stdout)
    assert set(status) == {"report"}, status
    changed = status["report"][0]["changed deps"]["params.yaml"]
    assert set(changed) == {"report.n_examples", "report.hist_bins"}
    out = run(["dvc", "repro"], repo).stdout
    assert re.findall(r"Running stage '(\w+)'", out) == ["report"], out
    after = page_bytes(repo)
    assert after["circuit.html"] == before["circuit.html"]  # reads no report.* param
    evaluation = after["evaluation.html"].decode()
    closest = evaluation.split("Closest calls")[-1].split("</table>")[0]
    assert closest.count("<tr>") == 2  # header + n_examples=1 row
    assert "each of 7 bins" in evaluation and after["attribution.html"] != before["attribution.html"]
    assert "report.n_examples: 1 (committed: 5)" in after["index.html"].decode()  # the provenance says so
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}") == {}
