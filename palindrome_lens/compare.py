"""Compare the workspace and every DVC experiment: accuracy against each swept param, and whether the
runs learn the same circuit, judged on the circuit graph (its nodes and edges) up to the naming of heads
within a layer, with each run's faithfulness, scrubbing verdicts and per-head evidence.

    python -m palindrome_lens.compare [--repo .] [--out reports/experiments.html] [--rev BASELINE]
    python -m palindrome_lens.compare --grid 'grid-*'   # also print each matching run against issue 23's target

Runs are listed by `dvc exp show --json` (params and metrics); each run's `data/attribution/summary.json`
and `circuit.json` are read at its revision through `dvc.api`.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import math
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from tqdm import tqdm

from palindrome_lens.errors import PalindromeLensError
from palindrome_lens.params import known_keys
from palindrome_lens.report import Figure, Page, Section, Table, Text, build_report, label_figure
from palindrome_lens.stage import tqdm_disabled

EVAL_METRICS = "data/eval/metrics.json"
SUMMARY = "data/attribution/summary.json"
CIRCUIT = "data/attribution/circuit.json"
EXPLANATION = "data/explanation/summary.json"
MAX_RENAMINGS = 40_320  # head renamings tried per graph (8! heads in one layer)


@dataclass
class Run:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    summary: dict[str, Any] | None = None
    circuit: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None  # the explain stage's summary.json
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return _number(self.metrics.get("accuracy"))

    @property
    def near1_accuracy(self) -> float | None:
        """Accuracy on distance-1 strings (the hard negatives)."""
        by_distance = self.metrics.get("distance") or self.metrics.get("by_distance") or {}
        value = by_distance.get("1") if isinstance(by_distance, dict) else None
        if isinstance(value, dict):
            return _number(value.get("accuracy"))
        by_kind = self.metrics.get("kind") or self.metrics.get("by_kind") or {}
        near1 = by_kind.get("near1") if isinstance(by_kind, dict) else None
        return _number(near1.get("accuracy")) if isinstance(near1, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("data.negative_mix",):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def exp_show(repo: Path, rev: str | None = None) -> list[dict[str, Any]]:
    """`dvc exp show --json`: the workspace, the baseline commit (HEAD, or `rev`) and its experiments.

    Not dvc.api.exp_show(): its flat rows lose param types, the baseline's commit and which file each metric
    came from (tests/test_experiments.py shows how)."""
    # `python -m dvc` from this interpreter: works when the venv is not on PATH
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--rev", rev] if rev else [])]
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PalindromeLensError(f"`dvc exp show --json` failed in {repo}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def list_runs(shown: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, rev, data) for the workspace, each baseline and each experiment that has data."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for baseline in shown:
        rev = baseline["rev"]
        entries = [(baseline.get("name") or (rev if rev == "workspace" else rev[:7]), baseline)]
        for exp in baseline.get("experiments") or []:
            revs = exp.get("revs") or []
            if revs:
                entries.append((exp.get("name") or revs[0]["rev"][:7], revs[0]))
        for name, entry in entries:
            data = entry.get("data")
            if data:
                found.append((name, entry["rev"], data))
    return found


def read_output(repo: Path, rev: str, path: str = SUMMARY) -> dict[str, Any] | None:
    """A run's JSON output at its revision (the workspace's from disk), or None if absent."""
    if rev == "workspace":
        local = repo / path
        return json.loads(local.read_text()) if local.is_file() else None
    import dvc.api  # slow to import; only needed for committed runs

    try:
        return json.loads(dvc.api.read(path, repo=str(repo), rev=rev))
    except Exception:  # noqa: BLE001 - dvc raises many kinds (missing cache, missing path)
        return None


def collect_runs(repo: Path, rev: str | None = None, patterns: list[str] | None = None) -> list[Run]:
    """Every run (or only those whose names match one of the glob `patterns`) with its outputs read."""
    keys = set(known_keys())
    runs = []
    entries = [e for e in list_runs(exp_show(repo, rev))
               if not patterns or any(fnmatch.fnmatchcase(e[0], p) for p in patterns)]
    for name, rev, data in tqdm(entries, desc="reading experiments", disable=tqdm_disabled() or len(entries) < 4):
        params = {k: v for k, v in _flatten(data.get("params", {}).get("params.yaml", {}).get("data", {})).items()
                  if k in keys}
        metrics = (data.get("metrics", {}).get(EVAL_METRICS) or {}).get("data", {})
        run = Run(name=name, rev=rev, params=params, metrics=metrics)
        run.summary = read_output(repo, rev, SUMMARY)
        run.circuit = read_output(repo, rev, CIRCUIT)
        run.explanation = read_output(repo, rev, EXPLANATION)
        if run.summary is None or run.circuit is None:
            run.notes.append("no circuit (attribute stage not run, or its output not in the cache)")
        runs.append(run)
    return runs


def swept_params(runs: list[Run]) -> list[str]:
    """Params whose values differ between runs, in params.yaml order."""
    return [key for key in known_keys()
            if len({json.dumps(r.params.get(key), sort_keys=True) for r in runs}) > 1]


def runs_table(runs: list[Run], swept: list[str]) -> pd.DataFrame:
    rows = []
    for run in runs:
        summary, circuit = run.summary or {}, run.circuit or {}
        accuracy = summary.get("circuit_accuracy") or {}
        scrubbing = summary.get("scrubbing") or {}
        rows.append({
            "run": run.name,
            "rev": run.rev if run.rev == "workspace" else run.rev[:7],
            **{key: json.dumps(run.params.get(key)) if isinstance(run.params.get(key), list | dict)
               else run.params.get(key) for key in swept},
            "test accuracy": run.accuracy,
            "distance-1 accuracy": run.near1_accuracy,
            "circuit nodes": ", ".join(summary.get("circuit_nodes", [])) or "n/a",
            "edges": len(circuit.get("edges", [])) if circuit else None,
            "faithfulness": summary.get("faithfulness"),
            "completeness gap": summary.get("completeness"),
            "balanced acc, circuit only": (accuracy.get("others_ablated") or {}).get("balanced_accuracy"),
            "balanced acc, circuit ablated": (accuracy.get("circuit_ablated") or {}).get("balanced_accuracy"),
            "scrubbing": "; ".join(f"{name}: {r.get('verdict')} ({_pct(r.get('recovered'))}, "
                                   f"{_pct(r.get('recovered_constant'))} from a constant, control "
                                   f"{_pct(r.get('control'))})" for name, r in scrubbing.items()) or "n/a",
            "discovered": hypothesis_text(discovered_key(summary)),
        })
    return pd.DataFrame(rows)


Discovered = tuple[tuple[int, tuple[tuple[str, str], ...]], ...]  # per boundary: (after_layer, (group, feature)...)


def discovered_key(summary: dict[str, Any]) -> Discovered:
    """A run's discovered hypothesis: after each layer, the feature each position group was scrubbed down to."""
    return tuple((int(b["after_layer"]), tuple(sorted(b["keep"].items()))) for b in summary.get("discovered") or [])


