"""The cross-experiment verdict: same heads, same mechanism under other head names, or different circuits."""

from __future__ import annotations

from palindrome_lens.compare import Run, accuracy_figure, param_order, roles, runs_table, verdict


def summary(circuit: list[str], mirror: dict[str, float]) -> dict:
    evidence = {f"L{layer}H{head}": {"layer": layer, "head": head, "mirror_score": mirror.get(f"L{layer}H{head}", 0.1)}
                for layer in (0, 1) for head in (0, 1)}
    accuracy = {"circuit_ablated": {"distance_1_accuracy": 1.0, "palindrome_accuracy": 0.0},
                "others_ablated": {"distance_1_accuracy": 0.99, "palindrome_accuracy": 0.8}}
    return {"circuit_heads": circuit, "evidence": evidence, "circuit_accuracy": accuracy}


def run(name: str, circuit: list[str], mirror: dict[str, float]) -> Run:
    return Run(name, name, {"seed": int(name[-1])}, {"accuracy": 1.0}, summary(circuit, mirror))


def test_same_heads() -> None:
    runs = [run(f"seed{i}", ["L0H0", "L1H1"], {"L0H0": 0.8}) for i in range(3)]
    assert verdict(runs).startswith("All 3 runs name the same circuit heads (L0H0, L1H1)")


def test_same_mechanism_under_other_head_names() -> None:
    runs = [run("seed0", ["L0H0", "L1H1", "L1H0"], {"L0H0": 0.82}),
            run("seed1", ["L0H1", "L1H1", "L1H0"], {"L0H1": 0.83})]
    assert roles(runs[0].summary) == roles(runs[1].summary) == (
        "layer-0 mirror head", "layer-1 head", "layer-1 head")
    text = verdict(runs)
    assert "the same shape: layer-0 mirror head, layer-1 head, layer-1 head" in text
    assert "L0H0, L1H0, L1H1: seed0" in text and "L0H1, L1H0, L1H1: seed1" in text


def test_head_order_is_a_ranking_not_a_different_circuit() -> None:
    runs = [run("seed0", ["L0H0", "L1H1"], {"L0H0": 0.8}), run("seed1", ["L1H1", "L0H0"], {"L0H0": 0.8})]
    assert verdict(runs).startswith("All 2 runs name the same circuit heads (L0H0, L1H1)")


def test_different_mechanisms() -> None:
    runs = [run("seed0", ["L0H0", "L1H1"], {"L0H0": 0.82}), run("seed1", ["L0H1", "L1H1"], {})]
    text = verdict(runs)
    assert "2 different circuits" in text and "2 different shapes" in text
    assert "layer-0 head, layer-1 head: seed1" in text and "layer-0 mirror head, layer-1 head: seed0" in text


def test_one_run_is_nothing_to_compare() -> None:
    assert verdict([run("seed0", ["L0H0"], {})]).startswith("Fewer than two runs")


def test_table_shows_palindrome_accuracy_under_ablation() -> None:
    table = runs_table([run("seed0", ["L0H0"], {"L0H0": 0.9}), run("seed1", ["L0H1"], {})], ["seed"])
    assert table["palindrome acc, circuit ablated"].tolist() == [0.0, 0.0]
    assert table["palindrome acc, others ablated"].tolist() == [0.8, 0.8]
    assert table["seed"].tolist() == [0, 1]
    assert table["rev"].tolist() == ["seed0", "seed1"]
    workspace = Run("workspace", "workspace", {}, {}, None)
    assert runs_table([workspace], [])["rev"].tolist() == ["workspace"]


def test_runs_are_named_as_dvc_exp_show_names_them() -> None:
    from palindrome_lens.compare import list_runs

    shown = [{"rev": "workspace", "name": None, "data": {"params": {}}},
             {"rev": "e7701aa0123456789", "name": "main", "data": {"params": {}},
              "experiments": [{"revs": [{"rev": "5fe5801abcdef", "name": "seed1", "data": {"params": {}}}],
                               "name": "seed1"},
                              {"revs": [{"rev": "3364e6cabcdef", "data": {"params": {}}}]}]}]
    assert [(name, rev) for name, rev, _ in list_runs(shown)] == [
        ("workspace", "workspace"), ("main", "e7701aa0123456789"), ("seed1", "5fe5801abcdef"),
        ("3364e6c", "3364e6cabcdef")]


def test_swept_values_are_in_order_on_the_axis() -> None:
    runs = [run(f"seed{i}", ["L0H0"], {}) for i in (1, 0, 3, 2)]
    for r, lr in zip(runs, (0.01, 0.002, None, "x")):
        r.params["train.lr"] = lr
    assert param_order(runs, "seed") == ["0", "1", "2", "3"]
    assert param_order(runs, "train.lr") == ["0.002", "0.01", "x", "None"]  # the rest by JSON text
    axis = accuracy_figure(runs, "seed").layout.xaxis
    assert list(axis.categoryarray) == ["0", "1", "2", "3"] and axis.categoryorder == "array"
