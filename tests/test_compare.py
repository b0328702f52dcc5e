"""The cross-experiment verdict on circuit graphs: the same graph, the same graph up to the naming of heads
within a layer, or different graphs; and the runs table."""

from __future__ import annotations

from palindrome_lens.compare import (
    Run,
    accuracy_figure,
    canonical_graph,
    circuit_graph,
    discovered_table,
    discovered_verdict,
    edge_table,
    param_order,
    runs_table,
    verdict,
)


def circuit(nodes: list[str], edges: list[tuple[str, str, str]]) -> dict:
    return {"nodes": [{"name": "embed@chars", "role": "input"}] + [{"name": n, "role": "circuit"} for n in nodes],
            "edges": [{"from": a, "to": b, "via": via, "effect": 0.5} for a, b, via in edges]}


def summary(nodes: list[str]) -> dict:
    accuracy = {"circuit_ablated": {"balanced_accuracy": 0.5}, "others_ablated": {"balanced_accuracy": 0.98}}
    return {"circuit_nodes": nodes, "model": {"n_heads": 2}, "faithfulness": 0.95, "completeness": 0.02,
            "circuit_accuracy": accuracy,
            "scrubbing": {"pair_flags": {"verdict": "supported", "recovered": 0.97, "recovered_constant": 0.93,
                                         "control": -0.2}}}


MIRROR_H0 = circuit(["L0H0@chars", "0_mlp_out@chars", "L1H1@bos"],
                    [("embed@chars", "L0H0@chars", "v"), ("L0H0@chars", "0_mlp_out@chars", "mlp_in"),
                     ("0_mlp_out@chars", "L1H1@bos", "v"), ("L1H1@bos", "logits", "logits")])
MIRROR_H1 = circuit(["L0H1@chars", "0_mlp_out@chars", "L1H0@bos"],  # the same, both layers' heads renamed
                    [("embed@chars", "L0H1@chars", "v"), ("L0H1@chars", "0_mlp_out@chars", "mlp_in"),
                     ("0_mlp_out@chars", "L1H0@bos", "v"), ("L1H0@bos", "logits", "logits")])
NO_MLP = circuit(["L0H1@chars", "L1H0@bos"], [("L0H1@chars", "L1H0@bos", "k"), ("L1H0@bos", "logits", "logits")])


def run(name: str, graph: dict) -> Run:
    nodes = [n["name"] for n in graph["nodes"] if n["role"] == "circuit"]
    return Run(name, name, {"seed": int(name[-1])}, {"accuracy": 1.0}, summary(nodes), graph)


def test_same_graph() -> None:
    runs = [run(f"seed{i}", MIRROR_H0) for i in range(3)]
    assert verdict(runs).startswith("All 3 runs learn the same circuit graph: nodes 0_mlp_out@chars, L0H0@chars,")


def test_same_graph_under_other_head_names() -> None:
    assert circuit_graph(MIRROR_H0) != circuit_graph(MIRROR_H1)
    assert canonical_graph(circuit_graph(MIRROR_H0), 2) == canonical_graph(circuit_graph(MIRROR_H1), 2)
    text = verdict([run("seed0", MIRROR_H0), run("seed1", MIRROR_H1)])
    assert "the same up to the naming of heads within a layer" in text
    assert "seed0: 0_mlp_out@chars, L0H0@chars, L1H1@bos" in text


def test_renaming_must_keep_the_edges() -> None:
    """Renaming the heads must carry the edges along: the same nodes wired differently are another circuit."""
    crossed = circuit(["L0H0@chars", "0_mlp_out@chars", "L1H1@bos"],
                      [("embed@chars", "L0H0@chars", "k"), ("L0H0@chars", "0_mlp_out@chars", "mlp_in"),
                       ("0_mlp_out@chars", "L1H1@bos", "v"), ("L1H1@bos", "logits", "logits")])
    assert canonical_graph(circuit_graph(crossed), 2) != canonical_graph(circuit_graph(MIRROR_H1), 2)
    text = verdict([run("seed0", crossed), run("seed1", MIRROR_H1)])
    assert text.startswith("The runs learn 2 different circuit graphs")