def hypothesis_text(key: Discovered) -> str:
    return "; ".join(f"after layer {layer}: " + ", ".join(f"{g} {f}" for g, f in keep) for layer, keep in key) or "n/a"


def discovered_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, layer boundary): the coarsest supported hypothesis the search found and its figures."""
    columns = ["run", "after layer", "hypothesis", "bits", "loss recovered", "from a constant",
               "accuracy recovered", "each pair alone", "control", "verdict"]
    rows = []
    for run in runs:
        for b in (run.summary or {}).get("discovered") or []:
            bits = b.get("bits") or {}
            rows.append(dict(zip(columns, [
                run.name, b["after_layer"], ", ".join(f"{g}: {f}" for g, f in b["keep"].items()),
                ", ".join(f"{g} {v:.2f}" for g, v in bits.items()), b.get("recovered"), b.get("recovered_constant"),
                b.get("accuracy_recovered"), b.get("local_recovered"), b.get("control"), b.get("verdict")])))
    return pd.DataFrame(rows, columns=columns)


def discovered_verdict(runs: list[Run]) -> str:
    """Which runs share the same discovered hypothesis (every layer boundary alike)."""
    keys = {r.name: discovered_key(r.summary) for r in runs if r.summary and r.summary.get("discovered")}
    if not keys:
        return "No run has a discovered hypothesis yet (the attribute stage writes it)."
    shared: dict[Discovered, list[str]] = {}
    for name, key in keys.items():
        shared.setdefault(key, []).append(name)
    if len(shared) == 1:
        return f"All {len(keys)} runs share one discovered hypothesis: {hypothesis_text(next(iter(shared)))}."
    parts = [f"{len(names)} run{'s' if len(names) > 1 else ''} ({', '.join(names)}): {hypothesis_text(key)}"
             for key, names in sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[1]))]
    return f"The {len(keys)} runs discover {len(shared)} different hypotheses. " + " | ".join(parts) + "."



def program_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run with an explanation: its program and how much of the model it reproduces."""
    rows = []
    for run in runs:
        explanation = run.explanation or {}
        program = explanation.get("program")
        if not explanation:
            continue
        if not program:
            rows.append({"run": run.name, "program": "none: " + " ".join(explanation.get("sentences", [])[:1])})
            continue
        test, edits = explanation["agreement"]["test"], explanation["agreement"]["edits"]
        resid = [r for r in explanation.get("interchange", []) if r["alignment"] == "resid"]
        aligned = [r["iia_changed"] for r in resid if r["kind"] == "aligned" and r["iia_changed"] is not None]
        control = [r["iia_changed"] for r in resid if r["kind"] == "control" and r["iia_changed"] is not None]
        rows.append({
            "run": run.name,
            "program": f"{explanation['family']['name']}: {program['logic_lines']} lines, {program['n_read']} read, "
                       f"{program['n_fitted']} fitted",
            "decisions alike, test / edits": f"{_pct(test['agreement'], 2)} / {_pct(edits['agreement'], 2)}",
            "model errors on edits: reproduced (recall / precision)":
                f"{edits['model_errors']}: {edits['errors_reproduced']} ({_pct(edits['error_recall'])} / "
                f"{_pct(edits['error_precision'])})",
            "edits R^2 / Spearman": f"{_num(edits['r2'])} / {_num(edits['spearman'])}",
            "test R^2 / Spearman": f"{_num(test['r2'])} / {_num(test['spearman'])}",
            "IIA min (control max)": f"{_pct(min(aligned, default=None))} ({_pct(max(control, default=None))})",
            "runs the program": explanation.get("runs_program"),
        })
    return pd.DataFrame(rows)


