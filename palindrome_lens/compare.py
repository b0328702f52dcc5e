"""Compare the workspace and every DVC experiment: accuracy against each swept param, and whether the
runs learn the same circuit (which heads, their mirror scores and ablation effects).

    python -m palindrome_lens.compare [--repo .] [--out reports/experiments.html]

Runs are listed by `dvc exp show --json` (params and metrics); each run's circuit summary,
`data/attribution/summary.json`, is read at its revision through `dvc.api`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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


@dataclass
class Run:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    summary: dict[str, Any] | None = None
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


def exp_show(repo: Path) -> list[dict[str, Any]]:
    """`dvc exp show --json`: the workspace, the baseline commit(s) and their experiments.

    Not dvc.api.exp_show(): its flat rows lose param types, the baseline's commit and which file each metric
    came from (tests/test_experiments.py shows how)."""
    # `python -m dvc` from this interpreter: works when the venv is not on PATH
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo, capture_output=True,
                          text=True)
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


def read_summary(repo: Path, rev: str) -> dict[str, Any] | None:
    """A run's circuit summary at its revision (the workspace's from disk), or None if absent."""
    if rev == "workspace":
        path = repo / SUMMARY
        return json.loads(path.read_text()) if path.is_file() else None
    import dvc.api  # slow to import; only needed for committed runs

    try:
        return json.loads(dvc.api.read(SUMMARY, repo=str(repo), rev=rev))
    except Exception:  # noqa: BLE001 - dvc raises many kinds (missing cache, missing path)
        return None


def collect_runs(repo: Path) -> list[Run]:
    keys = set(known_keys())
    runs = []
    entries = list_runs(exp_show(repo))
    for name, rev, data in tqdm(entries, desc="reading experiments", disable=tqdm_disabled() or len(entries) < 4):
        params = {k: v for k, v in _flatten(data.get("params", {}).get("params.yaml", {}).get("data", {})).items()
                  if k in keys}
        metrics = (data.get("metrics", {}).get(EVAL_METRICS) or {}).get("data", {})
        run = Run(name=name, rev=rev, params=params, metrics=metrics)
        run.summary = read_summary(repo, rev)
        if run.summary is None:
            run.notes.append("no circuit summary (attribute stage not run, or its output not in the cache)")
        runs.append(run)
    return runs


def swept_params(runs: list[Run]) -> list[str]:
    """Params whose values differ between runs, in params.yaml order."""
    return [key for key in known_keys()
            if len({json.dumps(r.params.get(key), sort_keys=True) for r in runs}) > 1]


def runs_table(runs: list[Run], swept: list[str]) -> pd.DataFrame:
    rows = []
    for run in runs:
        summary = run.summary or {}
        accuracy = (summary.get("circuit_accuracy") or {})
        rows.append({
            "run": run.name,
            "rev": run.rev if run.rev == "workspace" else run.rev[:7],
            **{key: json.dumps(run.params.get(key)) if isinstance(run.params.get(key), list | dict)
               else run.params.get(key) for key in swept},
            "test accuracy": run.accuracy,
            "distance-1 accuracy": run.near1_accuracy,
            "circuit heads": ", ".join(summary.get("circuit_heads", [])) or "n/a",
            "d1 acc, circuit ablated": (accuracy.get("circuit_ablated") or {}).get("distance_1_accuracy"),
            "d1 acc, others ablated": (accuracy.get("others_ablated") or {}).get("distance_1_accuracy"),
            # a model that falls back to "not a palindrome" keeps distance-1 accuracy when its circuit is
            # ablated; the palindromes are where the loss shows
            "palindrome acc, circuit ablated": (accuracy.get("circuit_ablated") or {}).get("palindrome_accuracy"),
            "palindrome acc, others ablated": (accuracy.get("others_ablated") or {}).get("palindrome_accuracy"),
        })
    return pd.DataFrame(rows)


def head_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, head): in the circuit or not, mirror score, ablation and patching effects."""
    rows = []
    for run in runs:
        summary = run.summary or {}
        circuit = set(summary.get("circuit_heads", []))
        for head, evidence in sorted((summary.get("evidence") or {}).items()):
            rows.append({
                "run": run.name,
                "head": head,
                "in circuit": head in circuit,
                "mirror score": evidence.get("mirror_score"),
                "mean-ablation margin loss": evidence.get("mean_ablation_margin_loss"),
                "patching recovery": evidence.get("patching_recovery"),
            })
    return pd.DataFrame(rows, columns=["run", "head", "in circuit", "mirror score", "mean-ablation margin loss",
                                       "patching recovery"])


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


