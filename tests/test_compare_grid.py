"""`compare --grid` prints each run against issue 23's target: the params that differ, test accuracy, the
discovered hypothesis per boundary (verdict, budget), the program and its level's scores (or the measured
reason none passes), the circuit's verdicts against its gates, and the attribute stage's time from the log.
Built on small synthetic JSON, every figure distinct, so a misread field changes the text."""

from __future__ import annotations

from pathlib import Path

from palindrome_lens import compare
from palindrome_lens.compare import Run
from palindrome_lens.compare_grid import (
    attribute_seconds,
    circuit_text,
    grid_report,
    grid_text,
    program_text,
    says_something_at_characters,
)

TARGETS = {"agreement_target": 0.999, "error_precision_target": 0.8, "error_recall_target": 0.8,
           "iia_control_max": 0.5, "iia_target": 0.95, "min_errors": 20, "r2_target": 0.3, "spearman_target": 0.8}


def boundary(layer: int, keep: dict[str, str], verdict: str = "supported", exhausted: bool = False,
             coarser: bool = True) -> dict:
    return {"after_layer": layer, "keep": keep, "verdict": verdict, "budget_exhausted": exhausted,
            "bits": {g: 0.25 + i for i, g in enumerate(sorted(keep))},
            "coarser_than_all": {g: coarser and f != "all" for g, f in keep.items()},
            "result": {"recovered_constant": 0.987}}


def circuit(bounds: list[dict], faithfulness: float = 0.923, weak: bool = False) -> dict:
    minimality = {"L0H0@chars": {"value": 0.61}, "L1H1@bos": {"value": 0.031 if weak else 0.44}}
    return {"discovered": {"boundaries": bounds, "budget": 100},
            "nodes": [{"name": "embed@chars", "role": "input"}, {"name": "L0H0@chars", "role": "circuit"},
                      {"name": "L1H1@bos", "role": "circuit"}],
            "faithfulness": faithfulness, "minimality": minimality,
            "gates": {"faithfulness_target": 0.9, "minimality_floor": 0.05},
            "completeness": {"value": 0.071, "worst_k": "{L1H1@bos}"}}


def level(name: str, passes: bool, failed: list[str] | None = None) -> dict:
    return {"name": name, "passes": passes, "failed": failed or [], "agreement_test": 0.99991,
            "agreement_edits": 0.99876, "spearman_edits": 0.734, "r2_edits": 0.216, "errors_reproduced": 7,
            "model_errors": 12, "error_recall": 0.583, "error_precision": 0.636, "iia_min": 0.9412,
            "iia_control_max": 0.613}


def explanation(passing: str | None) -> dict:
    failed = ["the within-class fit", "alignment", "the control", "decision agreement on single edits"]
    levels = [level("exact", False, ["the within-class fit"]), level("full", passing == "full", None if passing else failed)]
    return {"family": {"name": "pair_comparison"}, "program": {"level": "full"}, "levels": levels,
            "passing_level": passing, "program_level": "full", "targets": TARGETS, "sentences": ["..."]}


NO_PROGRAM = {"family": {"name": "string_level", "reason": "no template"}, "program": None,
              "sentences": ["No program: no program template for the string_level family yet."]}

LOG = ("Running stage 'attribute':\nattribute: data/attribution: 23 files from 1184 examples on cpu in 47.5 s "
       "(dla 0.1 s, discovery 3.5 s); DLA max error 2.4e-06\nattribute: The decision is carried by ...\n")
DEFAULT_LOG = LOG.replace("47.5 s", "19.0 s")


