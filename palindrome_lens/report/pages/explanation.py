"""The explanation page: which rung of the explain stage's ladder of programs is program.py and why, the
algorithm level in full, every level's size against its scores (agreement with the model beside the exact check),
where the mechanism says the model breaks, the graded interventions; then program.py against the model string by
string and, for the pair-comparison family, its constants as heatmaps and the interchange interventions that
align its variables with the model's nodes. The string-level family gets the same page without those."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from palindrome_lens.explanation.agreement import spearman
from palindrome_lens.explanation.sentences import pair_constants, pick_reason
from palindrome_lens.explanation.template import CONSTANTS_MARKER
from palindrome_lens.report.code import Code
from palindrome_lens.report.content import Figure, Table, Text
from palindrome_lens.report.explanation_inputs import ExplanationInputs
from palindrome_lens.report.figures import label_figure
from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.html import Page, Section
from palindrome_lens.report.plots import (
    ERROR_COLOR,
    SERIES,
    Panel,
    heatmap_grid,
    pair_label,
    subplot_grid,
    symmetric_limit,
)

FILENAME = "explanation.html"
TITLE = "The explanation as a program"
NAV = "Explanation"
SUMMARY = ("the mechanism compiled into a short program, how much of the model it reproduces (its errors "
           "included), and interchange interventions that align the program with the model")
SCATTER_POINTS = 400  # per panel: SVG markers, so the page stays small
LADDER_SCORES = (("agreement_edits", "decisions alike, single edits", "agreement_target"),
                 ("spearman_edits", "Spearman within a class, edits", "spearman_target"),
                 ("r2_edits", "R^2 within a class, edits", "r2_target"))


def scatter_figure(agreement: pd.DataFrame) -> tuple[go.Figure, str]:
    """Program against model logit difference per set and class (a deterministic sample), and a takeaway: the
    Spearman correlation of each whole panel."""
    panels = [("single edits (not palindromes)", agreement[(agreement["set"] == "edits") & ~agreement["label"]]),
              ("test palindromes", agreement[(agreement["set"] == "test") & agreement["label"]]),
              ("test non-palindromes", agreement[(agreement["set"] == "test") & ~agreement["label"]])]
    panels = [(t, p) for t, p in panels if len(p)]
    fig = subplot_grid(len(panels), 3, [t for t, _ in panels], 320)
    for i, (title, part) in enumerate(panels):
        shown = part.iloc[::max(1, len(part) // SCATTER_POINTS)].round(3)
        fig.add_trace(go.Scatter(x=shown["model_logit_diff"], y=shown["program_logit_diff"], mode="markers",
                                   marker={"size": 4, "color": SERIES[i], "opacity": 0.5}, name=title,
                                   text=shown["text"], hovertemplate="%{text}<br>model %{x:.3f}, program %{y:.3f}"
                                                                     "<extra></extra>"), row=1, col=i + 1)
    fig.update_layout(showlegend=False)
    rho = [f"{t} {num(spearman(p['program_logit_diff'].to_numpy(), p['model_logit_diff'].to_numpy()), 2)}"
           for t, p in panels]
    return label_figure(fig, "Program against model: logit difference within each class", "model's logit difference",
                        "program's logit difference"), f"Spearman over every string of each panel: {', '.join(rho)}."


def pair_heatmaps(constants: dict[str, Any], length: int, head: str, table: str) -> tuple[go.Figure, str]:
    """Per mirrored pair, the head's `table` (salience or evidence) for each (left, right) character pair: the
    mean of the left position's entry (own=left, mirror=right) and the right position's (own=right, mirror=left);
    and a takeaway: matched (diagonal) against broken means, and the broken pair nearest the matched side."""
    entry = next(h for h in constants["lengths"][str(length)]["heads"] if h["name"] == head)
    values = np.asarray(entry[table], dtype=np.float64)
    alphabet = [chr(c) for c in constants["alphabet"]]
    z = np.stack([(values[p] + values[length - 1 - p].T) / 2 for p in range(length // 2)])
    panels = [Panel(pair_label(length, p), z[p], alphabet, alphabet) for p in range(length // 2)]
    middle = float(np.median(z))
    limit = symmetric_limit(z - middle)
    same = np.eye(len(alphabet), dtype=bool)
    matched, broken = z[:, same].mean(), z[:, ~same].mean()
    side = np.sign(broken - matched)  # the broken pair "most like a match" is the one furthest to the matched side
    k, a, b = np.unravel_index(np.argmin(np.where(same, np.inf, side * z)), z.shape)
    gaps = (z[:, ~same].mean(axis=1) - z[:, same].mean(axis=1)) * side
    takeaway = (f"Matched pairs (the diagonal) average {num(matched)} and broken ones {num(broken)}; pair "
                f"{int(np.argmin(gaps))} separates them least (gap {num(gaps.min())}, largest {num(gaps.max())}). The "
                f"broken pair that reads most like a match is {alphabet[a]}/{alphabet[b]} in pair {k} "
                f"({num(z[k, a, b])}).")
    return heatmap_grid(panels, f"{head}'s {table} per pair (strings of length {length})", "right character",
                        "left character", table, cols=min(3, len(panels)), zmin=middle - limit, zmax=middle + limit,
                        zmid=middle), takeaway


def iia_table(interchange: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(interchange)
    if frame.empty:
        return frame
    shown = ["variable", "node", "kind", "positions", "n", "n_changed", "iia_changed", "iia_all"]
    return frame[(["length"] if frame["length"].nunique() > 1 else []) + shown].rename(columns={
        "iia_changed": "IIA, changing", "iia_all": "IIA, all", "n_changed": "changing", "positions": "patched positions"})


def lead_text(summary: dict[str, Any]) -> str:
    """Which ladder level program.py is and why, in words, then the explain stage's own sentences."""
    levels, chosen, n_model = summary.get("levels") or [], summary.get("program_level"), summary.get("n_model")
    row = next((r for r in levels if r["name"] == chosen), None)
    if row is None or not n_model:
        return "\n\n".join(summary["sentences"])
    why = (f"the smallest of its {len(levels)} levels that passes every gate" if summary.get("passing_level")
           else f"no level passes every gate; {pick_reason(row, n_model)}")
    bigger = (": more numbers than the model has, so it restates the model's tables rather than compressing them"
              if row["n_total"] > n_model else "")
    return (f"program.py is the {chosen} level of the ladder: {why}. It reads {row['n_read']:,} numbers from the model "
            f"and fits {row['n_fitted']:,}, {pct(row['n_total'] / n_model, 2)} of the model's {n_model:,} "
            f"parameters{bigger}.\n\n" + "\n\n".join(summary["sentences"]))


