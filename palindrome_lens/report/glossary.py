"""Every term the report pages use, defined once. The index shows the glossary; every caption and intro
links the first use of each term to its entry (index.html#g-<anchor>), so a caption need not repeat a
definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GLOSSARY_PAGE = "index.html"


@dataclass(frozen=True)
class Term:
    anchor: str  # the entry's id is g-<anchor>
    term: str
    definition: str
    forms: tuple[str, ...] = ()  # other spellings linked to this entry (regexes, matched case-insensitively)
    exact_case: bool = False  # match the term and its forms only as written ('circuit', not 'the Circuit page')

    @property
    def id(self) -> str:
        return f"g-{self.anchor}"

    @property
    def patterns(self) -> tuple[str, ...]:
        forms = (re.escape(self.term), *self.forms)
        return tuple(f"(?-i:{f})" for f in forms) if self.exact_case else forms


TERMS: tuple[Term, ...] = (
    Term("readout", "readout", "The position whose two logits are the model's answer: BOS (position 0, the default) or "
         "the [EOS] token after the last character (needed by a causal model, whose BOS sees nothing else).",
         (r"readout position",)),
    Term("logit-difference", "logit difference", "logit[palindrome] − logit[not palindrome] at the readout. Above 0 "
         "the model says palindrome; its size is how sure it is."),
    Term("margin", "margin", "The logit difference signed towards the true class: positive when the answer is right, "
         "negative when it is wrong."),
    Term("class-balanced", "class-balanced", "Averaged within each class (palindromes, non-palindromes), then across "
         "the two, so the mix of the analysis set cannot tilt it: a constant predictor has a balanced accuracy of 50% "
         "and a balanced margin of exactly 0.", (r"balanced accuracy", r"balanced margin")),
    Term("lean", "lean", "The class-balanced mean logit difference: how far a run pushes towards 'palindrome' (> 0) "
         "or 'not' (< 0) whatever the string. An ablation should leave a lean near 0."),
    Term("constant-predictor", "constant predictor", "A model that always gives the same answer: the baseline every "
         "accuracy, margin and loss is set beside (balanced accuracy 50%, margin 0, loss ln 2 ≈ 0.693)."),
    Term("mirrored-pair", "mirrored pair", "Characters i and L+1−i of a string of length L (positions counted from "
         "1). Pair k (0 = the outermost) holds characters k+1 and L−k. A palindrome is a string whose every mirrored "
         "pair matches; a pair whose two characters differ is broken.", (r"broken pairs?", r"pair k\b")),
    Term("distance", "distance", "The number of broken mirrored pairs of a string (0 for a palindrome)."),
    Term("kind", "kind", "How a test string was made: palindrome; near1 (one mirrored pair broken); near2 (two "
         "pairs broken); random (uniform letters); redraw (a palindrome whose second-half characters are redrawn)."),
    Term("component", "component", "A part of the model in TransformerLens names: L{l}H{h} (head h of layer l, its "
         "hook_z), {l}_mlp_out (the MLP of layer l), embed and pos_embed (token and position embeddings), bias "
         "(every constant term)."),
    Term("node", "node", "A component at a group of token positions, written component@group: L0H0@chars is head 0 "
         "of layer 0 at the characters. Groups: bos, chars (every character), eos; or bos, first_half, centre, "
         "second_half, eos.", (r"@chars", r"@bos", r"position groups?")),
    Term("dla", "direct logit attribution", "DLA: the logit difference split into what each component writes into "
         "the final residual stream at the readout, with the final LayerNorm folded in exactly; the components add "
         "up to the logit difference.", (r"\bDLA\b",)),
    Term("mirror-score", "mirror score", "The attention a character puts on its mirror (position L+1−i), averaged "
         "over the characters that can see it. 1 = every character looks only at its mirror; uniform attention "
         "gives about 1/(L+2)."),
    Term("activation-patching", "activation patching", "Running a corrupted string with one activation replaced by "
         "its value on the clean string (transformer_lens.patching).", (r"patched", r"patching")),
    Term("example-pair", "example pair", "A clean palindrome from the test split and its corrupted copy with one "
         "mirrored pair broken (same length, so positions line up). Patching and path patching run on these.",
         (r"clean/corrupted",)),
    Term("recovery", "recovery", "(mean patched − mean corrupted) / (mean clean − mean corrupted) of the logit "
         "difference over the example pairs: 0 = the patch changes nothing, 1 = it restores the clean answer. A "
         "ratio of means, so pairs whose two runs barely differ cannot blow it up; per-pair quartiles show the "
         "spread.", (r"recover(?:s|ed|ing)?",)),
    Term("path-patching", "path patching", "An edge's effect: on the example pairs, only the path from the sender to "
         "one input of the receiver (q, k or v of a head, mlp_in of an MLP, or the logits) carries the clean value; "
         "the effect is the share of the clean logit difference this restores (ratio of means).",
         (r"edges?\b",)),
    Term("edge-floor", "edge floor", "The smallest |effect| an edge needs to be drawn in the circuit graph "
         "(attribute.edge_floor)."),
    Term("resample-ablation", "resample ablation", "Replacing a node's activation by the same activation on another "
         "analysis string of the same length whose label is a fair coin, so it carries nothing about the string and "
         "leans to neither class.", (r"resample-ablat\w*", r"ablat(?:ed|ion|ing)\b")),
    Term("mean-ablation", "mean ablation", "Replacing an activation by its label-balanced mean ((mean over "
         "palindromes + mean over the rest) / 2)."),
    Term("zero-ablation", "zero ablation", "Replacing an activation by zeros. Shown only as a contrast: it moves "
         "later layers off their usual inputs and can make a component look important when it is not."),
    Term("circuit", "circuit", "The smallest set of nodes C that keeps the faithfulness target share of the "
         "model's class-balanced margin with every other node resample-ablated.", exact_case=True),
    Term("faithfulness", "faithfulness", "F(C) / F(M): the class-balanced margin with only the circuit's nodes kept "
         "(every other candidate node ablated), over the whole model's. F(S) is that margin with every node outside "
         "S ablated; M is every candidate node.", (r"F\(C\)", r"F\(M\)")),
    Term("completeness", "completeness gap", "The worst |F(C∖K) − F(M∖K)| / F(M) over the sets K tried (each "
         "node, each layer, a greedy search): near 0 when removing K hurts the circuit and the whole model alike.",
         (r"(?-i:\bK\b)", r"completeness")),
    Term("minimality", "minimality", "Of a circuit node v: the largest |F(C∖(K+v)) − F(C∖K)| / F(M) over the sets K "
         "tried; a node below the minimality floor is not needed."),
    Term("causal-scrubbing", "causal scrubbing", "Testing a hypothesis about what the residual stream carries: each "
         "position is resampled from another string that agrees on the hypothesised feature. If the hypothesis is "
         "right the loss stays the model's.", (r"scrub(?:s|bed|bing)?\b",)),
    Term("loss-recovered", "loss recovered", "(random loss − scrubbed loss) / (random loss − model loss) of the "
         "class-balanced cross-entropy: 0% = every position from any string (the random scrub), 100% = the model. "
         "A random scrub is confidently wrong, so on this scale a constant predictor already sits high; see 'from a "
         "constant'. 'Accuracy recovered' is the same scale on balanced accuracy.", (r"accuracy recovered",)),
    Term("from-a-constant", "from a constant", "Loss recovered on the scale anchored at knowing nothing: (ln 2 − "
         "scrubbed loss) / (ln 2 − model loss), 0% = a constant predictor, 100% = the model.",
         (r"constant scale", r"constant-anchored")),
    Term("each-pair-alone", "each pair alone", "A local scrub: each mirrored pair's two positions (and BOS, the "
         "centre, EOS) scrubbed on its own, the rest left as it is. The figure is the pair that fares worst (every pair must "
         "pass the gate); the pooled figure is shown beside it where there is room. Scrubbing every "
         "position at once cannot refute a coarse string-level feature when the readout works like an OR over "
         "positions; one pair at a time can.", (r"one pair at a time", r"each pair scrubbed alone")),
    Term("control-scrub", "control scrub", "A scrub from strings that disagree on the kept feature: it must miss the "
         "gates the hypothesis passes, or the test is inconclusive."),
    Term("verdict", "supported", "A hypothesis is supported when its scrub keeps the target share (up to the same "
         "margin above 100%) of the loss on both scales and of the balanced accuracy, all at once and each pair "
         "alone, beats a constant predictor, its control fails, and most positions found another string than their "
         "own; otherwise it fails (or the test is inconclusive).", (r"inconclusive",)),
    Term("feature-library", "feature library", "What a position may carry, as functions of the string: own character, "
         "own and mirror character (pair_chars), pair_diff, pair_match; string-level mismatch_set, n_mismatches, "
         "label, char_counts, odd_chars; visible_… versions for what a causal position can see; all and none.",
         (r"(?-i:\bfeatures?\b)",)),
    Term("bits", "bits", "How much a feature says: its entropy on the analysis strings, per position, averaged over "
         "a group's positions. Fewer bits is a coarser claim."),
    Term("self-draw", "self draws", "Scrubbed positions whose only agreeing string was their own, so nothing was "
         "scrubbed there; a scrub that mostly drew itself is inconclusive.", (r"self draw", r"drew (?:itself|themselves)")),
    Term("hypothesis-search", "hypothesis search", "For each layer, every position group made as coarse as causal "
         "scrubbing allows: its features tried from fewest bits up, the first supported one kept.",
         (r"search by causal scrubbing",)),
    Term("composition", "composition score", "||W_OV(sender) W(receiver)|| / (||W_OV(sender)|| ||W(receiver)||) "
         "with W the receiver's W_Q, W_K or W_OV: weights only, shown beside random matrices of the same shapes.",
         (r"[QKV]-composition",)),
    Term("positional-qk", "positional QK", "The part of a head's attention score that does not depend on the "
         "characters: the positional embeddings through ln1 and the biases."),
    Term("single-edit", "single edit", "A test palindrome with one character changed: it breaks exactly one mirrored "
         "pair (or, at the centre of an odd length, stays a palindrome). A fooling edit is one the model gets wrong.",
         (r"fooling edits?", r"edits?\b")),
    Term("counterpart", "counterpart", "In the explorer: the string patching starts from. A non-palindrome's "
         "counterpart is its repair (each broken pair takes its left character); a palindrome's is its copy with "
         "the outermost pair broken."),
)


def _alternation() -> tuple[re.Pattern[str], list[Term]]:
    """One regex of every form, longest first (so 'path patching' wins over 'patching'), and each form's term."""
    forms = sorted(((p, t) for t in TERMS for p in t.patterns), key=lambda pt: -len(pt[0]))
    joined = "|".join(f"(?P<t{i}>{p})" for i, (p, _) in enumerate(forms))
    # Whole words only, and never part of a file name or node name ('circuit.json', 'edges.parquet', 'L0H0@chars').
    return re.compile(rf"(?<![\w./@])(?:{joined})(?![\w@]|\.\w)", re.IGNORECASE), [t for _, t in forms]


_PATTERN, _OWNERS = _alternation()


def link_terms(escaped: str, here: str) -> str:
    """`escaped` (HTML-escaped text, no tags) with the first use of each term linked to its glossary entry.

    `here` is the page's filename: on the glossary's own page links are plain anchors.
    """
    page = "" if here == GLOSSARY_PAGE else GLOSSARY_PAGE
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        term = _OWNERS[int(match.lastgroup[1:])]
        if term.anchor in seen:
            return match.group(0)
        seen.add(term.anchor)
        return f'<a class="term" href="{page}#{term.id}">{match.group(0)}</a>'

    return _PATTERN.sub(replace, escaped)