def _ladder_pick(explanation: dict[str, Any]) -> dict[str, Any] | None:
    """The level the ladder stands on: the passing one, else the one program.py holds (the closest)."""
    levels = explanation.get("levels") or []
    name = explanation.get("passing_level") or explanation.get("program_level")
    return next((r for r in levels if r["name"] == name), levels[-1] if levels else None)


def _graded(explanation: dict[str, Any], level: str, kind: str = "broken") -> dict[str, Any] | None:
    return next((g for g in explanation.get("graded") or [] if g["level"] == level and g["kind"] == kind), None)


def _best_failures(explanation: dict[str, Any]) -> dict[str, Any] | None:
    """The level whose proposals the model got wrong most often (distinct strings, then hit rate)."""
    rows = explanation.get("failures") or []
    return max(rows, key=lambda r: (r.get("distinct_wrong") or 0, r.get("hit_rate") or 0), default=None)


def ladder_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run with an explanation: which ladder level passes its gates (or none, and what the closest
    level fails), its size against the model's, every level's edits Spearman / R^2, the failures found and the
    graded interventions' Spearman. Runs whose summary predates the ladder say so."""
    rows = []
    for run in runs:
        explanation = run.explanation or {}
        if not explanation:
            continue
        pick, levels = _ladder_pick(explanation), explanation.get("levels") or []
        if pick is None:  # no program, or a summary written before the ladder existed
            family = (explanation.get("family") or {}).get("name")
            rows.append({"run": run.name, "passing level": "n/a: " + (
                "no ladder in this run's summary" if explanation.get("program") else f"no program (family {family})")})
            continue
        passing = explanation.get("passing_level")
        n_model = explanation.get("n_model") or pick.get("n_model")
        best = _best_failures(explanation)
        graded = _graded(explanation, pick["name"])
        rows.append({
            "run": run.name,
            "passing level": passing or f"none ({pick['name']} fails {', '.join(pick.get('failed') or []) or 'n/a'})",
            "size: read + fitted (of the model's parameters)":
                f"{pick['n_read']:,} + {pick['n_fitted']:,} ({(pick['n_read'] + pick['n_fitted']) / n_model:.2f}x of "
                f"{n_model:,})" if n_model else f"{pick['n_read']:,} + {pick['n_fitted']:,}",
            "edits Spearman / R^2 per level": "; ".join(
                f"{r['name']} {_num(r.get('spearman_edits'))} / {_num(r.get('r2_edits'))}" for r in levels),
            "errors recall / precision per level": "; ".join(
                f"{r['name']} {_pct(r.get('error_recall'))} / {_pct(r.get('error_precision'))}" for r in levels),
            "failures found (best level: distinct misclassified, hit rate, x random)":
                "n/a" if best is None else f"none: 0 of {best['proposals']} at every level"
                if not best.get("distinct_wrong") else f"{best['level']}: {best['distinct_wrong']} of "
                f"{best['proposals']}, {_pct(best.get('hit_rate'), 1)}, {_times(best.get('times_random'))}"
                + (f" (>= {best['times_random_at_least']:.0f}x: 0 of {best['random_n']:,} random edits wrong)"
                   if best.get("times_random_at_least") else ""),
            "graded Spearman, broken (level)": "n/a" if graded is None else
                f"{_num(graded.get('spearman'))} ({pick['name']}; control {_num(graded.get('control_spearman'))})",
        })
    return pd.DataFrame(rows)


