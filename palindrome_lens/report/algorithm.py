"""The algorithm in numbered steps, for the first screen of the index. Each step builder reads the
attribute stage's outputs and returns a Step (a sentence, the number that backs it with its baseline, and a
link to the figure behind it) or None when the gate behind it fails: a step that is not established is not
written as one. To add a step (a discovered hypothesis, an explanation program), append a builder to STEPS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.roles import (
    circuit_nodes,
    flag_hypotheses,
    flags,
    mirror_heads,
    ratio_text,
    readers,
    writers,
)


@dataclass(frozen=True)
class Step:
    sentence: str
    evidence: str  # the number behind the sentence, with its baseline
    href: str  # the figure behind it: 'page.html#anchor'
    link_text: str


def mirror_step(attribution: Attribution) -> Step | None:
    heads = mirror_heads(attribution)
    if not heads:
        return None
    longest = max(int(n) for n in attribution.summary["model"].get("lengths") or [10])
    scores = names([f"{h} {num(s, 2)}" for h, s in heads.items()])
    return Step(f"{names(list(heads))} at each character attends to its mirror: the character at the other end of "
                "its mirrored pair.",
                f"mirror score {scores} (uniform attention: {num(1 / (longest + 2), 2)})",
                "attention.html#mirror-head", "the mirror head on one string")


def flag_step(attribution: Attribution) -> Step | None:
    hypotheses = flag_hypotheses(attribution.circuit)
    if not hypotheses:
        return None
    r = hypotheses[0]
    mlps = [name for name, backing in flags(attribution).items() if backing is r]
    who = f"{names(mlps)} compares each character with its mirror and writes" if mlps else "each character carries"
    return Step(f"After layer {r['after_layer']}, {who} whether its pair matches, and that flag is all the readout "
                "needs.",
                f"scrubbing everything but the flag keeps {pct(r['recovered'])} of the loss and "
                f"{pct(r.get('accuracy_recovered'))} of the balanced accuracy (control {pct(r['control'])}; constant "
                f"predictor {pct(r['constant'])}): {r['verdict']}",
                "circuit.html#scrubbing", "scrubbing losses")


def reader_step(attribution: Attribution) -> Step | None:
    found = readers(attribution)
    if not found:
        return None
    readout = str(attribution.summary["model"].get("readout", "bos")).upper()
    per_head = names([f"{h} {num(r.mismatched, 2)} against {num(r.matched, 2)} ({ratio_text(r.ratio)})"
                      for h, r in found.items()])
    return Step(f"At {readout}, {names(list(found))} attend{'s' if len(found) == 1 else ''} to the characters whose "
                "pair is broken and barely look at the others.",
                f"attention per broken character against per matching one: {per_head}",
                "attention.html#reader", "where the readout heads look")


def writer_step(attribution: Attribution) -> Step | None:
    found = writers(attribution.circuit)
    if not found:
        return None
    readout = str(attribution.summary["model"].get("readout", "bos")).upper()
    return Step(f"{names(list(found))} write{'s' if len(found) == 1 else ''} the answer into the logits at {readout}.",
                "path patching into the logits: " + names([f"{n} {num(e, 2)}" for n, e in found.items()])
                + " of the logit difference",
                "circuit.html#graph", "the circuit graph")


def circuit_step(attribution: Attribution) -> Step | None:
    """The same gate as the attribute stage's 'carried by': faithfulness at the target, every node needed."""
    circuit = attribution.circuit
    gates, runs = circuit["gates"], circuit["ablation"]
    faithfulness, minimal = circuit["faithfulness"], [m["value"] for m in circuit["minimality"].values()]
    nodes = [n["name"] for n in circuit_nodes(circuit)]
    if (not nodes or faithfulness is None or faithfulness < gates["faithfulness_target"] or not minimal
            or min(minimal) < gates["minimality_floor"]):
        return None
    full = runs["model"]["balanced_margin"]
    nothing = runs["nothing"]["balanced_margin"] / full if full else None
    return Step(f"Nothing else is needed: these {len(nodes)} nodes alone carry the decision, and each of them is "
                "needed.",
                f"faithfulness {pct(faithfulness)} of the class-balanced margin (target "
                f"{pct(gates['faithfulness_target'], 0)}; every node ablated {pct(nothing)}; constant predictor 0%); "
                f"minimality at least {num(min(minimal), 2)} (floor {num(gates['minimality_floor'])})",
                "circuit.html#faithfulness", "faithfulness, completeness, minimality")


STEPS: tuple[Callable[[Attribution], Step | None], ...] = (mirror_step, flag_step, reader_step, writer_step,
                                                            circuit_step)


def algorithm_steps(attribution: Attribution) -> list[Step]:
    """The established steps, in order."""
    return [step for step in (build(attribution) for build in STEPS) if step is not None]
