"""The causal-scrubbing sections of the circuit page: per hypothesis the losses of the model, its scrub, the
control scrub, the random scrub and a constant predictor on a log axis, the verdict with the share of the loss
and of the balanced accuracy recovered, and the per-class losses of every run, so that a class gaining what the
other loses shows."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.downloads import Download
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import num, pct
from palindrome_lens.report.html import Section
from palindrome_lens.report.inputs import SCRUB_RUNS, finite

RUN_LABELS = {"model": "model (nothing scrubbed)", "hypothesis": "hypothesis scrub", "control": "control scrub",
              "random": "random scrub (every scrubbed position from any string)"}
CONSTANT = "constant predictor"


def keeps(result: dict[str, Any]) -> str:
    kept = "; ".join(f"{group}: {feature}" for group, feature in result["keep"].items())
    return f"{kept}; other groups resampled at random"


def verdict_table(scrubbing: list[dict[str, Any]]) -> pd.DataFrame:
    """Verdict and key figures first (the constant-anchored scale leading, the random-anchored one beside it),
    the hypothesis's own words last."""
    rows = [{"hypothesis": r["name"], "verdict": r["verdict"],
             "loss recovered, from a constant predictor": pct(r.get("recovered_constant")),
             "from a random scrub": pct(r["recovered"]), "accuracy recovered": pct(r.get("accuracy_recovered")),
             "each pair alone": pct((r.get("local") or {}).get("recovered")),
             "control, from a constant": floor_pct(r.get("control_constant")),
             "self draws": pct(r.get("self_draw_share")), "draws": r["n_draws"], "after layer": r["after_layer"],
             "keeps": keeps(r), "claim": r["claim"]} for r in scrubbing]
    return pd.DataFrame(rows)


def floor_pct(value: Any) -> str:
    """A control's share: below −100% it only says the control is far worse than a constant predictor."""
    return "below −100% (worse than a constant)" if value is not None and value < -1 else pct(value)


def loss_table(scrubbing: list[dict[str, Any]]) -> pd.DataFrame:
    """Per hypothesis, each run's class-balanced loss and its loss on each class; the constant predictor's
    row is the label entropy (ln 2 on every string)."""
    rows = []
    for r in scrubbing:
        for run in SCRUB_RUNS:
            v = r["runs"][run]
            rows.append({"hypothesis": r["name"], "run": RUN_LABELS[run], "loss (balanced)": finite(v["loss"]),
                         "loss on palindromes": finite(v["loss_palindrome"]),
                         "loss on non-palindromes": finite(v["loss_not_palindrome"]),
                         "balanced accuracy": finite(v["balanced_accuracy"]),
                         "balanced margin": finite(v["balanced_margin"])})
        entropy = finite(r["baseline"]["label_entropy"])
        rows.append({"hypothesis": r["name"], "run": "constant predictor", "loss (balanced)": entropy,
                     "loss on palindromes": entropy, "loss on non-palindromes": entropy, "balanced accuracy": 0.5,
                     "balanced margin": 0.0})
    return pd.DataFrame(rows)


POINTS = (("hypothesis", "hypothesis scrub", "diamond", "#2f9e44"),
          ("model", "model (nothing scrubbed)", "circle-open", "#1f2933"),  # open: a scrub as good shows inside
          ("control", "control scrub", "x", "#c92a2a"),
          ("random", "random scrub", "square", "#868e96"))
LOSS_FLOOR = 1e-8  # a loss of 0 cannot sit on a log axis