def level_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, ladder level): its size, figures, failed gates, graded interventions and failures."""
    columns = ["run", "level", "read", "fitted", "x model", "decisions alike, edits", "model errors",
               "error recall", "error precision", "edits Spearman", "edits R^2", "test Spearman", "test R^2",
               "IIA min", "IIA control max", "graded Spearman, broken", "graded Spearman, matched",
               "failures: distinct", "failures: hit rate", "failures: x random", "failed gates", "passes"]
    rows = []
    for run in runs:
        explanation = run.explanation or {}
        failures = {f["level"]: f for f in explanation.get("failures") or []}
        for r in explanation.get("levels") or []:
            n_model = explanation.get("n_model") or r.get("n_model")
            broken, matched = _graded(explanation, r["name"]), _graded(explanation, r["name"], "matched")
            f = failures.get(r["name"]) or {}
            rows.append(dict(zip(columns, [
                run.name, r["name"], r["n_read"], r["n_fitted"],
                (r["n_read"] + r["n_fitted"]) / n_model if n_model else None, r.get("agreement_edits"),
                r.get("model_errors"), r.get("error_recall"), r.get("error_precision"), r.get("spearman_edits"),
                r.get("r2_edits"), r.get("spearman_test"), r.get("r2_test"), r.get("iia_min"),
                r.get("iia_control_max"), (broken or {}).get("spearman"), (matched or {}).get("spearman"),
                f.get("distinct_wrong"), f.get("hit_rate"), f.get("times_random"),
                ", ".join(r.get("failed") or []), bool(r.get("passes"))])))
    return pd.DataFrame(rows, columns=columns)


def ladder_verdict(runs: list[Run]) -> str:
    """Which runs have a level passing every gate, and which gates the others' closest level fails."""
    with_ladder = [(r.name, r.explanation) for r in runs if r.explanation and r.explanation.get("levels")]
    if not with_ladder:
        return "No run has an explanation ladder yet (the explain stage writes it)."
    passing = [(name, e["passing_level"]) for name, e in with_ladder if e.get("passing_level")]
    failed: Counter[str] = Counter(g for _, e in with_ladder if not e.get("passing_level")
                                   for g in (_ladder_pick(e) or {}).get("failed") or [])
    text = (f"{len(passing)} of {len(with_ladder)} runs have a ladder level that passes every gate"
            + (": " + ", ".join(f"{name} ({level})" for name, level in passing) if passing else "") + ".")
    if failed:
        text += (" The others' closest level fails " + ", ".join(f"{gate} ({n} run{'s' if n > 1 else ''})"
                                                               for gate, n in failed.most_common()) + ".")
    return text