def label_sides(x: list[float], y: list[Any]) -> list[str]:
    """Where each point's label goes: above when the point is at least as high as its nearest neighbour on the log
    axis, below when lower (two levels of close size, e.g. layer_zero and full, keep their labels by their own
    points); ties alternate, since neighbours on a log axis crowd."""
    logs = np.log10(np.maximum(np.asarray(x, dtype=float), 1.0))
    values = np.array([np.nan if v is None else v for v in y], dtype=float)
    sides = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        if not others or np.isnan(values[i]):
            sides.append("top center")
            continue
        j = min(others, key=lambda k: abs(logs[k] - logs[i]))
        if np.isnan(values[j]) or values[i] == values[j]:
            sides.append(("top center", "bottom center")[i % 2])
        else:
            sides.append("top center" if values[i] > values[j] else "bottom center")
    return sides


def ladder_figure(levels: list[dict[str, Any]], graded: list[dict[str, Any]], targets: dict[str, Any],
                  n_model: int) -> go.Figure:
    """Each score against the level's numbers (read + fitted, log x): the gate as a dashed line, the model's
    parameter count as a dotted one; the exact check is the first point (a diamond)."""
    x, text = [r["n_total"] for r in levels], [r["name"] for r in levels]
    panels = [(title, {"": [r[key] for r in levels]}, targets.get(target)) for key, title, target in LADDER_SCORES]
    frame = pd.DataFrame(graded)
    if len(frame):
        by = frame.pivot(index="level", columns="kind", values="spearman").reindex(text)
        title = "graded interventions: Spearman (" + ", ".join(f"{k} pairs {c}" for k, c in zip(by.columns, (
            "blue", "orange"))) + ")"
        panels.append((title, {k: by[k].tolist() for k in by.columns}, None))
    fig = subplot_grid(len(panels), 2, [t for t, _, _ in panels], 260)
    for i, (_, series, target) in enumerate(panels):
        where = {"row": i // 2 + 1, "col": i % 2 + 1}
        for j, (name, y) in enumerate(series.items()):
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers+text", text=text if j == 0 else None, name=name or "level",
                textposition=label_sides(x, y),
                line={"color": SERIES[j]},
                marker={"size": 9, "symbol": ["diamond"] + ["circle"] * (len(x) - 1)},
                hovertemplate="%{text}: %{y:.4f}<extra></extra>" if j == 0 else None), **where)
        if target is not None:
            fig.add_hline(y=target, line={"dash": "dash", "color": ERROR_COLOR}, annotation_text="gate",
                          annotation_position="top left", **where)
        fig.add_vline(x=n_model, line={"dash": "dot", "color": "#868e96"}, **where)
    fig.update_xaxes(type="log", exponentformat="power")
    fig.update_layout(showlegend=False)
    return label_figure(fig, "The ladder: each level's numbers against its scores", "numbers read + fitted (log)",
                        "score")