def runs() -> list[Run]:
    supported = [boundary(0, {"bos": "none", "chars": "pair_diff", "eos": "none"}, exhausted=True),
                 boundary(1, {"bos": "label", "chars": "none", "eos": "none"})]
    return [
        Run("g-default", "a" * 40, {"seed": 0, "model.n_layers": 2}, {"accuracy": 0.9995},
            {}, circuit(supported), explanation("full")),
        Run("g-close", "b" * 40, {"seed": 1, "model.n_layers": 2}, {"accuracy": 0.9991},
            {}, circuit(supported, faithfulness=0.871, weak=True), explanation(None)),
        Run("g-all", "c" * 40, {"seed": 2, "model.n_layers": 3}, {"accuracy": 1.0},  # only `all`/`label`/`none`
            {}, circuit([boundary(0, {"bos": "all", "chars": "all", "eos": "all"}, coarser=False),
                         boundary(1, {"bos": "label", "chars": "label", "eos": "none"}, verdict="fails"),
                         boundary(2, {"bos": "label", "chars": "none", "eos": "none"})]), NO_PROGRAM),
        Run("g-string", "d" * 40, {"seed": 1, "model.n_layers": 2}, {"accuracy": 1.0},
            {}, circuit([boundary(0, {"bos": "label", "chars": "label", "eos": "label"})]), NO_PROGRAM),
        Run("g-weak", "e" * 40, {"seed": 0, "model.n_layers": 1}, {"accuracy": 0.8891}, {}, circuit(supported),
            NO_PROGRAM),
        Run("g-queued", "f" * 40, {"seed": 0, "model.n_layers": 3}, {}),
    ]


def test_attribute_seconds_from_the_log() -> None:
    assert attribute_seconds(LOG) == 47.5
    assert attribute_seconds("Stage 'attribute' didn't change, skipping\n") == "cached"
    assert attribute_seconds("Running stage 'train':\nerror\n") is None


def test_characters_must_keep_something_coarser_than_all() -> None:
    assert says_something_at_characters(boundary(0, {"bos": "none", "chars": "pair_match", "eos": "none"}))
    assert not says_something_at_characters(boundary(0, {"chars": "pair_match"}, verdict="fails"))
    assert not says_something_at_characters(boundary(0, {"bos": "label", "chars": "none"}))  # says nothing
    assert not says_something_at_characters(boundary(0, {"bos": "none", "chars": "all"}, coarser=False))
    assert not says_something_at_characters(boundary(0, {"bos": "none", "chars": "char_counts"}, coarser=False))
    assert says_something_at_characters(boundary(0, {"bos": "none", "first_half": "char", "second_half": "pair_chars"}))


def test_circuit_verdicts_against_its_gates() -> None:
    faithful, minimal, complete = circuit_text(circuit([]))
    assert faithful == "92.3% of the margin with 2 nodes: faithful (target 90%)"
    assert minimal == "minimal (smallest L1H1@bos 0.44, floor 0.05)"
    assert complete == "0.07 (worst K: {L1H1@bos})"
    faithful, minimal, _ = circuit_text(circuit([], faithfulness=0.871, weak=True))
    assert faithful == "87.1% of the margin with 2 nodes: not faithful (target 90%)"
    assert minimal == "not shown minimal: L1H1@bos 0.03 below the floor 0.05"


def test_program_and_measured_reason() -> None:
    text, reason = program_text(explanation("full"))
    assert text == "pair_comparison, level full passes its gates (ladder: exact fails; full passes)" and reason is None
    text, reason = program_text(explanation(None))
    assert text == "pair_comparison, no level passes (ladder: exact fails; full fails)"
    assert reason == ("the closest level, full, fails the within-class fit: Spearman 0.73 (target 0.80), "
                      "R^2 0.22 (target 0.30); alignment: smallest IIA 94.12% < 95.00%; the control: largest control "
                      "IIA 61.30% > 50.00%; decision agreement on single edits: 99.88% < 99.90%")
    text, reason = program_text(NO_PROGRAM)
    assert text == ("no program (family string_level): No program: no program template for the string_level "
                    "family yet.") and reason is None