def _times(x: Any) -> str:
    return "n/a" if _number(x) is None else f"{x:.1f}x"


def _num(x: Any) -> str:
    return "n/a" if _number(x) is None else f"{x:.2f}"


def _pct(x: Any, digits: int = 0) -> str:
    return "n/a" if _number(x) is None else f"{100 * x:.{digits}f}%"


def head_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, head): in the circuit or not, mirror score, ablation and patching effects."""
    columns = ["run", "head", "in circuit", "mirror score", "resample-ablation margin loss",
               "zero-ablation margin loss", "patching recovery"]
    rows = []
    for run in runs:
        for head, evidence in sorted(((run.summary or {}).get("evidence") or {}).items()):
            rows.append(dict(zip(columns, [
                run.name, head, bool(evidence.get("in_circuit")), evidence.get("mirror_score"),
                evidence.get("resample_ablation_margin_loss"), evidence.get("zero_ablation_margin_loss"),
                evidence.get("patching_recovery")])))
    return pd.DataFrame(rows, columns=columns)


def edge_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, circuit edge) with its path-patching effect."""
    columns = ["run", "from", "to", "via", "effect"]
    rows = [[run.name, e["from"], e["to"], e["via"], e["effect"]]
            for run in runs for e in (run.circuit or {}).get("edges", [])]
    return pd.DataFrame(rows, columns=columns)


def param_order(runs: list[Run], param: str) -> list[str]:
    """The values a param takes across runs, as axis categories: numbers ascending, then the rest by JSON text."""
    values = {json.dumps(r.params.get(param), sort_keys=True): r.params.get(param) for r in runs}
    return [str(v) for _, v in sorted(values.items(), key=lambda kv: (
        not isinstance(kv[1], int | float) or isinstance(kv[1], bool),
        kv[1] if isinstance(kv[1], int | float) and not isinstance(kv[1], bool) else 0, kv[0]))]


def accuracy_figure(runs: list[Run], param: str) -> go.Figure:
    fig = go.Figure()
    for label, getter in (("test accuracy", lambda r: r.accuracy), ("distance-1 accuracy", lambda r: r.near1_accuracy)):
        points = [(str(r.params.get(param)), getter(r), r.name) for r in runs if getter(r) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], text=[p[2] for p in points],
                                 mode="markers", name=label, marker={"size": 11},
                                 hovertemplate="%{text}<br>%{x}: %{y:.4f}<extra></extra>"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=param_order(runs, param))
    return label_figure(fig, f"Accuracy against {param}", x_title=param, y_title="accuracy")


def circuit_heatmap(heads: pd.DataFrame, value: str, title: str) -> go.Figure:
    grid = heads.pivot_table(index="run", columns="head", values=value, aggfunc="first", sort=True)
    member = set(zip(heads.loc[heads["in circuit"], "run"], heads.loc[heads["in circuit"], "head"]))
    text = [["●" if (run, head) in member else "" for head in grid.columns] for run in grid.index]
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index), text=text,
                               texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=1,
                               hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>"))
    return label_figure(fig, title, x_title="head (L{layer}H{head})", y_title="run", color_title=value)