def ladder_table(levels: list[dict[str, Any]], n_model: int) -> pd.DataFrame:
    def pair(a: Any, b: Any) -> str:
        return f"{num(a, 2)} / {num(b, 2)}"
    return pd.DataFrame([{
        "level": r["name"], "what it adds": r["adds"], "read + fitted": f"{r['n_read']:,} + {r['n_fitted']}",
        "% of the model": pct(r["n_total"] / n_model, 2), "decisions alike, test / edits":
        f"{pct(r['agreement_test'], 2)} / {pct(r['agreement_edits'], 2)}",
        "Spearman / R^2, edits": pair(r["spearman_edits"], r["r2_edits"]),
        "Spearman / R^2, test": pair(r["spearman_test"], r["r2_test"]),
        "model's errors reproduced": f"{r['errors_reproduced']} of {r['model_errors']}",
        "gates": "passes" if r["passes"] else f"fails: {', '.join(r['failed'])}"} for r in levels])


def unjudged(levels: list[dict[str, Any]]) -> str:
    """The gates some level could not judge (null), said once for the table's caption."""
    gates = sorted({g for r in levels for g, ok in r["gates"].items() if ok is None})
    return f" Not judged (too few cases): {names(gates)}." if gates else ""


def patterns_in_words(patterns: Counter[str]) -> str:
    """{'one edit of a one-character string (h)': 1, ... (u)': 2} -> 'one edit of a one-character string (3: h, u)'."""
    grouped: dict[str, Counter[str]] = {}
    for pattern, n in patterns.items():
        base, detail = re.fullmatch(r"(.*?)(?: \((.*)\))?", pattern).groups()
        grouped.setdefault(base, Counter())[detail or ""] += n
    parts = sorted(grouped.items(), key=lambda kv: -sum(kv[1].values()))
    return names([f"{base} ({sum(c.values())}" + (f": {', '.join(sorted(c))})" if "" not in c else ")")
                  for base, c in parts])


def times_random(row: dict[str, Any]) -> str:
    """The hit rate against random single edits'; where the model got none of those wrong, a lower bound."""
    if row.get("times_random") is not None:
        return f"{row['times_random']:.0f}×"
    at_least = row.get("times_random_at_least")
    return "n/a" if at_least is None else f"≥ {at_least:.0f}× (0 of {row['random_n']:,} random edits wrong)"