MIRROR = 0.5  # a head whose mirror score is at least this compares mirrored characters


def roles(summary: dict[str, Any]) -> tuple[str, ...]:
    """A circuit up to head naming: its heads as (layer, mirror head or not), sorted.

    Heads within a layer are interchangeable (permuting them leaves the model's function unchanged), so two
    runs whose circuits are "one layer-0 mirror head plus both layer-1 heads" learnt the same mechanism
    even when the mirror head is L0H0 in one and L0H1 in the other."""
    evidence = summary.get("evidence") or {}
    found = []
    for head in summary.get("circuit_heads", []):
        e = evidence.get(head) or {}
        mirror = (_number(e.get("mirror_score")) or 0.0) >= MIRROR
        found.append(f"layer-{e.get('layer', '?')} {'mirror head' if mirror else 'head'}")
    return tuple(sorted(found))


def verdict(runs: list[Run]) -> str:
    """One or two sentences: do the runs with a summary name the same circuit, by name or by role?"""
    with_summary = [r for r in runs if r.summary]
    if len(with_summary) < 2:
        return "Fewer than two runs have a circuit summary, so there is nothing to compare yet."
    # the order of the heads is their ranking, not part of the circuit
    circuits = {r.name: tuple(sorted(r.summary.get("circuit_heads", []))) for r in with_summary}
    distinct = sorted(set(circuits.values()))
    if len(distinct) == 1:
        return (f"All {len(with_summary)} runs name the same circuit heads ({', '.join(distinct[0])}): "
                "they learn the same mechanism at the head level.")
    groups = "; ".join(f"{', '.join(c) or 'none'}: {', '.join(n for n, h in circuits.items() if h == c)}"
                       for c in distinct)
    by_role = {roles(r.summary) for r in with_summary}
    if len(by_role) == 1:
        (shape,) = by_role
        return (f"The runs name different heads ({groups}), but every circuit has the same shape: "
                f"{', '.join(shape)} (a mirror head attends from each character to its mirror, score >= {MIRROR}). "
                "Heads within a layer are interchangeable, so this is the same mechanism under other names.")
    shapes = {r.name: roles(r.summary) for r in with_summary}
    by_shape = "; ".join(f"{', '.join(shape) or 'none'}: {', '.join(n for n, h in shapes.items() if h == shape)}"
                         for shape in sorted(by_role))
    return (f"The runs name {len(distinct)} different circuits ({groups}) of {len(by_role)} different shapes "
            f"({by_shape}): these runs learnt different mechanisms; compare the mirror scores and ablation "
            "effects below.")


def build_page(runs: list[Run]) -> Page:
    if not runs:
        raise PalindromeLensError("no runs found: run `dvc repro` or `dvc exp run` first")
    swept = swept_params(runs)
    heads = head_table(runs)
    sections = [
        Section("Runs", "One row per run (the workspace, baseline commits and experiments). Columns: the params "
                "that differ between runs, test accuracy, accuracy on distance-1 strings, the circuit heads the "
                "attribute stage chose, and accuracy on distance-1 strings and on palindromes with only those heads "
                "mean-ablated vs with all other heads mean-ablated.", Table(runs_table(runs, swept))),
        Section("Same circuit?", "Generated from the circuit heads each run's summary names.", Text(verdict(runs))),
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
            Section("Mean-ablation effect per head", "Share of the mean margin lost when the head alone is "
                    "mean-ablated (0 = no effect, 1 = all of it). ● marks the circuit heads.",
                    Figure(circuit_heatmap(heads, "mean-ablation margin loss",
                                           "Mean-ablation margin loss per head and run"))),
            Section("Head evidence", "Every head of every run with its evidence.", Table(heads)),
        ]
    notes = [f"{r.name}: {n}" for r in runs for n in r.notes]
    if notes:
        sections.append(Section("Notes", "Runs with missing pieces.", Text("\n\n".join(notes))))
    return Page("experiments.html", "Experiments: accuracy and circuits across runs",
                f"{len(runs)} runs compared; swept params: {', '.join(swept) or 'none'}.", sections,
                nav_label="Experiments")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m palindrome_lens.compare", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC project (default: .)")
    parser.add_argument("--out", type=Path, default=Path("reports/experiments.html"), help="the page to write")
    args = parser.parse_args(argv)
    try:
        runs = collect_runs(args.repo.resolve())
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


