"""A sweep's runs one by one, measured against issue 23's target (`python -m palindrome_lens.compare --grid
PATTERN`): per run, the params that differ from the baseline, test accuracy, the discovered hypothesis at
every layer boundary (circuit.json `discovered`: what each position group keeps, the verdict, whether the
search's budget ran out), the explanation program (data/explanation/summary.json: family, the level that
passes its gates or the closest one and the gates it fails, with the figures), the circuit's faithfulness,
minimality and completeness gap, and the attribute stage's time.

The attribute stage's time is in no output (only the stage's stdout has it, so that every output stays
byte-reproducible); it is read from the experiment's log, `dvc queue logs NAME`, which only queued
experiments have.

The target, per run with test accuracy at least 99%: a supported hypothesis at some boundary that keeps,
at the character positions, a feature coarser than `all` and not `none` everywhere (after the last layer
every character position keeps `none`, which says nothing about how the answer is computed), and a program
that passes its gates, or a sentence naming the measured reason it cannot (the gates its closest level
fails, with the figures).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from palindrome_lens.compare import Run

ACCURACY_TARGET = 0.99
NOT_CHARACTERS = ("bos", "eos")  # every other position group (chars, or first_half/centre/second_half) is characters
ATTRIBUTE_LINE = re.compile(r"^attribute: \S+: .* in (?P<seconds>\d+(?:\.\d+)?) s \(", re.M)
ATTRIBUTE_CACHED = re.compile(r"Stage 'attribute' (?:is cached|didn't change)")


# ---------------------------------------------------------------------------------------------------------
# The attribute stage's time, from an experiment's log.


def attribute_seconds(log: str) -> float | str | None:
    """Seconds from the attribute stage's summary line in a `dvc queue logs` text; "cached" when the stage was
    restored rather than run; None when the log has neither (the run failed before it, or no log)."""
    found = ATTRIBUTE_LINE.findall(log)
    if found:
        return float(found[-1])
    return "cached" if ATTRIBUTE_CACHED.search(log) else None


def queue_log(repo: Path, name: str) -> str:
    """`dvc queue logs NAME` ('' when the queue has no such experiment, e.g. one run in the workspace)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "queue", "logs", name], cwd=repo, capture_output=True,
                          text=True)
    return proc.stdout if proc.returncode == 0 else ""


# ---------------------------------------------------------------------------------------------------------
# Reading one run.