def lacking(summary: dict[str, Any]) -> str:
    """What the programs lack where none predicts an error, measured: the feature ceiling (the same readout fed the
    model's own per-string attention and evidence) against the level that follows the model best within a class,
    on the edits. Nothing when the ceiling is not ahead of that level, or unmeasured."""
    own = ((summary.get("ceiling") or {}).get("model") or {}).get("edits") or {}
    scored = [r for r in summary.get("levels") or [] if r.get("spearman_edits") is not None]
    if own.get("spearman") is None or own.get("r2") is None or not scored:
        return ""
    best = max(scored, key=lambda r: r["spearman_edits"])
    if own["spearman"] <= best["spearman_edits"]:
        return ""
    fed = (f" What they lack, measured: fed the model's own features (the readout heads' attention and evidence as "
           f"the model computes them on each string), the same readout follows the model with Spearman / R² "
           f"{num(own['spearman'], 2)} / {num(own['r2'], 2)} on the edits, the best level ({best['name']}) "
           f"{num(best['spearman_edits'], 2)} / {num(best['r2_edits'], 2)}")
    targets = summary.get("targets") or {}
    if own["spearman"] < targets.get("spearman_target", -math.inf) or own["r2"] < targets.get("r2_target", -math.inf):
        return fed + (": the model's own features miss the within-class fit too, so what makes it fail lies beyond "
                      "this template's features.")
    return fed + ": the tables average those features over contexts, while the model's move with the rest of the string."


def breaks_section(summary: dict[str, Any], failures: pd.DataFrame | None, n: int) -> list[Section]:
    """The failure search per level, and the strings it found that the model misclassifies."""
    rows = summary.get("failures") or []
    if not rows:
        return []
    per_level = pd.DataFrame([{
        "level": r["level"], "proposals": r["proposals"], "misclassified by the model": r["model_wrong"],
        "distinct": r["distinct_wrong"], "hit rate": pct(r["hit_rate"], 2), "program says wrong": r["predicted_wrong"],
        "random single edits": f"{pct(r['random_rate'], 3)} of {r['random_n']:,}",
        "times random": times_random(r),
        "patterns": patterns_in_words(Counter(r["patterns"]))} for r in rows])
    wrong = failures[failures["model_wrong"]].copy() if failures is not None else pd.DataFrame()
    caption = ("Each level proposes strings from its own numbers, without running the model: single edits of "
               "strings made of the characters its tables lean most towards 'palindrome', where the rest of the "
               "string dilutes the broken pair; its top proposals are then shown to the model. 'times random' "
               "compares the hit rate with the model's error rate on single edits of fresh random palindromes, drawn "
               "uniformly (where it makes none, the rule of three bounds the rate by 3 / n: a lower bound); the "
               "exact check proposes nothing. ")
    found = Section("Where it breaks: the failure search", caption + "None of the proposals fools the model.",
                    Table(per_level), anchor="breaks")
    if wrong.empty:
        return [found]
    best, said = max(rows, key=lambda r: r["hit_rate"]), sum(r["predicted_wrong"] for r in rows)
    wrong["how wrong"] = np.where(wrong["label"], -wrong["model_logit_diff"], wrong["model_logit_diff"])
    levels = wrong.groupby("text")["level"].agg(", ".join)
    wrong = wrong.sort_values("how wrong", ascending=False).drop_duplicates("text")
    firsts = wrong.drop_duplicates("pattern")  # every pattern's worst first, so one pattern cannot fill the table
    top = pd.concat([firsts, wrong.drop(firsts.index)]).head(n).sort_values("how wrong", ascending=False)
    top = top.assign(level=top["text"].map(levels), label=np.where(top["label"], "palindrome", "not"))
    found = dataclasses.replace(found, caption=caption + (
        f"The model misclassifies {len(wrong)} distinct proposed strings: {patterns_in_words(Counter(wrong['pattern']))}. "
        f"The {best['level']} level finds them best: {pct(best['hit_rate'], 2)} of its proposals, "
        f"{times_random(best)} the rate of random single edits ({pct(best['random_rate'], 3)}).") + (
        " No program predicts the error itself: each puts these strings on the right side, and proposed them as the "
        "ones it puts least far from the wrong one. The mechanism points at where the model is weak, not at its "
        "margin." + lacking(summary) if not said else
        f" The programs themselves say {said} of the proposals are misclassified."))
    columns = {"text": "text", "label": "true class", "model_logit_diff": "model's logit diff",
               "program_logit_diff": "program's logit diff", "level": "proposed by", "pattern": "pattern"}
    return [found, Section(f"Where it breaks: the model's worst misclassified proposals ({len(top)} of {len(wrong)})", (
        "Distinct strings: each pattern's most confidently wrong one, then the rest by how wrong; logit differences "
        "are logit[palindrome] − logit[not] (> 0 = palindrome). failures.parquet holds every proposal."),
        Table(top[list(columns)].rename(columns=columns).reset_index(drop=True)))]


