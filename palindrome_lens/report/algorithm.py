"""The algorithm in numbered steps, for the first screen of the index. Each step builder reads the
attribute stage's outputs and returns a Step (a sentence, the number that backs it with its baseline, and a
link to the figure behind it) or None when the gate behind it fails: a step that is not established is not
written as one. To add a step, append a builder to STEPS. The verdicts on the circuit, the scrubbing and the
program are the index's own lines (pages/index.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from palindrome_lens import features
from palindrome_lens.attribution.summary import GROUP_WORDS, carries
from palindrome_lens.report.formatting import names, num, pct
from palindrome_lens.report.inputs import Attribution
from palindrome_lens.report.roles import (
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


def discovered_steps(attribution: Attribution) -> list[Step]:
    """What the hypothesis search found the residual stream carries after each layer but the last (the last
    one's readout carries the answer), where its hypothesis is supported and says more than 'everything';
    a layer whose hand-written flag hypothesis is already a step is not said twice."""
    circuit = attribution.circuit
    boundaries = (circuit.get("discovered") or {}).get("boundaries", [])[:-1]
    flagged = {r["after_layer"] for r in flag_hypotheses(circuit)}
    out = []
    for b in boundaries:
        keep, r = b["keep"], b["result"]
        if r.get("verdict") != "supported" or all(f == features.ALL for f in keep.values()):
            continue
        if b["after_layer"] in flagged and set(keep.values()) <= {"pair_match", features.NONE, features.ALL}:
            continue
        said = [carries(g, f) for g, f in keep.items() if f != features.NONE]
        quiet = [GROUP_WORDS[g] for g, f in keep.items() if f == features.NONE]
        coarser = [s for s in b["path"] if not s["accepted"] and s["feature"] != features.NONE]
        failed = "; coarser features fail: " + ", ".join(
            f"{s['feature']} {pct((s['full'] or s['screen']).get('recovered_constant'))}" for s in coarser[:3]) \
            if coarser else ""
        local = r.get("local") or {}
        out.append(Step(
            f"After layer {b['after_layer']}, {'; '.join(said)}" + (f"; {names(quiet)} carry nothing the output needs"
                                                                    if quiet else "") + ".",
            f"the coarsest hypothesis a search by causal scrubbing finds: scrubbing down to it keeps "
            f"{pct(r.get('recovered_constant'))} of the loss from a constant predictor ({pct(r['recovered'])} from a "
            f"random scrub), {pct(r.get('accuracy_recovered'))} of the balanced accuracy and "
            f"{pct(local.get('recovered'))} with each pair alone; control {pct(r.get('control'))}{failed}",
            f"discovery.html#after-layer-{b['after_layer']}", "the hypothesis search"))
    return out


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


STEPS: tuple[Callable[[Attribution], Step | list[Step] | None], ...] = (
    mirror_step, flag_step, discovered_steps, reader_step, writer_step)


def algorithm_steps(attribution: Attribution) -> list[Step]:
    """The established steps, in order (a builder may give several, or none)."""
    out: list[Step] = []
    for build in STEPS:
        made = build(attribution)
        out += made if isinstance(made, list) else [made] if made is not None else []
    return out
