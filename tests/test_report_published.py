"""The published-mechanism comparison: every point follows its stated rule, a run with ARENA's setup is
compared and another is marked not comparable."""

from __future__ import annotations

import pandas as pd

from palindrome_lens.report.published import compare, published_findings, setup_differences

HEADS = ["L0H0", "L0H1", "L1H0", "L1H1"]


def _ablation(lost: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Balanced rows: an unablated margin of 7.5 and, per head and mode, the share of it lost."""
    rows = [{"component": "none", "positions": "none", "mode": "none", "kind": "balanced", "mean_margin": 7.5,
             "margin_change": 0.0}]
    for head, modes in lost.items():
        for mode, share in modes.items():
            rows.append({"component": head, "positions": "all", "mode": mode, "kind": "balanced",
                         "mean_margin": 7.5 * (1 - share), "margin_change": -7.5 * share})
    return pd.DataFrame(rows)


def _inputs(arena_like: bool = True, k_above: bool = True) -> tuple[dict, dict, dict]:
    model = dict(published_findings()["setup"])
    if not arena_like:
        model.update(attention_dir="bidirectional", readout="bos")
    summary = {"model": model, "mirror_scores": {"L0H0": 0.2, "L0H1": 0.93, "L1H0": 0.1, "L1H1": 0.1},
               "circuit_nodes": ["L0H1@second_half", "L1H1@eos"], "faithfulness": 0.95}
    attention = pd.DataFrame([
        {"component": h, "layer": int(h[1]), "half": "second_half", "status": status, "n": 10,
         "attention": 0.3 if (h == "L1H1" and status == "mismatched") else 0.05}
        for h in HEADS for status in ("mismatched", "matched")])
    composition = pd.DataFrame([
        {"mode": mode, "sender": "L0H1", "receiver": "L1H1", "score": 0.5, "baseline_mean": 0.2, "baseline_q95": 0.3,
         "above_q95": k_above or mode == "V"} for mode in ("K", "V")])
    edges = pd.DataFrame([{"sender": "L0H1@second_half", "receiver": "L1H1@eos", "sender_component": "L0H1",
                           "receiver_component": "L1H1", "via": via, "effect": 0.4} for via in ("k", "v")])
    ablation = _ablation({"L0H1": {"mean": 0.92, "zero": 0.95}, "L1H1": {"mean": 0.96, "zero": 0.97},
                          "L0H0": {"mean": 0.1, "zero": 0.6}, "L1H0": {"mean": 0.1, "zero": 0.1}})
    adversarial = pd.DataFrame({"label": [False] * 25, "margin": range(25), "length": 20, "correct": [True] * 25,
                                "pair_pos": [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 7, 8, 9] + [9] * 5})
    tables = {"readout_attention": attention, "composition": composition, "edges": edges, "ablation": ablation,
              "adversarial": adversarial}
    circuit = {"scrubbing": [{"name": "flags", "verdict": "supported", "recovered": 0.97, "control": -0.3,
                              "constant": 0.6}]}
    return summary, circuit, tables


def test_every_point_agrees_when_the_numbers_say_so() -> None:
    points = {p.point: p for p in compare(*_inputs())}
    assert points["mirror head"].verdict == "agrees" and "L0H1 is the mirror head" in points["mirror head"].this_run
    assert points["reader head"].verdict == "agrees" and "L1H1 6.0x" in points["reader head"].this_run
    assert points["composition"].verdict == "agrees"
    assert "path patching L0H1@second_half -> L1H1@eos (k) 0.40" in points["composition"].this_run
    assert points["mean ablation"].verdict == "agrees" and "L0H1 0.6" in points["mean ablation"].this_run
    assert points["zero ablation"].verdict == "agrees" and "L0H0 60% vs 10%" in points["zero ablation"].this_run
    assert points["adversarial examples"].verdict == "agrees"  # 17 of the 20 weakest in pairs 0-4
    assert points["faithfulness and scrubbing"].verdict == "new"


def test_a_difference_is_reported_as_one() -> None:
    points = {p.point: p for p in compare(*_inputs(k_above=False))}
    assert points["composition"].verdict == "differs"
    summary, circuit, tables = _inputs()
    tables["ablation"] = _ablation({"L0H1": {"mean": 0.92, "zero": 0.95}, "L1H1": {"mean": 0.5, "zero": 0.6},
                                    "L0H0": {"mean": 0.1, "zero": 0.1}, "L1H0": {"mean": 0.1, "zero": 0.1}})
    points = {p.point: p for p in compare(summary, circuit, tables)}
    assert points["mean ablation"].verdict == "differs" and points["zero ablation"].verdict == "differs"


def test_another_setup_is_not_comparable() -> None:
    summary, circuit, tables = _inputs(arena_like=False)
    assert setup_differences(summary["model"], published_findings()) == [
        "attention_dir: 'bidirectional' here, 'causal' there", "readout: 'bos' here, 'eos' there"]
    verdicts = {p.verdict for p in compare(summary, circuit, tables)}
    assert verdicts == {"not comparable", "new"}


def test_misclassified_edits_decide_where_the_blind_spot_is() -> None:
    summary, circuit, tables = _inputs()
    pair_pos = [p for p in range(10) for _ in range(10)]
    correct = [not (p == 9 and i < 6) and not (p == 0 and i < 2) for p, i in zip(pair_pos, list(range(10)) * 10)]
    tables["adversarial"] = pd.DataFrame({"label": False, "margin": 1.0, "length": 20, "pair_pos": pair_pos,
                                          "correct": correct})
    point = {p.point: p for p in compare(summary, circuit, tables)}["adversarial examples"]
    assert point.verdict == "differs"  # 6 of the 8 errors break the centre pair
    assert "8 of 100 single edits misclassified; of the 8 misclassified, 25% break one of the outer half" in (
        point.this_run)
    assert "the weakest pair is 9 (0 = outermost, 9 = centre) at 40.0%" in point.this_run