def loss_figure(scrubbing: list[dict[str, Any]]) -> Figure:
    """One row per hypothesis, its runs' class-balanced losses as points on a log axis, the constant predictor's
    ln 2 among them: the distances between the points are what the % recovered compresses."""
    hypotheses = [r["name"] for r in scrubbing]
    fig = go.Figure()
    for run, label, symbol, color in POINTS:
        losses = [max(LOSS_FLOOR, finite(r["runs"][run]["loss"]) or LOSS_FLOOR) for r in scrubbing]
        hover = [f"{r['name']}, {label}: loss {num(r['runs'][run]['loss'])}, balanced accuracy "
                 f"{pct(r['runs'][run]['balanced_accuracy'])}" for r in scrubbing]
        fig.add_trace(go.Scatter(x=losses, y=hypotheses, mode="markers", name=label, hovertext=hover, hoverinfo="text",
                                 marker={"symbol": symbol, "size": 17 if run == "model" else 13, "color": color,
                                         "line": {"width": 2 if run == "model" else 1}}))
    entropy = [finite(r["baseline"]["label_entropy"]) for r in scrubbing]
    fig.add_trace(go.Scatter(x=entropy, y=hypotheses, mode="markers", name=f"{CONSTANT} (ln 2)",
                             marker={"symbol": "line-ns-open", "size": 22, "color": "#7048e8", "line": {"width": 3}},
                             hovertext=[f"{CONSTANT}: loss {num(e)}" for e in entropy], hoverinfo="text"))
    fig.update_xaxes(type="log", dtick=1, exponentformat="power")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(height=max(380, 200 + 60 * len(scrubbing)), legend_title_text="run")
    return Figure(label_figure(fig, "Scrubbing losses: each scrub between the model and chance",
                               "class-balanced cross-entropy loss (log scale)", "hypothesis"))


def scrubbing_sections(circuit: dict[str, Any]) -> list[Section]:
    scrubbing = circuit["scrubbing"]
    target = circuit["gates"]["faithfulness_target"]
    if not scrubbing:
        return [Section("Causal scrubbing", "Hypotheses come from attribute.hypotheses in params.yaml.",
                        Text("No hypothesis was given, so nothing was scrubbed."), anchor="scrubbing")]
    losses = loss_table(scrubbing)
    data = [Download("scrubbing_losses.csv", losses, "data/attribution/circuit.json, key scrubbing")]
    return [
        Section("Causal scrubbing: each run's loss", (
            "Causal scrubbing tests what a hypothesis says the residual stream carries after one layer: each position "
            "is resampled from another string that agrees on that feature. Each row is one hypothesis; the points are "
            "the loss of the model, of the hypothesis scrub, of its control scrub (strings that disagree: it must "
            "lose the performance), of the random scrub and of a constant predictor. A right hypothesis sits next to "
            "the model, far left of the control, the random scrub and the constant predictor. The loss recovered "
            "(table below) puts the hypothesis on two scales: first from the constant predictor (0%) to the model "
            "(100%), the one that says whether the scrub beats always answering the same; beside it from the random "
            "scrub (0%) to the model. Averaged "
            f"over {num(scrubbing[0]['n_draws'])} draws."), loss_figure(scrubbing), anchor="scrubbing", data=data),
        Section("Causal scrubbing: verdicts", (
            f"A hypothesis is supported when its scrub keeps {pct(target, 0)} to {pct(2 - target, 0)} of the loss on "
            "both scales and of the balanced accuracy, all at once and with each mirrored pair scrubbed alone (the "
            "rest left as it is), beats a constant predictor, its control misses those gates, and most scrubbed "
            "positions found another string than their own ('self draws' is the share that did not); a control "
            "that passes, or a scrub that mostly drew itself, makes the test inconclusive. 'keeps' is the feature "
            "kept per position group. The hypothesis search's results are on the Algorithm page."),
            Table(verdict_table(scrubbing))),
        Section("Causal scrubbing: losses per class", (
            "Each run's class-balanced cross-entropy and its mean loss on palindromes and on non-palindromes. A "
            "scrub whose balanced loss looks fine because one class improves while the other gets worse shows "
            "here as a large loss on one class. The constant predictor loses ln 2 on every string."),
            Table(losses, digits=3)),
    ]