def test_each_run_and_the_target() -> None:
    logs = {"g-default": DEFAULT_LOG, "g-close": LOG}
    grid = {g.name: g for g in grid_report(runs(), {"seed": 0, "model.n_layers": 2}, lambda n: logs.get(n, ""))}
    assert list(grid) == sorted(grid)
    default = dict(grid["g-default"].rows())
    assert default["params that differ"] == "none (the defaults)"
    assert default["test accuracy"] == "99.95%"
    assert default["after layer 0"] == ("bos none, chars pair_diff, eos none: supported (bits per position: chars "
                                        "1.25; 98.7% of the loss from a constant; the search's budget ran out here)")
    assert default["after layer 1"] == ("bos label, chars none, eos none: supported (bits per position: bos 0.25; "
                                        "98.7% of the loss from a constant)")
    assert default["scores"] == ("full: decisions alike 99.99% test / 99.88% edits; edits Spearman 0.73 / R^2 0.22; "
                                 "7 of 12 errors reproduced (recall 58% / precision 64%); smallest IIA 94.1%")
    assert default["attribute stage"] == "19.0 s"
    assert default["target"] == "met: hypothesis at the characters after layer 0; level full passes its gates"
    assert grid["g-default"].meets is True

    close = dict(grid["g-close"].rows())
    assert close["params that differ"] == "seed=1"
    assert grid_report([Run("g-attn", "g" * 40, {"model.attn_only": True}, {})], {"model.attn_only": False})[0] \
        .rows()[0] == ("params that differ", "model.attn_only=true")
    assert close["attribute stage"] == "47.5 s (2.5x the defaults' 19.0 s (g-default))"
    assert close["target"].startswith("met by a measured reason: hypothesis at the characters after layer 0; no "
                                      "level passes: the closest level, full, fails the within-class fit")
    assert close["minimality"].startswith("not shown minimal")

    assert grid["g-all"].meets is False
    assert grid["g-all"].target.startswith("not met: no supported hypothesis keeps a feature coarser than `all`")
    assert dict(grid["g-all"].rows())["after layer 1"].startswith("bos label, chars label, eos none: fails")
    assert dict(grid["g-all"].rows())["attribute stage"] == "not recorded (no queue log for this run)"
    assert grid["g-string"].meets is False and "no program and no measured reason" in grid["g-string"].target
    assert grid["g-weak"].meets is None and grid["g-weak"].target == "n/a: test accuracy 88.91% is below 99%"
    assert grid["g-queued"].meets is None and grid["g-queued"].target.startswith("n/a: no outputs")

    text = grid_text(list(grid.values()))
    assert "| g-default | defaults | 99.95% | after 0: bos none, chars pair_diff, eos none; after 1: bos label, chars " \
           "none, eos none | pair_comparison, level full passes its gates | 19 s | met |" in text
    assert "Target met: 2 of 4 runs it applies to (g-close, g-default)." in text
    assert "Not met: g-all: no supported hypothesis" in text
    assert "Not applicable: g-weak: test accuracy 88.91% is below 99%" in text


def test_cli_grid_prints_only_the_matching_runs(monkeypatch, capsys, tmp_path) -> None:
    shown = [{"rev": "a" * 40, "name": "main", "data": {"params": {"params.yaml": {"data": {"seed": 0}}}},
              "experiments": [{"name": "g-close", "revs": [{"rev": "b" * 40, "data": {
                  "params": {"params.yaml": {"data": {"seed": 1}}}}}]}]}]
    monkeypatch.setattr(compare, "exp_show", lambda repo, rev=None: shown)
    monkeypatch.setattr(compare, "read_output", lambda repo, rev, path: None)
    monkeypatch.setattr(compare, "baseline_params", lambda repo, rev=None: {"seed": 0})
    monkeypatch.setattr("palindrome_lens.compare_grid.queue_log", lambda repo, name: LOG)
    assert compare.main(["--grid", "g-*", "--out", str(tmp_path / "experiments.html")]) == 0
    out = capsys.readouterr().out
    assert "**g-close**" in out and "**main**" not in out and "| attribute stage | 47.5 s |" in out
    assert "| params that differ | seed=1 |" in out
    assert Path(tmp_path / "experiments.html").is_file()
