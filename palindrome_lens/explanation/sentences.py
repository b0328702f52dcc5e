"""What the explanation may say, each claim gated by a number that could have come out against it.

- "The model runs this program" only when decision agreement (test and edits), error recall and precision
  (or no errors on either side), and every variable's IIA on the decision-changing pairs pass their targets,
  with every control at or below its maximum; otherwise what it reproduces and what it misses.
- The weakest pair: where the model fails most on single edits, whether the program fails there too, and
  whether the program's constants single that pair out (its mismatch salience or evidence is the lowest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from palindrome_lens.params import ExplainParams


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.{digits}f}%"


def span(low: float | None, high: float | None) -> str:
    """'95.3% to 98.6%', or one figure when both ends read the same."""
    a, b = pct(low), pct(high)
    return a if a == b else f"{a} to {b}"


def num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def against(x: float | None, target: float) -> str:
    """A figure beside its gate: with three decimals where two would read as the target itself (0.303 and 0.297
    both read 0.30 against 0.30)."""
    close = x is not None and not np.isnan(x) and num(x) == num(target) and x != target
    return num(x, 3 if close else 2)


def errors_pass(f: Mapping[str, Any], params: ExplainParams) -> bool | None:
    """Recall and precision reach their targets; None (cannot be judged) when the model makes fewer than
    `min_errors` errors: a recall of 0 of 2 says nothing."""
    if f["model_errors"] < params.min_errors:
        return None
    return (f["error_recall"] or 0) >= params.error_recall_target and \
        (f["error_precision"] or 0) >= params.error_precision_target


def fit_pass(f: Mapping[str, Any], params: ExplainParams) -> bool | None:
    """The graded fit: within each class the program's logit difference follows the model's; None (nothing to
    judge) when the model gives one value per class."""
    if f["r2"] is None and f["spearman"] is None:
        return None
    return (f["spearman"] if f["spearman"] is not None else -1.0) >= params.spearman_target and \
        (f["r2"] if f["r2"] is not None else -math.inf) >= params.r2_target


def gate_checks(agreement: Mapping[str, Any], iia: pd.DataFrame, params: ExplainParams) -> dict[str, bool | None]:
    """Every gate of "the model runs this program": True, False, or None where it cannot be judged."""
    test, edits = agreement["test"], agreement["edits"]
    resid = iia_facts(iia, "resid")
    return {
        "decision agreement on test": (test["agreement"] or 0) >= params.agreement_target,
        "decision agreement on single edits": (edits["agreement"] or 0) >= params.agreement_target,
        # on the edits; on test where the model gives every edit of a class one value (nothing to follow there)
        "the within-class fit": fit if (fit := fit_pass(edits, params)) is not None else fit_pass(test, params),
        "the model's own errors": errors_pass(edits, params),
        "alignment": resid["min"] is not None and resid["min"] >= params.iia_target and resid["untested"] == 0,
        "the control": resid["n_controls"] == 0 or (resid["control_max"] is not None
                                                    and resid["control_max"] <= params.iia_control_max),
    }


def iia_facts(iia: pd.DataFrame, alignment: str) -> dict[str, Any]:
    aligned = iia[(iia["alignment"] == alignment) & (iia["kind"] == "aligned")]
    control = iia[(iia["alignment"] == alignment) & (iia["kind"] == "control")]
    node = aligned["node"].iloc[0] if len(aligned) else None
    return {"node": node, "min": _min(aligned["iia_changed"]), "max": _max(aligned["iia_changed"]),
            "control_max": _max(control["iia_changed"]), "n_variables": len(aligned), "n_controls": len(control),
            "untested": int(aligned["iia_changed"].isna().sum())}


def _min(s: pd.Series) -> float | None:
    s = s.dropna()
    return float(s.min()) if len(s) else None


def _max(s: pd.Series) -> float | None:
    s = s.dropna()
    return float(s.max()) if len(s) else None


def errors_text(f: Mapping[str, Any], min_errors: int) -> str:
    few = (f" (too few to judge recall and precision by: the gate needs at least {min_errors})"
           if f["model_errors"] < min_errors else "")
    if f["model_errors"] == 0:
        return (f"the model misclassifies none of them{few} and the program predicts {f['program_errors']} "
                "misclassifications" if f["program_errors"] else
                f"the model misclassifies none of them{few} and neither does the program")
    return (f"it reproduces {f['errors_reproduced']} of the model's {f['model_errors']} misclassifications{few} (recall "
            f"{pct(f['error_recall'])}, precision {pct(f['error_precision'])} of the {f['program_errors']} it predicts; "
            "the exact palindrome check reproduces none)")


def verdict(agreement: Mapping[str, Any], iia: pd.DataFrame, params: ExplainParams, program: Mapping[str, Any]
            ) -> tuple[bool, str]:
    """(runs the program?, the sentence)."""
    test, edits = agreement["test"], agreement["edits"]
    resid = iia_facts(iia, "resid")
    writer = iia_facts(iia, "writer")
    checks = gate_checks(agreement, iia, params)
    level = f"; ladder level {program['level']}" if program.get("level") else ""
    what = (f"The program (data/explanation/program.py{level}: {program['logic_lines']} lines of logic, "
            f"{program['n_read']} numbers read from the model and {program['n_fitted']} fitted)")
    figures = (f"it decides like the model on {pct(test['agreement'], 2)} of test strings and {pct(edits['agreement'], 2)} "
               f"of {edits['n']} single edits (target {pct(params.agreement_target, 2)}; the exact palindrome check "
               f"{pct(test['baseline_agreement'], 2)} and {pct(edits['baseline_agreement'], 2)}); within a class its "
               f"logit difference follows the model's with Spearman {against(edits['spearman'], params.spearman_target)} and R^2 "
               f"{against(edits['r2'], params.r2_target)} "
               f"on the edits (targets {num(params.spearman_target)} and {num(params.r2_target)}) and "
               f"{num(test['spearman'])} and {num(test['r2'])} on test (exact check {num(test['baseline_spearman'])} and "
               f"{num(test['baseline_r2'])}); on the edits {errors_text(edits, params.min_errors)}")
    alignment = (f"interchange interventions on {resid['node']} at a pair's two positions agree with the program on "
                 f"{span(resid['min'], resid['max'])} of the decision-changing (base, source) pairs, per "
                 f"variable (target {pct(params.iia_target, 0)}); patched at the wrong pair, "
                 f"{pct(resid['control_max'])} at most (at most {pct(params.iia_control_max, 0)} allowed)")
    if writer["node"]:
        alignment += (f"; {writer['node']} alone: {span(writer['min'], writer['max'])}, control at most "
                      f"{pct(writer['control_max'])}")
    if all(ok is not False for ok in checks.values()):
        return True, f"The model runs this program. {what}: {figures}; {alignment}."
    failed = ", ".join(name for name, ok in checks.items() if ok is False)
    return False, (f"{what} does not pass as the model's algorithm ({failed} below target). What it reproduces: "
                   f"{figures}; {alignment}.")


def program_pick(rows: Sequence[Mapping[str, Any]], n_model: int) -> int:
    """The row program.py compiles: the smallest level that passes every gate. When none does: among the levels
    beyond the floor (the exact check, the first row: the baseline the levels are measured against, not an
    explanation of this model) that are no larger than the model (an explanation is a compression), the one that
    fails the fewest gates, then follows the model best within a class (edits Spearman), then the larger. Where
    every level is larger than the model, size does not rule; the floor only where it is the whole ladder."""
    passing = next((i for i, r in enumerate(rows) if r["passes"]), None)
    if passing is not None:
        return passing
    levels = range(1, len(rows)) if len(rows) > 1 else range(len(rows))
    small = [i for i in levels if rows[i]["n_total"] <= n_model] or list(levels)

    def spearman(i: int) -> float:
        value = rows[i].get("spearman_edits")
        return -math.inf if value is None or math.isnan(value) else float(value)

    return min(small, key=lambda i: (len(rows[i]["failed"]), -spearman(i), -i))


def pick_reason(row: Mapping[str, Any], n_model: int) -> str:
    """Why program_pick chose `row` when no level passes, in words."""
    within = " that are no larger than the model" if row["n_total"] <= n_model else ""
    return (f"of the levels beyond the exact check (the baseline){within}, it fails the fewest gates "
            f"({len(row['failed'])}) and, of those, follows the model best within a class (edits Spearman "
            f"{num(row.get('spearman_edits'))})")


def ladder_sentence(rows: Sequence[Mapping[str, Any]], chosen: str | None, n_model: int, picked: str) -> str:
    """Which level passes the gates, and what each smaller level misses; when none passes, which level program.py
    is instead (`picked`, by program_pick) and why."""
    def size(r: Mapping[str, Any], times: bool = True) -> str:
        larger = (f", {r['n_total'] / n_model:.2f} times the model: more numbers than it explains"
                  if times and r["n_total"] > n_model else "")
        return f"{r['n_read']:,} numbers read and {r['n_fitted']:,} fitted{larger}"

    misses = "; ".join(f"{r['name']} ({size(r)}) misses {', '.join(r['failed'])}" for r in rows
                       if r["name"] != chosen and (chosen is None or r["n_total"] <= next(
                           x["n_total"] for x in rows if x["name"] == chosen)))
    if chosen is None:
        row = next(r for r in rows if r["name"] == picked)
        return (f"No level of the ladder passes the gates (the model has {n_model:,} parameters): {misses}. "
                f"program.py is the {picked} level: {pick_reason(row, n_model)}.")
    row = next(r for r in rows if r["name"] == chosen)
    larger = ": more numbers than it explains" if row["n_total"] > n_model else ""
    return (f"The smallest level that passes every gate is {chosen}: {size(row, times=False)}, "
            f"{row['n_total'] / n_model:.2%} of the model's {n_model:,} parameters{larger}"
            + (f". Smaller levels fail: {misses}." if misses else "."))


def ceiling_sentence(ceiling: Mapping[str, Any], top: Mapping[str, Any], params: ExplainParams) -> str:
    """What the template's readout reaches on the model's own features (explanation/ceiling.py), beside the
    ladder's top level: whether what a level misses is lost in its tables, and in which half, or is not in the
    features at all."""
    own = ceiling["model"]["edits"]
    if own["spearman"] is None or own["r2"] is None:
        return ""

    def fit(f: Mapping[str, Any]) -> str:
        return f"{against(f['spearman'], params.spearman_target)} / {against(f['r2'], params.r2_target)}"

    passes = own["spearman"] >= params.spearman_target and own["r2"] >= params.r2_target
    fed = (f"Fed the model's own features (each readout head's attention and evidence, and the readout's layer-0 "
           f"reading, as the model computes them), the same readout reaches Spearman / R^2 {fit(own)} on the edits")
    top_fit = fit({"spearman": top["spearman_edits"], "r2": top["r2_edits"]})
    if not passes and top.get("passes"):  # then it bounds nothing: say so rather than call it a ceiling
        return (fed + f", while the {top['name']} level passes at {top_fit}: the readout, fitted on the train strings, "
                "does not carry over to the model's own features on the edits, so on this model they set no ceiling "
                "for the levels.")
    head = fed + f", a ceiling for every level; the {top['name']} level reaches {top_fit}"
    if not passes:
        return (head + ": even the model's own features miss the within-class fit through this template's "
                "readout, so truer tables are not expected to pass it on this model; the model's lean within a class "
                "is not in these features (what reads the readout heads sees more than one direction per head).")
    halves = (f"; the model's attention with the tables' evidence reaches {fit(ceiling['model_attention']['edits'])}, "
              f"the tables' attention with the model's evidence {fit(ceiling['model_evidence']['edits'])}")
    lost = ("one salience (from the readout's mean query) and one evidence per (position, own, mirror), averaged over "
            "contexts, where the model's move with the rest of the string")
    if top.get("passes"):
        return head + halves + f": the tables keep what the gate asks; the ceiling's lead is what they leave out, {lost}."
    return head + halves + f": what the levels miss is lost in the tables, {lost}."


def forced_sentence(choice: Any) -> list[str]:
    """When the template was asked for (explain.family) rather than supported: say so first."""
    if not choice.forced:
        return []
    which = (f"its hypothesis '{choice.hypothesis}' {choice.verdict or 'was not tested'}" if choice.hypothesis
             else "no hypothesis in circuit.json names it")
    return [f"The attribute stage supports no {choice.name.replace('_', '-')} hypothesis ({which}); this program "
            f"compiles that algorithm anyway (explain.family: {choice.name}): read its figures as a test of the "
            "hypothesis, not as what the attribute stage found."]


def pair_constants(doc: Mapping[str, Any], length: int) -> pd.DataFrame:
    """Per pair and readout head, from the constants alone: the salience and evidence of a broken pair
    (mean over own != mirror) minus those of a matched one (mean over own == mirror), at each of its two
    positions, and the stronger of the two (in a causal model only the later one sees its mirror)."""
    entry = doc["lengths"][str(length)]
    rows = []
    for head in entry["heads"]:
        for name in ("salience", "evidence"):
            table = np.asarray(head[name], dtype=np.float64)  # (L, A, A)
            same = np.eye(table.shape[1], dtype=bool)
            gaps = table[:, ~same].mean(axis=1) - table[:, same].mean(axis=1)  # per position
            for pair in range(length // 2):
                rows.append({"length": length, "pair": pair, "head": head["name"], "table": name,
                             "left_gap": float(gaps[pair]), "right_gap": float(gaps[length - 1 - pair]),
                             "gap": float(max(gaps[pair], gaps[length - 1 - pair]))})
    return pd.DataFrame(rows)


def weakest_pair(edits: pd.DataFrame, constants: pd.DataFrame) -> dict[str, Any] | None:
    """The pair whose single edits the model gets wrong most (smallest mean margin when it gets none wrong),
    the program's figures there, and whether the constants single that pair out."""
    broken = edits[~edits["label"]]
    if broken.empty:
        return None
    length = int(broken["length"].max())
    broken = broken[broken["length"] == length]
    margin = -broken["model_logit_diff"]
    per = broken.assign(margin=margin).groupby("pair_pos").agg(
        n=("margin", "size"), model_wrong=("model_correct", lambda c: int((~c).sum())),
        program_wrong=("program_correct", lambda c: int((~c).sum())), mean_margin=("margin", "mean"))
    by_errors = per["model_wrong"].max() > 0
    weakest = int(per["model_wrong"].idxmax() if by_errors else per["mean_margin"].idxmin())
    table = constants[constants["length"] == length]
    reader = table[table["table"] == "evidence"].groupby("head")["gap"].mean().abs().idxmax()
    mine = table[table["head"] == reader]
    lowest = {name: int(part.loc[part["gap"].idxmin(), "pair"]) for name, part in mine.groupby("table")}
    own = {name: float(part.loc[part["pair"] == weakest, "gap"].iloc[0]) for name, part in mine.groupby("table")}
    others = {name: (float(part.loc[part["pair"] != weakest, "gap"].min()), float(part.loc[part["pair"] != weakest,
                                                                                           "gap"].max()))
              for name, part in mine.groupby("table") if (part["pair"] != weakest).any()}
    return {"length": length, "pair": weakest, "by": "errors" if by_errors else "mean margin",
            "per_pair": [{"pair": int(p), **{k: (float(v) if k == "mean_margin" else int(v)) for k, v in r.items()}}
                         for p, r in per.iterrows()],
            "reader": str(reader), "constants": own, "others": others, "lowest": lowest,
            "singled_out": any(p == weakest for p in lowest.values())}


