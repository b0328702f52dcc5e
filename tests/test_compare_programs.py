"""`compare` shows each run's explanation program and its agreement figures, and says when a run has none."""

from __future__ import annotations

from palindrome_lens.compare import Run, build_page, program_table


def explanation(recall: float | None, iia: float) -> dict:
    figures = {"agreement": 1.0, "model_errors": 4, "errors_reproduced": 3, "error_recall": recall,
               "error_precision": 0.75, "r2": 0.72, "spearman": 0.86}
    interchange = [{"alignment": "resid", "kind": "aligned", "iia_changed": iia},
                   {"alignment": "resid", "kind": "aligned", "iia_changed": 1.0},
                   {"alignment": "resid", "kind": "control", "iia_changed": 0.36},
                   {"alignment": "writer", "kind": "aligned", "iia_changed": 0.5}]  # not the gated alignment
    return {"family": {"name": "pair_comparison"}, "runs_program": iia >= 0.95,
            "program": {"logic_lines": 82, "n_read": 28620, "n_fitted": 33},
            "agreement": {"test": {**figures, "agreement": 0.9995}, "edits": figures}, "interchange": interchange,
            "sentences": ["The model runs this program."]}


def test_each_run_shows_its_program_and_figures() -> None:
    runs = [Run("seed0", "a" * 40, {}, {}, explanation=explanation(0.75, 0.97)),
            Run("seed1", "b" * 40, {}, {}, explanation={"program": None, "sentences": ["No program: nothing supported."]}),
            Run("seed2", "c" * 40, {}, {})]  # no explain output at all
    table = program_table(runs)
    assert table["run"].tolist() == ["seed0", "seed1"]
    row = table.iloc[0]
    assert row["program"] == "pair_comparison: 82 lines, 28620 read, 33 fitted"
    assert row["decisions alike, test / edits"] == "99.95% / 100.00%"
    assert row["model errors on edits: reproduced (recall / precision)"] == "4: 3 (75% / 75%)"
    assert row["edits R^2 / Spearman"] == "0.72 / 0.86" and row["IIA min (control max)"] == "97% (36%)"
    assert bool(row["runs the program"])
    assert table.iloc[1]["program"] == "none: No program: nothing supported."
    page = build_page(runs)
    assert any(s.heading == "Programs" for s in page.sections)