Graph = tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]  # (nodes, edges as (from, to, via))


def circuit_graph(circuit: dict[str, Any]) -> Graph:
    nodes = tuple(sorted(n["name"] for n in circuit.get("nodes", []) if n.get("role") == "circuit"))
    edges = tuple(sorted((e["from"], e["to"], e["via"]) for e in circuit.get("edges", [])))
    return nodes, edges


def _rename(name: str, mapping: dict[tuple[int, int], int]) -> str:
    """`L0H1@chars` with head (0, 1) renamed by `mapping`; other names unchanged."""
    component, at, group = name.partition("@")
    match = re.fullmatch(r"L(\d+)H(\d+)", component)
    if not match:
        return name
    layer, head = int(match[1]), int(match[2])
    return f"L{layer}H{mapping.get((layer, head), head)}{at}{group}"


def canonical_graph(graph: Graph, n_heads: int) -> Graph:
    """The graph up to the naming of heads within a layer: the smallest of its renamings.

    Permuting the heads of a layer (with their weights) leaves the model's function unchanged, so two runs
    whose graphs differ only by such a renaming learnt the same circuit."""
    nodes, edges = graph
    layers = sorted({int(m[1]) for n in nodes for m in [re.match(r"L(\d+)H", n)] if m})
    per_layer = [list(itertools.permutations(range(n_heads))) for _ in layers]
    if math.prod(len(p) for p in per_layer) > MAX_RENAMINGS:
        return graph  # too many renamings to try: compare by name
    best = None
    for perms in itertools.product(*per_layer):
        mapping = {(layer, h): perm[h] for layer, perm in zip(layers, perms) for h in range(n_heads)}
        renamed = (tuple(sorted(_rename(n, mapping) for n in nodes)),
                   tuple(sorted((_rename(a, mapping), _rename(b, mapping), via) for a, b, via in edges)))
        best = renamed if best is None or renamed < best else best
    return best if best is not None else graph


def _describe(graph: Graph) -> str:
    nodes, edges = graph
    return (f"nodes {', '.join(nodes) or 'none'}; edges "
            + (", ".join(f"{a} -> {b} ({via})" for a, b, via in edges) or "none"))


def verdict(runs: list[Run]) -> str:
    """One or two sentences: do the runs with a circuit learn the same graph, by name or up to head naming?"""
    with_circuit = [r for r in runs if r.circuit and r.summary]
    if len(with_circuit) < 2:
        return "Fewer than two runs have a circuit, so there is nothing to compare yet."
    graphs = {r.name: circuit_graph(r.circuit) for r in with_circuit}
    n_heads = {int((r.summary.get("model") or {}).get("n_heads") or 0) for r in with_circuit}
    if len(set(graphs.values())) == 1:
        (graph,) = set(graphs.values())
        return f"All {len(graphs)} runs learn the same circuit graph: {_describe(graph)}."
    canonical = {name: canonical_graph(g, max(n_heads)) for name, g in graphs.items()} if len(n_heads) == 1 \
        else graphs
    shapes = sorted(set(canonical.values()))
    if len(shapes) == 1:
        names = "; ".join(f"{name}: {', '.join(g[0])}" for name, g in graphs.items())
        return (f"The runs name different heads ({names}), but their graphs are the same up to the naming of heads "
                f"within a layer, which leaves a model's function unchanged: the same circuit ({_describe(shapes[0])}).")
    groups = "; ".join(f"[{_describe(shape)}]: {', '.join(n for n, g in canonical.items() if g == shape)}"
                       for shape in shapes)
    core = _common_nodes([g[0] for g in graphs.values()])
    return (f"The runs learn {len(shapes)} different circuit graphs, even allowing for the naming of heads within a "
            f"layer: {groups}. Nodes common to every run, heads counted by layer: {core or 'none'}. Compare their "
            "faithfulness, scrubbing verdicts and mirror scores below.")