def differing_params(params: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The run's params whose values differ from the reference's (the baseline commit's params.yaml)."""
    return {k: v for k, v in params.items() if k in reference and reference[k] != v}


def params_text(params: dict[str, Any]) -> str:
    """`key=value` as `dvc exp run -S` takes it (YAML/JSON spelling: true, null)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())


def _char_groups(keep: dict[str, str]) -> dict[str, str]:
    return {g: f for g, f in keep.items() if g not in NOT_CHARACTERS}


def boundaries(circuit: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((circuit or {}).get("discovered") or {}).get("boundaries") or [])


def says_something_at_characters(boundary: dict[str, Any]) -> bool:
    """A supported boundary whose character groups keep a feature coarser than `all`, not `none` at every one."""
    chars = _char_groups(boundary.get("keep") or {})
    coarser = boundary.get("coarser_than_all") or {}
    return (boundary.get("verdict") == "supported" and bool(chars)
            and all(f != "all" and coarser.get(g, True) for g, f in chars.items())
            and any(f != "none" for f in chars.values()))


def boundary_text(boundary: dict[str, Any]) -> str:
    keep = ", ".join(f"{g} {f}" for g, f in sorted((boundary.get("keep") or {}).items()))
    bits, keep_map = boundary.get("bits") or {}, boundary.get("keep") or {}
    kept = [f"{g} {bits[g]:.2f}" for g in sorted(bits) if keep_map.get(g, "none") != "none"
            and isinstance(bits[g], int | float)]
    extra = [f"bits per position: {', '.join(kept)}"] if kept else []
    result = boundary.get("result") or {}
    if isinstance(result.get("recovered_constant"), int | float):
        extra.append(f"{_pct(result['recovered_constant'], 1)} of the loss from a constant")
    if boundary.get("budget_exhausted"):
        extra.append("the search's budget ran out here")
    return f"{keep}: {boundary.get('verdict', 'n/a')}" + (f" ({'; '.join(extra)})" if extra else "")


def _pct(x: Any, digits: int = 0) -> str:
    return "n/a" if not isinstance(x, int | float) or isinstance(x, bool) else f"{100 * x:.{digits}f}%"


def _num(x: Any) -> str:
    return "n/a" if not isinstance(x, int | float) or isinstance(x, bool) else f"{x:.2f}"


def pick_level(explanation: dict[str, Any]) -> dict[str, Any] | None:
    """The passing level, else program.py's (the closest), else the largest level."""
    levels = explanation.get("levels") or []
    name = explanation.get("passing_level") or explanation.get("program_level")
    return next((r for r in levels if r.get("name") == name), levels[-1] if levels else None)


def failed_gate_figures(level: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    """Each gate the level fails, with its measured figure against the target."""
    def against(value: Any, target: Any, pct: bool, above: bool = True) -> str:
        show = (lambda x: _pct(x, 2)) if pct else _num
        return f"{show(value)} {'<' if above else '>'} {show(target)}" if target is not None else show(value)

    figures = {
        "decision agreement on test": lambda: against(level.get("agreement_test"), targets.get("agreement_target"), True),
        "decision agreement on single edits": lambda: against(level.get("agreement_edits"),
                                                              targets.get("agreement_target"), True),
        "the within-class fit": lambda: (f"Spearman {_num(level.get('spearman_edits'))} (target "
                                         f"{_num(targets.get('spearman_target'))}), R^2 {_num(level.get('r2_edits'))} "
                                         f"(target {_num(targets.get('r2_target'))})"),
        "the model's own errors": lambda: (f"recall {_pct(level.get('error_recall'))} / precision "
                                           f"{_pct(level.get('error_precision'))} of {level.get('model_errors')} "
                                           f"(targets {_pct(targets.get('error_recall_target'))} / "
                                           f"{_pct(targets.get('error_precision_target'))})"),
        "alignment": lambda: f"smallest IIA {against(level.get('iia_min'), targets.get('iia_target'), True)}",
        "the control": lambda: (f"largest control IIA "
                                f"{against(level.get('iia_control_max'), targets.get('iia_control_max'), True, False)}"),
    }
    return [f"{gate}: {figures[gate]()}" if gate in figures else gate for gate in level.get("failed") or []]


def scores_text(level: dict[str, Any] | None) -> str:
    if not level:
        return "n/a"
    errors = (f"{level.get('errors_reproduced')} of {level.get('model_errors')} errors reproduced "
              f"(recall {_pct(level.get('error_recall'))} / precision {_pct(level.get('error_precision'))})")
    return (f"{level['name']}: decisions alike {_pct(level.get('agreement_test'), 2)} test / "
            f"{_pct(level.get('agreement_edits'), 2)} edits; edits Spearman {_num(level.get('spearman_edits'))} / "
            f"R^2 {_num(level.get('r2_edits'))}; {errors}; smallest IIA {_pct(level.get('iia_min'), 1)}")


def program_text(explanation: dict[str, Any] | None) -> tuple[str, str | None]:
    """(what the explain stage gives this run, the measured reason there is no passing program or None)."""
    if not explanation:
        return "n/a (no explain output)", None
    family = explanation.get("family") or {}
    name = family.get("name")
    if not explanation.get("program"):
        sentence = " ".join((explanation.get("sentences") or [])[:1]) or family.get("reason") or "no sentence"
        return f"no program (family {name or 'none'}): {sentence}", None
    level = pick_level(explanation)
    ladder = "; ".join(f"{r['name']} {'passes' if r.get('passes') else 'fails'}"
                       for r in explanation.get("levels") or [])
    passing = explanation.get("passing_level")
    if passing:
        return f"{name}, level {passing} passes its gates (ladder: {ladder})", None
    if level is None:
        return f"{name}, no ladder in this run's summary", None
    reason = f"the closest level, {level['name']}, fails " + "; ".join(
        failed_gate_figures(level, explanation.get("targets") or {}))
    return f"{name}, no level passes (ladder: {ladder})", reason


def circuit_text(circuit: dict[str, Any] | None) -> tuple[str, str, str]:
    """(faithfulness, minimality, completeness gap) with their verdicts against circuit.json's gates."""
    if not circuit:
        return "n/a", "n/a", "n/a"
    gates = circuit.get("gates") or {}
    target, floor = gates.get("faithfulness_target"), gates.get("minimality_floor")
    n_nodes = sum(1 for n in circuit.get("nodes") or [] if n.get("role") == "circuit")
    f = circuit.get("faithfulness")
    faithful = ("n/a" if f is None else f"{_pct(f, 1)} of the margin with {n_nodes} nodes: "
                + ("faithful" if target is not None and f >= target else "not faithful") + f" (target {_pct(target)})")
    values = {name: m.get("value") for name, m in (circuit.get("minimality") or {}).items()}
    weak = sorted(name for name, v in values.items() if v is not None and floor is not None and v < floor)
    if not values:
        minimal = "n/a (no minimality measured)"
    elif weak:
        minimal = (f"not shown minimal: {', '.join(f'{n} {values[n]:.2f}' for n in weak)} below the floor {floor:g}")
    else:
        smallest = min(values, key=lambda n: values[n])
        minimal = f"minimal (smallest {smallest} {values[smallest]:.2f}, floor {floor:g})"
    gap = (circuit.get("completeness") or {})
    complete = "n/a" if gap.get("value") is None else f"{gap['value']:.2f} (worst K: {gap.get('worst_k')})"
    return faithful, minimal, complete


# ---------------------------------------------------------------------------------------------------------
# One run's block and its target verdict.


@dataclass
class GridRun:
    name: str
    params: dict[str, Any]
    accuracy: float | None
    boundaries: list[tuple[int | str, str]]  # (after_layer, what it keeps and its verdict)
    program: str
    scores: str
    faithfulness: str
    minimality: str
    completeness: str
    seconds: float | str | None
    target: str
    meets: bool | None  # None: the target does not apply (accuracy below 99%, or no analysis)
    notes: list[str] = field(default_factory=list)
    against_defaults: str = ""  # the attribute stage's time against the defaults' run in the same grid

    def rows(self) -> list[tuple[str, str]]:
        seconds = (f"{self.seconds:.1f} s" if isinstance(self.seconds, float) else "not run (restored from the "
                   "run cache)" if self.seconds == "cached" else "not recorded (no queue log for this run)")
        seconds += f" ({self.against_defaults})" if self.against_defaults else ""
        return [("params that differ", params_text(self.params) or "none (the defaults)"),
                ("test accuracy", _pct(self.accuracy, 2)),
                *[(f"after layer {layer}", text) for layer, text in self.boundaries],
                ("program", self.program), ("scores", self.scores), ("faithfulness", self.faithfulness),
                ("minimality", self.minimality), ("completeness gap", self.completeness),
                ("attribute stage", seconds), ("target", self.target)]

    def markdown(self) -> str:
        lines = [f"**{self.name}**", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in self.rows()]
        return "\n".join(lines)


def judge(accuracy: float | None, circuit: dict[str, Any] | None, explanation: dict[str, Any] | None,
          reason: str | None) -> tuple[str, bool | None]:
    """The issue's target for one run: (sentence, met)."""
    if accuracy is None and circuit is None:
        return "n/a: no outputs (not run yet, or it failed: see `dvc queue status`)", None
    if accuracy is None or circuit is None:
        return "n/a: no test accuracy or no circuit for this run", None
    if accuracy < ACCURACY_TARGET:
        return f"n/a: test accuracy {_pct(accuracy, 2)} is below {_pct(ACCURACY_TARGET)}", None
    found = [b for b in boundaries(circuit) if says_something_at_characters(b)]
    if not found:
        return ("not met: no supported hypothesis keeps a feature coarser than `all` (and not `none` everywhere) at "
                "the characters at any boundary"), False
    where = ", ".join(f"after layer {b['after_layer']}" for b in found)
    passing = (explanation or {}).get("passing_level")
    if passing and (explanation or {}).get("program"):
        return f"met: hypothesis at the characters {where}; level {passing} passes its gates", True
    if reason:
        return f"met by a measured reason: hypothesis at the characters {where}; no level passes: {reason}", True
    sentence = " ".join(((explanation or {}).get("sentences") or [])[:1]) or "no explain output"
    return f"not met: hypothesis at the characters {where}, but no program and no measured reason ({sentence})", False


def grid_run(run: Run, reference: dict[str, Any], seconds: float | str | None) -> GridRun:
    program, reason = program_text(run.explanation)
    faithful, minimal, complete = circuit_text(run.circuit)
    target, meets = judge(run.accuracy, run.circuit, run.explanation, reason)
    explanation = run.explanation or {}
    return GridRun(
        name=run.name, params=differing_params(run.params, reference), accuracy=run.accuracy,
        boundaries=[(b.get("after_layer", "?"), boundary_text(b)) for b in boundaries(run.circuit)]
        or [("n/a", "no discovered hypothesis")],
        program=program + (f"; {reason}" if reason else ""),
        scores=scores_text(pick_level(explanation)) if explanation.get("program") else "n/a (no program)",
        faithfulness=faithful, minimality=minimal, completeness=complete, seconds=seconds, target=target,
        meets=meets, notes=list(run.notes))


def grid_report(runs: Iterable[Run], reference: dict[str, Any],
                log: Callable[[str], str] = lambda name: "") -> list[GridRun]:
    """Every run's block; `log(name)` gives its experiment log (the attribute stage's time). Each time is also
    set against the first run with the defaults' params (none differ) that has one."""
    grid = [grid_run(run, reference, attribute_seconds(log(run.name))) for run in sorted(runs, key=lambda r: r.name)]
    defaults = next((g for g in grid if not g.params and isinstance(g.seconds, float) and g.seconds > 0), None)
    for g in grid:
        if defaults is not None and g is not defaults and isinstance(g.seconds, float):
            g.against_defaults = f"{g.seconds / defaults.seconds:.1f}x the defaults' {defaults.seconds:.1f} s ({defaults.name})"
    return grid


def summary_text(grid: list[GridRun]) -> str:
    met = [g.name for g in grid if g.meets]
    missed = [g for g in grid if g.meets is False]
    skipped = [g for g in grid if g.meets is None]
    lines = [f"Target met: {len(met)} of {len(met) + len(missed)} runs it applies to"
             + (f" ({', '.join(met)})" if met else "") + "."]
    lines += [f"Not met: {g.name}: {g.target.removeprefix('not met: ')}" for g in missed]
    lines += [f"Not applicable: {g.name}: {g.target.removeprefix('n/a: ')}" for g in skipped]
    return "\n".join(lines)


def overview_markdown(grid: list[GridRun]) -> str:
    """One row per run: the short form of each block."""
    lines = ["| run | params | test accuracy | discovered (supported boundaries) | program | attribute stage | "
             "target |", "|---|---|---|---|---|---|---|"]
    for g in grid:
        program = g.program.split(" (ladder:")[0].split(":")[0]
        chars = "; ".join(f"after {layer}: {text.split(':')[0]}" for layer, text in g.boundaries
                          if ": supported" in text) or "none supported"
        seconds = f"{g.seconds:.0f} s" if isinstance(g.seconds, float) else g.seconds or "n/a"
        params = params_text(g.params) or "defaults"
        lines.append(f"| {g.name} | {params} | {_pct(g.accuracy, 2)} | {chars} | {program} | {seconds} | "
                     f"{g.target.split(':')[0]} |")
    return "\n".join(lines)


def grid_text(grid: list[GridRun]) -> str:
    return "\n\n".join([overview_markdown(grid)] + [g.markdown() for g in grid] + [summary_text(grid)]) + "\n"
