"""`compare` shows each run's explanation ladder: the passing level (or none and what the closest fails), its
size against the model's, each level's edits figures, the failures found and the graded Spearman; runs whose
summary predates the ladder still compare."""

from __future__ import annotations

from pathlib import Path

from palindrome_lens.compare import Run, build_page, ladder_table, ladder_verdict, level_table


def level(name: str, n_read: int, n_fitted: int, spearman: float, r2: float, failed: list[str]) -> dict:
    return {"name": name, "n_read": n_read, "n_fitted": n_fitted, "n_total": n_read + n_fitted, "n_model": 1000,
            "agreement_edits": 0.99, "model_errors": 40, "error_recall": 0.5, "error_precision": 0.8,
            "spearman_edits": spearman, "r2_edits": r2, "spearman_test": 0.1, "r2_test": 0.0, "iia_min": 0.97,
            "iia_control_max": 0.3, "failed": failed, "passes": not failed}


def explanation(passing: str | None) -> dict:
    levels = [level("exact", 0, 2, 0.0, -0.01, ["the within-class fit"]),
              level("characters", 400, 15, 0.58, 0.13, [] if passing == "characters" else ["the within-class fit"]),
              level("full", 2000, 33, 0.84, 0.34, [] if passing else ["the within-class fit", "alignment"])]
    graded = [{"level": n, "kind": k, "spearman": s, "control_spearman": 0.05}
              for n, s in (("exact", 0.0), ("characters", 0.57), ("full", 0.86)) for k in ("broken", "matched")]
    failures = [{"level": "characters", "proposals": 2000, "model_wrong": 30, "distinct_wrong": 30,
                 "hit_rate": 0.015, "random_rate": 0.001, "times_random": 15.0},
                {"level": "full", "proposals": 2000, "model_wrong": 76, "distinct_wrong": 76, "hit_rate": 0.038,
                 "random_rate": 0.001, "times_random": 38.0}]
    figures = {"agreement": 0.99, "model_errors": 40, "errors_reproduced": 20, "error_recall": 0.5,
               "error_precision": 0.8, "r2": 0.34, "spearman": 0.84}
    return {"family": {"name": "pair_comparison"}, "program": {"logic_lines": 105, "n_read": 2000, "n_fitted": 33},
            "agreement": {"test": figures, "edits": figures}, "interchange": [], "levels": levels, "passing_level": passing, "n_model": 1000,
            "program_level": passing or "full", "graded": graded, "failures": failures}


def test_ladder_rows_per_run() -> None:
    old = {**explanation(None)}  # a summary written before the ladder
    for key in ("levels", "passing_level", "n_model", "program_level", "graded", "failures"):
        del old[key]
    runs = [Run("seed0", "a" * 40, {}, {}, explanation=explanation("characters")),
            Run("seed1", "b" * 40, {}, {}, explanation=explanation(None)),
            Run("seed2", "c" * 40, {}, {}, explanation=old),
            Run("seed3", "d" * 40, {}, {}),  # no explain output at all
            Run("seed4", "e" * 40, {}, {}, explanation={"family": {"name": "string_level"}, "program": None,
                                                        "sentences": ["No program: no template."]})]
    table = ladder_table(runs).set_index("run")
    assert table.index.tolist() == ["seed0", "seed1", "seed2", "seed4"]
    first = table.loc["seed0"]
    assert first["passing level"] == "characters"
    assert first["size: read + fitted (of the model's parameters)"] == "400 + 15 (0.41x of 1,000)"
    assert first["edits Spearman / R^2 per level"] == "exact 0.00 / -0.01; characters 0.58 / 0.13; full 0.84 / 0.34"
    assert first["graded Spearman, broken (level)"] == "0.57 (characters; control 0.05)"
    assert first["failures found (best level: distinct misclassified, hit rate, x random)"] == \
        "full: 76 of 2000, 3.8%, 38.0x"
    second = table.loc["seed1"]  # none passes: the closest (program.py's) level and what it fails
    assert second["passing level"] == "none (full fails the within-class fit, alignment)"
    assert second["size: read + fitted (of the model's parameters)"] == "2,000 + 33 (2.03x of 1,000)"
    assert second["graded Spearman, broken (level)"] == "0.86 (full; control 0.05)"
    assert table.loc["seed2", "passing level"] == "n/a: no ladder in this run's summary"
    assert table.loc["seed4", "passing level"] == "n/a: no program (family string_level)"

    levels = level_table(runs)
    assert levels["run"].tolist() == ["seed0"] * 3 + ["seed1"] * 3
    row = levels[(levels["run"] == "seed1") & (levels["level"] == "full")].iloc[0]
    assert row["x model"] == 2.033 and row["graded Spearman, matched"] == 0.86 and not row["passes"]
    assert row["failures: distinct"] == 76 and row["failed gates"] == "the within-class fit, alignment"

    text = ladder_verdict(runs)
    assert text.startswith("1 of 2 runs have a ladder level that passes every gate: seed0 (characters).")
    assert "fails the within-class fit (1 run), alignment (1 run)" in text
    page = build_page(runs)
    assert {"Explanation ladder", "Ladder levels", "Which level passes?"} <= {s.heading for s in page.sections}
    for f in runs[1].explanation["failures"]:
        f["distinct_wrong"] = 0
    assert ladder_table(runs).set_index("run").loc["seed1", "failures found (best level: distinct misclassified, "
                                                   "hit rate, x random)"] == "none: 0 of 2000 at every level"


def test_no_ladder_anywhere() -> None:
    runs = [Run("seed0", "a" * 40, {}, {})]
    assert ladder_table(runs).empty and level_table(runs).empty
    assert ladder_verdict(runs) == "No run has an explanation ladder yet (the explain stage writes it)."


def test_rev_picks_the_baseline_whose_experiments_are_shown(monkeypatch) -> None:
    import subprocess

    from palindrome_lens import compare

    calls = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="[]", stderr="")

    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    compare.exp_show(Path("."))
    compare.exp_show(Path("."), "d52cae5")
    assert calls[0][-2:] == ["show", "--json"] and calls[1][-2:] == ["--rev", "d52cae5"]