def graded_section(graded: list[dict[str, Any]]) -> list[Section]:
    frame = pd.DataFrame(graded)
    if frame.empty:
        return []
    flat = [lv for lv, g in frame.groupby("level", sort=False) if (g["spearman"] == 0).all()]
    mean = frame.groupby("level", sort=False)["spearman"].mean()
    if mean.isna().all():  # e.g. a model that ignores which characters a pair holds
        return [Section("Graded interventions", "No level can be scored: the model's logit difference does not move "
                        "when only a pair's characters change.", Table(frame), anchor="graded")]
    best = frame[frame["level"] == mean.idxmax()].set_index("kind")
    said = (f"The {names(flat)} level{'' if len(flat) == 1 else 's'} score{'s' if len(flat) == 1 else ''} 0 by construction: the pair keeps its match status "
            "and only its characters change, which a level that knows only matched or broken cannot see. "
            if flat else "")
    said += (f"The {mean.idxmax()} level follows the model best: " + "; ".join(
        f"{kind} pairs Spearman {num(r['spearman'], 2)}, the same sign on {pct(r['sign_agreement'])} of the "
        f"{r['n_above_noise']} changes above noise" for kind, r in best.iterrows()) +
        f". Patched at the wrong pair, no level's Spearman exceeds {num(frame['control_spearman'].abs().max(), 2)}.")
    table = frame[["level", "kind", "n", "n_above_noise", "noise", "spearman", "sign_agreement", "control_spearman"]]
    return [Section("Graded interventions", (
        "The model runs on a test palindrome with one pair's positions patched from a string where that pair holds "
        "other characters of the same status (broken → broken, matched → matched); each level predicts the change "
        "of the logit difference. Spearman compares the changes; sign agreement counts the changes larger than the "
        "noise (the change when only the context differs, 95th percentile); control patches the next pair instead. "
        + said), Table(table.rename(columns={"n_above_noise": "above noise", "sign_agreement": "sign agreement",
                                             "control_spearman": "control Spearman"})), anchor="graded")]