def weakest_sentence(w: Mapping[str, Any] | None) -> str | None:
    if w is None:
        return None
    cell = next(r for r in w["per_pair"] if r["pair"] == w["pair"])
    rest = [r for r in w["per_pair"] if r["pair"] != w["pair"]]
    length, pair = w["length"], w["pair"]
    where = f"pair {pair} (positions {pair + 1} and {length - pair})"
    if w["by"] == "errors":
        most = max((r["model_wrong"] / r["n"] for r in rest), default=0.0)
        head = (f"The model's weakest pair is {where}: it misclassifies {cell['model_wrong']} of its {cell['n']} single "
                f"edits (other pairs at most {pct(most)}); the program misclassifies {cell['program_wrong']}.")
    else:
        margins = [r["mean_margin"] for r in rest]
        head = (f"The model misclassifies no single edit; its smallest mean margin is at {where} "
                f"({num(cell['mean_margin'])}; other pairs {num(min(margins, default=None))} to "
                f"{num(max(margins, default=None))}).")
    gaps = "; ".join(f"{name} gap {num(value)} (other pairs {num(w['others'][name][0])} to {num(w['others'][name][1])})"
                     for name, value in w["constants"].items() if name in w["others"])
    if w["singled_out"]:
        low = " and ".join(name for name, p in w["lowest"].items() if p == pair)
        opener = "The constants say why" if w["by"] == "errors" else "The constants agree"
        return (f"{head} {opener}: for the reader head {w['reader']}, a broken pair there has the "
                f"lowest {low} of any pair ({gaps}; broken minus matched, at the stronger of the pair's two positions).")
    return (f"{head} The constants do not single it out: for the reader head {w['reader']}: {gaps} (broken minus "
            "matched, at the stronger of the pair's two positions).")