def _common_nodes(node_sets: list[tuple[str, ...]]) -> str:
    """The nodes every run has, with heads counted per layer (`2 x layer-1 head@bos`), since heads within a
    layer can be renamed."""
    def counts(nodes: tuple[str, ...]) -> Counter[str]:
        return Counter(re.sub(r"^L(\d+)H\d+@", r"layer-\1 head@", n) for n in nodes)

    common = counts(node_sets[0])
    for nodes in node_sets[1:]:
        common &= counts(nodes)
    return ", ".join(f"{k} x {n}" if k > 1 else n for n, k in sorted(common.items()))


def build_page(runs: list[Run]) -> Page:
    if not runs:
        raise PalindromeLensError("no runs found: run `dvc repro` or `dvc exp run` first")
    swept = swept_params(runs)
    heads = head_table(runs)
    sections = [
        Section("Runs", "One row per run (the workspace, baseline commits and experiments). Columns: the params "
                "that differ between runs, test accuracy, accuracy on distance-1 strings, the circuit's nodes "
                "(component@positions) and edges, its faithfulness (share of the class-balanced margin kept with "
                "every other node resample-ablated) and completeness gap, the balanced accuracy with only the "
                "circuit kept and with the circuit ablated (a constant predictor scores 50%), and each scrubbing "
                "hypothesis' verdict with the % of loss it recovers and its control.", Table(runs_table(runs, swept))),
        Section("Programs", "Each run's explanation program (data/explanation/program.py: its family, lines of logic, "
                "numbers read from the model and fitted) and how much of the model it reproduces: decisions alike on "
                "test and on the single edits, the model's own errors on the edits it reproduces, R^2 and Spearman of "
                "the logit difference within each class, and the smallest interchange-intervention accuracy over its "
                "variables with the largest wrong-position control.", Table(program_table(runs))),
        Section("Explanation ladder", "Each run's ladder of programs (data/explanation/programs/, smallest first): the "
                "smallest level that passes every gate, or none and the gates its closest level (program.py's) "
                "fails; that level's size, numbers read from the model plus fitted, against the model's parameter "
                "count; every level's within-class Spearman / R^2 with the model's logit difference on the single "
                "edits and its recall / precision of the model's own errors there; the failures the levels propose "
                "(the best level: distinct strings the model misclassifies, the share of its proposals that are, "
                "and that share against uniformly drawn single edits'); and the graded interventions' Spearman "
                "(breaking a pair differently) of the passing or closest level, with its wrong-position control.",
                Table(ladder_table(runs))),
        Section("Which level passes?", "Counted over the runs with a ladder; the gates are the explain stage's "
                "(params.yaml, explain: the targets).", Text(ladder_verdict(runs))),
        Section("Ladder levels", "One row per run and level: size (numbers read, fitted, and their sum against the "
                "model's parameters), decisions alike on the edits, the model's errors there and the level's recall "
                "and precision of them, within-class Spearman and R^2 on the edits and on test, the smallest IIA and "
                "the largest wrong-position control, the graded interventions' Spearman (broken and matched kinds), "
                "the failures it proposed, the gates it fails, and whether it passes.", Table(level_table(runs))),
        Section("Same circuit?", "Judged on each run's circuit graph (nodes and edges from circuit.json), allowing "
                "the heads of a layer to be renamed.", Text(verdict(runs))),
        Section("Same algorithm?", "Each run's discovered hypothesis: after every layer, the coarsest feature of the "
                "library each position group can be scrubbed down to (the attribute stage's hypothesis search by "
                "causal scrubbing). Runs that share it are listed together.", Text(discovered_verdict(runs))),
        Section("Discovered hypotheses", "One row per run and layer boundary: the hypothesis, its bits per group on "
                "the analysis set, the share of the loss recovered on the scale from a random scrub (0) to the model "
                "(1) and from a constant predictor (0), the balanced accuracy recovered, the same with each pair "
                "scrubbed alone (the weakest pair's figure), the control (it must fail) and the verdict.", Table(discovered_table(runs))),
    ]
    for param in swept:
        sections.append(Section(f"Accuracy against {param}",
                                "Each marker is a run; categories are the values of the swept param. "
                                "Distance-1 strings (one broken mirrored pair) are the hard cases.",
                                Figure(accuracy_figure(runs, param))))
    if len(heads):
        sections += [
            Section("Mirror score per head", "Attention mass from character i to its mirror L+1-i, per run "
                    "(rows) and head (columns). ● marks the run's circuit heads.",
                    Figure(circuit_heatmap(heads, "mirror score", "Mirror score per head and run"))),
            Section("Resample-ablation effect per head", "Share of the class-balanced margin lost when the head "
                    "alone is resample-ablated at every position (0 = no effect, 1 = all of it). ● marks the circuit "
                    "heads.", Figure(circuit_heatmap(heads, "resample-ablation margin loss",
                                                     "Resample-ablation margin loss per head and run"))),
            Section("Head evidence", "Every head of every run with its evidence; zero ablation only as a contrast.",
                    Table(heads)),
            Section("Circuit edges", "Every run's circuit edges with their path-patching effect (share of the logit "
                    "difference restored when only that edge carries the clean palindrome's value).",
                    Table(edge_table(runs))),
        ]
    notes = [f"{r.name}: {n}" for r in runs for n in r.notes]
    if notes:
        sections.append(Section("Notes", "Runs with missing pieces.", Text("\n\n".join(notes))))
    return Page("experiments.html", "Experiments: accuracy and circuits across runs",
                f"{len(runs)} runs compared; swept params: {', '.join(swept) or 'none'}.", sections,
                nav_label="Experiments")