def explanation_page(explanation: ExplanationInputs | None, n_examples: int) -> Page:
    if explanation is None:
        return Page(FILENAME, TITLE, "No explanation to show.", [Section(
            "No explanation", "The explain stage writes data/explanation/; this report was built without it.",
            Text("The explain stage's output was not given to the report."))], nav_label=NAV)
    summary = explanation.summary
    lead = Section("Which program, and why", (
        "The explain stage builds a ladder of programs, smallest first, and gates each: 'the model runs this program' "
        "only when decision agreement (test and single edits), the within-class fit, the recall and precision of the "
        "model's own errors, and every program variable's interchange-intervention accuracy pass their targets, with "
        "every wrong-position control at or below its maximum."), Text(lead_text(summary)), anchor="which")
    family = summary["family"]
    if not explanation.has_program:
        facts = pd.DataFrame([{"fact": k, "value": str(v)} for k, v in family.items()])
        return Page(FILENAME, TITLE, "No program was compiled for this run.", [
            lead, Section("Hypothesis family", "What circuit.json supports and why no template applies.", Table(facts))],
            nav_label=NAV)
    program, constants, source = summary["program"], explanation.constants, explanation.source
    pairwise = family["name"] != "string_level"  # the string-level family has no pair tables and no interchange
    intro = (f"The attribute stage's supported hypothesis '{family['hypothesis']}' ({family['source']}) is the "
             + ("pair-comparison family" if pairwise else "string-level family: the answer is computed at every "
                "character position in layer 0") + ", so the explain stage compiled it into programs of growing "
             f"detail, data/explanation/programs/<level>.py, and copied the one it stands behind to "
             f"data/explanation/program.py ({program['level']}). Each runs alone: "
             "`python data/explanation/program.py TEXT`.")
    words = summary.get("algorithm") or {}
    levels, n_model = summary["levels"], summary.get("n_model") or program["n_model"]
    scatter, scatter_said = scatter_figure(explanation.agreement)
    sections = [
        lead,
        Section("The algorithm, as a program", (
            f"{words.get('text', '')} {words.get('evidence', '')} Below, the ladder's algorithm level in full "
            f"(data/explanation/{words.get('file')}): every level is this same code with other constants, program.py "
            f"({program['level']}) included, whose tables are the heatmaps further down.")
            if explanation.algorithm else "No algorithm level: the logic of program.py, up to its constants.",
            Code(explanation.algorithm or source[:source.index(CONSTANTS_MARKER)].rstrip() + "\n"), anchor="algorithm"),
        Section("The ladder", (
            "Each table level adds one kind of detail to the one below; layer_zero, where there is one, computes "
            "layer 1's keys and values from layer 0 instead of looking them up. Left to right: more numbers read from the model "
            f"and fitted (log scale); the dotted line is the model's {n_model:,} parameters, the dashed one the gate. "
            "The exact check (the diamond) decides by the label and predicts one logit difference per class."),
            Figure(ladder_figure(levels, summary.get("graded") or [], summary["targets"], n_model)), anchor="ladder"),
        Section("The ladder, level by level", (
            "What each level adds, its numbers (read from the model's own components; fitted to its logits on the "
            "train split) and share of the model's parameters, and its scores; R^2 and Spearman compare the logit "
            "differences within each class (the logit difference is bimodal: across classes any right answer scores "
            f"~1), averaged over the classes present; the exact check never reproduces an error. The stage checks "
            f"that program.py ({program['level']}) gives its row's numbers on {program['checked_rows']} strings "
            f"(largest difference {num(program['check_max_difference'], 2)}).{unjudged(levels)}"),
            Table(ladder_table(levels, n_model)), anchor="program"),
        *breaks_section(summary, explanation.failures, n_examples),
        *graded_section(summary.get("graded") or []),
        Section("Program against model", (
            f"Each point is a string (at most {SCATTER_POINTS} per panel, evenly spaced): on the diagonal the program "
            f"predicts the model's logit difference exactly. {scatter_said}"), Figure(scatter)),
        *(pair_sections(summary, constants, max(program["lengths"])) if pairwise else []),
        Section("Where each constant comes from", (
            f"{program['n_read']} numbers are read from the model, {program['n_fitted']} fitted (constants.json holds "
            "them all with this provenance)."), Table(pd.DataFrame(constants["provenance"]))),
    ]
    return Page(FILENAME, TITLE, intro, sections, nav_label=NAV)


def pair_sections(summary: dict[str, Any], constants: dict[str, Any], length: int) -> list[Section]:
    """The pair-comparison family's own sections: the reader head's tables and the interchange interventions."""
    pairs = pair_constants(constants, length)  # the reader: the head whose evidence separates broken from matched most
    head = str(pairs[pairs["table"] == "evidence"].groupby("head")["gap"].mean().abs().idxmax())
    evidence, evidence_said = pair_heatmaps(constants, length, head, "evidence")
    salience, salience_said = pair_heatmaps(constants, length, head, "salience")
    targets = summary["targets"]
    return [
        Section("Mismatch evidence per pair", (
            f"The evidence table of {head} (the readout head whose evidence separates broken from matched pairs "
            "most), per mirrored pair, for each left and right character: the diagonal is a matched pair. Read from "
            f"the head's value at the pair's positions, projected on its evidence direction. {evidence_said}"),
            Figure(evidence)),
        Section("Mismatch salience per pair", (
            f"{head}'s attention score from the readout to the pair's positions, per left and right character: a "
            f"broken pair that scores high draws the readout's attention. {salience_said}"), Figure(salience)),
        Section("Interchange interventions", (
            "Per program variable (a pair's comparison): the program runs on a base test string with that pair "
            "comparing a source string's characters, the model with the node patched at that pair's positions from "
            "the source's run; IIA is the share of (base, source) pairs where they then decide alike, on the pairs "
            "where the intervention changes the program's decision ('changing' counts them) and on all. The node is "
            "the residual stream after the hypothesis' layer or the circuit's component there; 'control' patches the "
            f"next pair's positions instead and must score far lower (target {pct(targets['iia_target'], 0)}, "
            f"control at most {pct(targets['iia_control_max'], 0)})."), Table(iia_table(summary["interchange"]))),
    ]