def test_different_graphs() -> None:
    text = verdict([run("seed0", MIRROR_H0), run("seed1", NO_MLP), run("seed2", MIRROR_H1)])
    assert text.startswith("The runs learn 2 different circuit graphs")
    assert "]: seed1" in text and "]: seed0, seed2" in text
    assert "Nodes common to every run, heads counted by layer: layer-0 head@chars, layer-1 head@bos." in text


def test_one_run_is_nothing_to_compare() -> None:
    assert verdict([run("seed0", MIRROR_H0)]).startswith("Fewer than two runs")


def test_tables_show_faithfulness_scrubbing_and_edges() -> None:
    table = runs_table([run("seed0", MIRROR_H0), run("seed1", NO_MLP)], ["seed"])
    assert table["faithfulness"].tolist() == [0.95, 0.95]
    assert table["edges"].tolist() == [4, 2]
    assert table["circuit nodes"].tolist()[1] == "L0H1@chars, L1H0@bos"
    assert table["scrubbing"].tolist()[0] == "pair_flags: supported (97%, 93% from a constant, control -20%)"
    assert table["balanced acc, circuit ablated"].tolist() == [0.5, 0.5]
    assert table["seed"].tolist() == [0, 1] and table["rev"].tolist() == ["seed0", "seed1"]
    workspace = Run("workspace", "workspace", {}, {}, None)
    assert runs_table([workspace], [])["rev"].tolist() == ["workspace"]
    edges = edge_table([run("seed1", NO_MLP)])
    assert edges[["from", "to", "via"]].values.tolist() == [["L0H1@chars", "L1H0@bos", "k"],
                                                             ["L1H0@bos", "logits", "logits"]]


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
    runs = [run(f"seed{i}", MIRROR_H0) for i in (1, 0, 3, 2)]
    for r, lr in zip(runs, (0.01, 0.002, None, "x")):
        r.params["train.lr"] = lr
    assert param_order(runs, "seed") == ["0", "1", "2", "3"]
    assert param_order(runs, "train.lr") == ["0.002", "0.01", "x", "None"]  # the rest by JSON text
    axis = accuracy_figure(runs, "seed").layout.xaxis
    assert list(axis.categoryarray) == ["0", "1", "2", "3"] and axis.categoryorder == "array"


def _discovered(chars: str) -> list[dict]:
    figures = {"recovered": 0.99, "recovered_constant": 0.95, "accuracy_recovered": 0.98, "local_recovered": 0.97,
               "control": -0.1, "verdict": "supported"}
    return [{"after_layer": 0, "keep": {"bos": "none", "chars": chars, "eos": "none"},
             "bits": {"bos": 0.0, "chars": 1.25, "eos": 0.0}, **figures},
            {"after_layer": 1, "keep": {"bos": "label", "chars": "none", "eos": "none"},
             "bits": {"bos": 0.77, "chars": 0.0, "eos": 0.0}, **figures}]


def test_runs_that_share_a_discovered_hypothesis_are_named_together() -> None:
    runs = [run(f"seed{i}", MIRROR_H0) for i in range(4)]
    for r, chars in zip(runs, ("pair_diff", "label", "pair_diff", "pair_diff")):
        r.summary["discovered"] = _discovered(chars)
    text = discovered_verdict(runs)
    assert text.startswith("The 4 runs discover 2 different hypotheses. 3 runs (seed0, seed2, seed3): after layer 0: "
                           "bos none, chars pair_diff, eos none; after layer 1: bos label")
    assert "| 1 run (seed1): after layer 0: bos none, chars label" in text
    for r in runs:
        r.summary["discovered"] = _discovered("pair_match")
    assert discovered_verdict(runs).startswith("All 4 runs share one discovered hypothesis: after layer 0: bos none, "
                                               "chars pair_match")
    table = discovered_table(runs[:1])
    assert table["hypothesis"].tolist() == ["bos: none, chars: pair_match, eos: none", "bos: label, chars: none, eos: none"]
    assert table["bits"].tolist()[0] == "bos 0.00, chars 1.25, eos 0.00"
    assert table["from a constant"].tolist() == [0.95, 0.95] and table["each pair alone"].tolist() == [0.97, 0.97]
    assert runs_table(runs[:1], [])["discovered"].tolist()[0].startswith("after layer 0: bos none, chars pair_match")
    assert discovered_verdict([Run("workspace", "workspace", {}, {}, None)]).startswith("No run has")
