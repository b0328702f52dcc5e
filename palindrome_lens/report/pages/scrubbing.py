"""The causal-scrubbing sections of the circuit page: per hypothesis the share of the loss its scrub
recovers beside the control scrub and a constant predictor on the same scale, the verdict, and the
per-class losses of every run, so that a class gaining what the other loses shows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.formatting import num, pct
from palindrome_lens.report.html import Section
from palindrome_lens.report.inputs import SCRUB_RUNS, finite
from palindrome_lens.report.plots import grouped_bars

RUN_LABELS = {"model": "model (nothing scrubbed)", "hypothesis": "hypothesis scrub", "control": "control scrub",
              "random": "random scrub (every scrubbed position from any string)"}
BARS = {"recovered": "hypothesis scrub", "control": "control scrub", "constant": "constant predictor"}


def keeps(result: dict[str, Any]) -> str:
    kept = "; ".join(f"{group}: {feature}" for group, feature in result["keep"].items())
    return f"{kept}; other groups resampled at random"


def verdict_table(scrubbing: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{"hypothesis": r["name"], "claim": r["claim"], "after layer": r["after_layer"], "keeps": keeps(r),
             "recovered": pct(r["recovered"]), "accuracy recovered": pct(r.get("accuracy_recovered")),
             "control": pct(r["control"]), "constant predictor": pct(r["constant"]),
             "verdict": r["verdict"], "draws": r["n_draws"]} for r in scrubbing]
    return pd.DataFrame(rows)


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


def recovered_figure(scrubbing: list[dict[str, Any]], target: float) -> Figure:
    series = {label: [finite(r[key]) for r in scrubbing] for key, label in BARS.items()}
    hover = {label: [f"{r['name']}, {label}: {pct(r[key])}" for r in scrubbing] for key, label in BARS.items()}
    fig = grouped_bars([r["name"] for r in scrubbing], series, "Share of the loss recovered by each scrub",
                       "hypothesis", "loss recovered (0 = random scrub, 100% = model)", legend_title="run",
                       hover=hover)
    fig.update_yaxes(tickformat=".0%")
    fig.add_hline(y=target, line_dash="dash", line_color="#52606d",
                  annotation_text=f"faithfulness target {pct(target, 0)}", annotation_position="top right")
    return Figure(fig)


def scrubbing_sections(circuit: dict[str, Any]) -> list[Section]:
    scrubbing = circuit["scrubbing"]
    target = circuit["gates"]["faithfulness_target"]
    if not scrubbing:
        return [Section("Causal scrubbing", "Hypotheses come from attribute.hypotheses in params.yaml.",
                        Text("No hypothesis was given, so nothing was scrubbed."))]
    scale = ("% recovered = (random loss − scrubbed loss) / (random loss − model loss) of the class-balanced "
             "cross-entropy: 0% is every scrubbed position resampled from any string of the same length, 100% the "
             "model itself. 'accuracy recovered' is the same scale on class-balanced accuracy: a random scrub that is "
             "confidently wrong makes the loss scale long, so a scrub can keep most of the loss and still flip answers.")
    return [
        Section("Causal scrubbing: loss recovered", (
            "A hypothesis says what the residual stream after one layer carries at each group of positions; its "
            "scrub resamples each position from another string that agrees on that feature, so if the hypothesis is "
            "right the loss stays the model's. The control scrub takes strings that disagree on the feature: it must "
            "lose the performance. " + scale + " The constant predictor bar is where always answering the same "
            "would sit on this scale: it is high when the random scrub is confidently wrong (a loss above ln 2), and "
            f"a scrub below it does worse than knowing nothing. Averaged over {num(scrubbing[0]['n_draws'])} draws."),
            recovered_figure(scrubbing, target)),
        Section("Causal scrubbing: verdicts", (
            f"A hypothesis is supported when its scrub recovers at least {pct(target, 0)} and its control recovers "
            "less than the constant predictor (the control fails); a control that does not fail makes the test "
            "inconclusive. 'keeps' is the feature kept per position group."), Table(verdict_table(scrubbing))),
        Section("Causal scrubbing: losses per class", (
            "Each run's class-balanced cross-entropy and its mean loss on palindromes and on non-palindromes. A "
            "scrub whose balanced loss looks fine because one class improves while the other gets worse shows "
            "here as a large loss on one class. The constant predictor loses ln 2 on every string."),
            Table(loss_table(scrubbing), digits=3)),
    ]