def baseline_params(repo: Path, rev: str | None = None) -> dict[str, Any]:
    """The flattened params.yaml of the baseline commit (HEAD, or `rev`): what the runs' params differ from."""
    import yaml

    proc = subprocess.run(["git", "show", f"{rev or 'HEAD'}:params.yaml"], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PalindromeLensError(f"cannot read params.yaml at {rev or 'HEAD'}: {proc.stderr.strip()}")
    keys = set(known_keys())
    return {k: v for k, v in _flatten(yaml.safe_load(proc.stdout)).items() if k in keys}


def print_grid(repo: Path, runs: list[Run], rev: str | None = None) -> None:
    """Each run against issue 23's target, as Markdown on stdout (palindrome_lens/compare_grid.py)."""
    from palindrome_lens.compare_grid import grid_report, grid_text, queue_log

    print(grid_text(grid_report(runs, baseline_params(repo, rev), lambda name: queue_log(repo, name))), end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m palindrome_lens.compare", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC project (default: .)")
    parser.add_argument("--out", type=Path, default=Path("reports/experiments.html"), help="the page to write")
    parser.add_argument("--rev", help="the baseline commit whose experiments to compare (default: HEAD); experiments "
                        "queued before a later commit are listed under the commit they were queued on")
    parser.add_argument("--grid", action="append", metavar="PATTERN", help="compare only the runs whose names match "
                        "this glob (repeatable) and print each one against issue 23's target (palindrome_lens/"
                        "compare_grid.py): hypothesis per boundary, program, scores, circuit verdicts, the attribute "
                        "stage's time from `dvc queue logs`")
    args = parser.parse_args(argv)
    try:
        runs = collect_runs(args.repo.resolve(), args.rev, args.grid)
        if args.grid:
            print_grid(args.repo.resolve(), runs, args.rev)
        page = build_page(runs)
        page = Page(args.out.name, page.title, page.intro, page.sections, page.nav_label)
        build_report(args.out.parent, [page])
    except PalindromeLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"compare: {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


