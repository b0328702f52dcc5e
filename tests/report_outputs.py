"""Small synthetic pipeline outputs in the real formats, for the report tests.

Training curves are dvclive TSVs, predictions and metrics come from the evaluate stage's own functions
(score_table, evaluation_metrics), every attribution table is written with the attribute stage's own
writer and schema (attribution.common.save_table, attribution.schemas.SCHEMAS), the circuit graph's
candidate edges come from attribution.edges.possible_edges, circuit.json and summary.json have the
stage's keys, and the activations are a real manifest + .npy store. Values are chosen so each figure
and table can be checked cell by cell.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import torch

from palindrome_lens.activations import EXAMPLES_SCHEMA
from palindrome_lens.attribution.common import save_table
from palindrome_lens.attribution.edges import LOGITS, possible_edges
from palindrome_lens.attribution.nodes import Node
from palindrome_lens.attribution.per_example import ANALYSIS, FOOLING, MISCLASSIFIED, counterpart
from palindrome_lens.attribution.schemas import SCHEMAS
from palindrome_lens.attribution.summary import FORMAT as CIRCUIT_FORMAT
from palindrome_lens.data.generate import SCHEMA as RAW_SCHEMA
from palindrome_lens.data.parquet import write_table
from palindrome_lens.data.strings import distance, mismatch_positions
from palindrome_lens.report import Figure, Page, Section
from palindrome_lens.report.inputs import ReportInputs, Sources
from palindrome_lens.report.pages import BUILDERS
from palindrome_lens.report.provenance import Provenance
from palindrome_lens.training.evaluate import score_table
from palindrome_lens.training.metrics import evaluation_metrics

N_LAYERS, N_HEADS, D_MODEL = 2, 2, 8
LENGTHS = (4, 5)
WIDTH = max(LENGTHS) + 2  # BOS + characters + EOS
HEADS = [f"L{layer}H{head}" for layer in range(N_LAYERS) for head in range(N_HEADS)]
MLPS = [f"{layer}_mlp_out" for layer in range(N_LAYERS)]
COMPONENTS = ["embed", "pos_embed", "L0H0", "L0H1", "0_mlp_out", "L1H0", "L1H1", "1_mlp_out", "bias"]
STRINGS = {  # length -> kind -> strings
    4: {"palindrome": ["abba", "cddc"], "near1": ["abca", "adba"], "near2": ["abcd", "bcda"], "random": ["dcab", "aacd"]},
    5: {"palindrome": ["abcba", "dcacd"], "near1": ["abcbd", "acbba"], "near2": ["abdca", "dbcab"],
        "random": ["cadbb", "bdcaa"]},
}
N_STRINGS = sum(len(texts) for kinds in STRINGS.values() for texts in kinds.values())
KNOWN_RECOVERY = 0.625  # resid_pre, length 5, layer 1, pos 2, mismatch pair 1
MIRROR_SCORES = {"L0H0": 0.9, "L0H1": 0.3, "L1H0": 0.5, "L1H1": 0.7}  # L0H0 is the mirror head (and in the circuit)
READER = {"L1H0": (0.3, 0.01)}  # mean attention from the readout on a broken / a matching character; others 0.1/0.1
KNOWN_EXPLORER_RECOVERY = 0.77  # the first explorer string, node L1H0@bos
KNOWN_ATTENTION = 0.875  # L1H0, length 4, dest 1 -> src 4 (the mirror of 1)
KINDS = ["all", "palindrome", "near1", "near2", "random", "distance_1", "balanced"]
MODES = ("resample", "mean", "zero")

# --- the circuit: nodes at position groups, edges, gates ------------------------------------------------
GROUPS = ("bos", "chars", "eos")
BASE_MARGIN = 4.0  # the unablated model's class-balanced margin
BASE_LEAN = -0.1
TARGET, FLOOR, EDGE_FLOOR = 0.9, 0.05, 0.05
CIRCUIT = ["L0H0@chars", "0_mlp_out@chars", "L1H0@bos", "1_mlp_out@bos"]
MINIMALITY = {"L0H0@chars": (0.9, []), "0_mlp_out@chars": (0.7, ["L1H0@bos"]), "L1H0@bos": (0.3, []),
              "1_mlp_out@bos": (0.04, ["L0H0@chars", "L1H0@bos"])}  # the last one is below the floor
FAITHFULNESS = 0.93
COMPLETENESS = {"{L0H0@chars}": 0.01, "{L1H0@bos}": 0.06, "layer 1": 0.02, "greedy {L1H0@bos}": 0.06}
# edges with an effect of their own; every other allowed edge gets a small one (|effect| < EDGE_FLOOR)
STRONG_EDGES = {
    ("embed@chars", "L0H0@chars", "v"): 0.30,
    ("embed@chars", "L0H0@chars", "q"): 0.04,  # between circuit nodes but below the floor: not drawn
    ("L0H0@chars", "0_mlp_out@chars", "mlp_in"): 0.45,
    ("0_mlp_out@chars", "L1H0@bos", "k"): 0.20,
    ("0_mlp_out@chars", "L1H0@bos", "v"): 0.35,
    ("L0H0@chars", "L1H0@bos", "v"): -0.12,  # pushes the other way: drawn blue
    ("L1H0@bos", "1_mlp_out@bos", "mlp_in"): 0.25,
    ("1_mlp_out@bos", LOGITS, LOGITS): 0.50,
    ("L1H0@bos", LOGITS, LOGITS): 0.15,
    ("L0H1@chars", "L1H0@bos", "v"): 0.40,  # strong, but its sender is not in the circuit: not drawn
    ("0_mlp_out@chars", "L1H1@bos", "v"): 0.30,  # strong, but its receiver is not in the circuit: not drawn
}
# patching sets (attribution.reconcile): positions -> (recovery, median per pair). Against the resample ablation
# losses of `loss` (L0H0 0.1, L0H1 0.2, 0_mlp_out 0.3, L1H0 0.4, L1H1 0.5, 1_mlp_out 0.6): L0H0 restores more than
# it is needed; L1H0 and L1H1 are needed but restore little alone, the heads of layer 1 together restore 0.9; L1H0
# restores 0.04 at one position of the broken pair and 0.1 at both; L1H1's median pair is far below its mean.
SET_PATCHING = {
    "L0H0": {"one": (0.3, 0.3), "both": (0.6, 0.6), "all": (0.6, 0.55)},
    "L0H1": {"one": (0.0, 0.0), "both": (0.0, 0.0), "all": (0.01, 0.0)},
    "0_mlp_out": {"one": (0.2, 0.2), "both": (0.3, 0.3), "all": (0.3, 0.3)},
    "L1H0": {"one": (0.04, 0.04), "both": (0.1, 0.1), "all": (0.1, 0.08)},
    "L1H1": {"one": (0.0, 0.0), "both": (0.0, 0.0), "all": (0.15, 0.01)},
    "1_mlp_out": {"one": (0.0, 0.0), "both": (0.0, 0.0), "all": (0.55, 0.5)},
    "layer 0 heads": {"all": (0.62, 0.6)},
    "layer 1 heads": {"all": (0.9, 0.9)},
}
SCRUBS = {  # name -> (recovered, control, constant, verdict)
    "pair_flags": (0.95, -0.2, 0.8, "supported"),
    "own_char": (0.4, 0.85, 0.8, "inconclusive"),
}
SCRUB_FEATURES = {"pair_flags": "pair_match", "own_char": "char"}
ACCURACY_RECOVERED = {"pair_flags": 0.91, "own_char": 0.33}  # distinct from the loss recovered, so a swap shows
RECOVERED_CONSTANT = {"pair_flags": 0.936, "own_char": -1.27}  # the constant-anchored scale, distinct again
LOCAL_RECOVERED = {"pair_flags": 0.973, "own_char": 0.12}
SELF_DRAWS = {"pair_flags": 0.004, "own_char": 0.021}


def table(rows: list[dict], types: dict[str, pa.DataType]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema(list(types.items())))


def save(frame: pd.DataFrame, path: Path) -> None:
    """One attribution table, cast to its schema by the attribute stage's own writer."""
    save_table(frame, path, SCHEMAS[path.stem])


def analysis_records() -> list[dict]:
    """The synthetic analysis strings, example_id in order (mismatch_pos None unless distance 1)."""
    rows = []
    for length, kinds in STRINGS.items():
        for kind, texts in kinds.items():
            for text in texts:
                mismatch = mismatch_positions(text)
                rows.append({"example_id": len(rows), "text": text, "label": kind == "palindrome", "kind": kind,
                             "distance": distance(text), "length": length,
                             "mismatch_pos": mismatch[0] if len(mismatch) == 1 else None})
    return rows


def analysis_rows() -> pd.DataFrame:
    return pd.DataFrame(analysis_records())


# --- the writers of each stage's outputs, synthetic values in the real formats ---------------------------


def write_training(root: Path) -> None:
    plots = root / "data/train/plots/metrics"
    (plots / "train").mkdir(parents=True)
    (plots / "val").mkdir(parents=True)
    steps = np.arange(10, 110, 10)
    (plots / "train/loss.tsv").write_text("step\tloss\n" + "".join(f"{s}\t{0.7 * 0.7 ** i}\n" for i, s in enumerate(steps)))
    (plots / "val/accuracy.tsv").write_text("step\taccuracy\n" + "".join(
        f"{s}\t{min(1.0, 0.5 + 0.1 * i)}\n" for i, s in enumerate(steps)))
    (root / "data/train/metrics.json").write_text(json.dumps({
        "step": 100, "n_examples": 6400, "train": {"loss": 0.02, "accuracy": 1.0},
        "val": {"loss": 0.03, "accuracy": 1.0, "n": 200}}))


def write_evaluation(root: Path, n_wrong: int) -> pd.DataFrame:
    """Predictions for every synthetic string, the first `n_wrong` of them wrong, via the evaluate stage's code."""
    predictions = predictions_table(n_wrong)
    (root / "data/eval").mkdir(parents=True)
    write_table(predictions, root / "data/eval/predictions.parquet")
    (root / "data/eval/metrics.json").write_text(json.dumps(evaluation_metrics(predictions)))
    return predictions.to_pandas()


def write_evaluation_frame(n_wrong: int) -> pd.DataFrame:
    return predictions_table(n_wrong).to_pandas()


def predictions_table(n_wrong: int) -> pa.Table:
    records = analysis_records()
    frame = pd.DataFrame(records)
    raw = table([{f.name: r[f.name] for f in RAW_SCHEMA} for r in records], {f.name: f.type for f in RAW_SCHEMA})
    sign = np.where(frame["label"], 1.0, -1.0)
    sign[:n_wrong] *= -1
    size = 0.5 + np.arange(len(frame)) / 10  # distinct margins, so ordering is checkable
    diff = torch.tensor(sign * size, dtype=torch.float32)
    logits = torch.stack([-diff / 2, diff / 2], dim=1)
    return score_table(raw, logits)


def dla_frame(examples: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    values = rng.normal(size=(len(examples), len(COMPONENTS)))
    values[:, COMPONENTS.index("L1H0")] += np.where(examples["label"], 2.0, -2.0)  # the "detector" head
    diff = values.sum(axis=1)
    n = len(COMPONENTS)
    return pd.DataFrame({
        "example_id": examples["example_id"].repeat(n).to_numpy(), "text": examples["text"].repeat(n).to_numpy(),
        "kind": examples["kind"].repeat(n).to_numpy(), "label": examples["label"].repeat(n).to_numpy(),
        "length": examples["length"].repeat(n).to_numpy().astype("int32"), "component": COMPONENTS * len(examples),
        "value": values.ravel(), "logit_diff": diff.repeat(n)})


def distributions_frame(dla: pd.DataFrame) -> pd.DataFrame:
    mean = dla[dla["label"]].groupby("component")["value"].mean()
    out = dla[["example_id", "component", "kind", "length", "value"]].copy()
    out.insert(3, "class", np.where(dla["label"], "palindrome", "not_palindrome"))
    out["centred"] = out["value"] - out["component"].map(mean)
    return out


def distribution_stats_frame(distributions: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (component, cls), values in distributions.groupby(["component", "class"], sort=False)["centred"]:
        q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
        rows.append({"component": component, "grouping": "class", "group": cls, "n": len(values),
                     "mean": values.mean(), "std": values.std(), **dict(zip(["q05", "q25", "q50", "q75", "q95"], q))})
    return pd.DataFrame(rows)


def attention_frame(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for length in LENGTHS:
        n = length + 2
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                pattern = rng.dirichlet(np.ones(n), size=n)
                if (length, layer, head) == (4, 1, 0):
                    pattern[1] = (1 - KNOWN_ATTENTION) / (n - 1)
                    pattern[1, 4] = KNOWN_ATTENTION
                for dest in range(n):
                    for src in range(n):
                        rows.append({"layer": layer, "head": head, "component": f"L{layer}H{head}", "length": length,
                                     "dest": dest, "src": src, "value": float(pattern[dest, src]), "n": 8})
    return pd.DataFrame(rows)


def mirror_frame() -> pd.DataFrame:
    rows = []
    for length in LENGTHS:
        for kind in ("all", "palindrome", "near1", "near2", "random"):
            for i, name in enumerate(HEADS):
                layer, head = divmod(i, N_HEADS)
                rows.append({"component": name, "layer": layer, "head": head, "length": length, "kind": kind,
                             "n": 8 if kind == "all" else 2, "mirror_score": MIRROR_SCORES[name], "std": 0.01})
    return pd.DataFrame(rows)


def readout_attention_frame() -> pd.DataFrame:
    """L1H0 reads mismatches from the readout (3x more on a mismatched second-half position); the rest do not."""
    rows = []
    for length in LENGTHS:
        for i, name in enumerate(HEADS):
            layer, head = divmod(i, N_HEADS)
            for status in ("mismatched", "matched"):
                for half in ("first_half", "second_half"):
                    reads = name == "L1H0" and half == "second_half"
                    rows.append({"component": name, "layer": layer, "head": head, "length": length, "status": status,
                                 "half": half, "n": 6, "attention": (0.3 if status == "mismatched" else 0.1) if reads
                                 else 0.15})
    return pd.DataFrame(rows)


def readout_by_position_frame() -> pd.DataFrame:
    """Per head, length and character position: L1H0 reads broken pairs (READER), every other head looks evenly."""
    rows = []
    for length in LENGTHS:
        for i, name in enumerate(HEADS):
            layer, head = divmod(i, N_HEADS)
            broken, matching = READER.get(name, (0.1, 0.1))
            for pos in range(1, length + 1):
                for status, value in (("matched", matching), ("mismatched", broken)):
                    rows.append({"component": name, "layer": layer, "head": head, "length": length, "pos": pos,
                                 "status": status, "n": 5, "attention": value})
    return pd.DataFrame(rows)


def explorer_frames(predictions: pd.DataFrame, edits: pd.DataFrame, attn_only: bool,
                    rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The explorer's tables as attribution.per_example writes them: the misclassified test strings, the fooling
    edits, then every analysis string; DLA that sums to each logit difference, attention over the real positions,
    and a recovery per candidate node (KNOWN_EXPLORER_RECOVERY for the first string at L1H0@bos)."""
    wrong = predictions[~predictions["correct"]]
    fooled = edits[~edits["correct"]]
    analysis = analysis_rows()
    strings = pd.concat([
        pd.DataFrame({"source": MISCLASSIFIED, "text": wrong["text"], "kind": wrong["kind"], "label": wrong["label"],
                      "example_id": None, "logit_diff": wrong["logit_diff"]}),
        pd.DataFrame({"source": FOOLING, "text": fooled["text"], "kind": "edit", "label": fooled["label"],
                      "example_id": None, "logit_diff": fooled["logit_diff"]}),
        pd.DataFrame({"source": ANALYSIS, "text": analysis["text"], "kind": analysis["kind"],
                      "label": analysis["label"], "example_id": analysis["example_id"],
                      "logit_diff": np.where(analysis["label"], 3.0, -3.0) + 0.01 * np.arange(len(analysis))}),
    ], ignore_index=True)
    strings.insert(0, "key", np.arange(len(strings)))
    strings["length"] = strings["text"].str.len()
    strings["correct"] = np.where(strings["label"], strings["logit_diff"] > 0, strings["logit_diff"] < 0)
    strings["counterpart"] = [counterpart(t, "abcd") for t in strings["text"]]
    strings["counterpart_logit_diff"] = -strings["logit_diff"] * 0.9
    components = [c for c in COMPONENTS if not (attn_only and c in MLPS)]
    dla = rng.normal(size=(len(strings), len(components)))
    dla[:, -1] += strings["logit_diff"].to_numpy() - dla.sum(axis=1)  # the bias makes them add up
    nodes = [nd.name for nd in candidates(attn_only)]
    recovery = rng.uniform(-0.2, 1.0, size=(len(strings), len(nodes)))
    recovery[0, nodes.index("L1H0@bos")] = KNOWN_EXPLORER_RECOVERY
    own, other = strings["logit_diff"].to_numpy()[:, None], strings["counterpart_logit_diff"].to_numpy()[:, None]
    attention = []
    for key, length in zip(strings["key"], strings["length"]):
        n = length + 2
        pattern = rng.dirichlet(np.ones(n), size=(N_LAYERS, N_HEADS, n))
        layer, head, dest, src = np.meshgrid(range(N_LAYERS), range(N_HEADS), range(n), range(n), indexing="ij")
        attention.append(pd.DataFrame({"key": key, "layer": layer.ravel(), "head": head.ravel(), "dest": dest.ravel(),
                                       "src": src.ravel(), "value": pattern.ravel()}))
    return {
        "example_strings": strings,
        "example_dla": pd.DataFrame({"key": strings["key"].repeat(len(components)).to_numpy(),
                                     "component": components * len(strings), "value": dla.ravel()}),
        "example_attention": pd.concat(attention, ignore_index=True),
        "example_patching": pd.DataFrame({"key": strings["key"].repeat(len(nodes)).to_numpy(),
                                          "node": nodes * len(strings), "recovery": recovery.ravel(),
                                          "patched_logit_diff": (own + recovery * (other - own)).ravel()}),
    }


def patching_frame(rng: np.random.Generator, mlp: bool = True) -> pd.DataFrame:
    rows = []

    def add(length: int, activation: str, component: str, layer: int, head: int | None, pos: int | None) -> None:
        for pair in [None, *range(length // 2)]:
            value = float(rng.uniform(-0.5, 1.2))
            if (length, activation, layer, pos, pair) == (5, "resid_pre", 1, 2, 1):
                value = KNOWN_RECOVERY
            rows.append({"length": length, "activation": activation, "component": component, "layer": layer,
                         "head": head, "pos": pos, "mismatch_pos": pair, "n": 6 if pair is None else 3,
                         "recovery": value, "pair_q25": value - 0.25, "pair_median": value - 0.05,
                         "pair_q75": value + 0.25, "clean_logit_diff": 2.0, "corrupted_logit_diff": -1.0})

    for length in LENGTHS:
        for layer in range(N_LAYERS):
            add(length, "resid_pre", f"{layer}_resid_pre", layer, None, None)
            for pos in range(length + 2):
                add(length, "resid_pre", f"{layer}_resid_pre", layer, None, pos)
            for head in range(N_HEADS):
                add(length, "z", f"L{layer}H{head}", layer, head, None)
                for pos in range(length + 2):
                    add(length, "z", f"L{layer}H{head}", layer, head, pos)
            if mlp:
                for pos in range(length + 2):
                    add(length, "mlp_out", f"{layer}_mlp_out", layer, None, pos)
    frame = pd.DataFrame(rows)
    return frame.astype({"head": "Int32", "pos": "Int32", "mismatch_pos": "Int32"})


def model_components(attn_only: bool) -> list[str]:
    """Heads and MLPs in forward order (as attribution.nodes.components)."""
    out = []
    for layer in range(N_LAYERS):
        out += [h for h in HEADS if h.startswith(f"L{layer}")] + ([] if attn_only else [f"{layer}_mlp_out"])
    return out


def candidates(attn_only: bool) -> list[Node]:
    """Every candidate node in forward order: the last layer only at the readout (bos)."""
    out = []
    for component in model_components(attn_only):
        layer = int(component[1]) if component.startswith("L") else int(component[0])
        out += [Node(layer, component, g) for g in (("bos",) if layer == N_LAYERS - 1 else GROUPS)]
    return out


def circuit_nodes(attn_only: bool) -> list[str]:
    names = {nd.name for nd in candidates(attn_only)}
    return [name for name in CIRCUIT if name in names]


def loss(component: str, mode: str, attn_only: bool) -> float:
    """The share of the balanced margin lost when `component` is ablated everywhere under `mode`."""
    i = model_components(attn_only).index(component) + 1
    return {"resample": 0.1 * i, "mean": 0.1 * i + 0.05, "zero": 0.02 * i}[mode]


def node_loss(nd: Node) -> float:
    return 0.5 if nd.name in CIRCUIT else 0.01 * (1 + len(nd.name) % 4)


def metric_rows(margin_lost: float, lean: float) -> list[dict]:
    """Rows of ablation.parquet for one run: every kind, then the class-balanced row."""
    rows = []
    for i, kind in enumerate(KINDS):
        accuracy = 1.0 if margin_lost == 0 else 0.5 + 0.05 * i
        balanced = kind == "balanced"
        margin = BASE_MARGIN * (1 - margin_lost)
        rows.append({"kind": kind, "n": 32 if kind in ("all", "balanced") else 8, "accuracy": accuracy,
                     "mean_logit_diff": lean if balanced else 0.3 * (i - 2), "mean_margin": margin,
                     "accuracy_change": accuracy - 1.0, "logit_diff_change": (lean - BASE_LEAN) if balanced else -0.1,
                     "margin_change": margin - BASE_MARGIN})
    return rows


def ablation_frame(attn_only: bool) -> pd.DataFrame:
    rows = [{"component": "none", "positions": "none", "mode": "none", **r} for r in metric_rows(0.0, BASE_LEAN)]
    for mode in MODES:
        for i, component in enumerate(model_components(attn_only)):
            rows += [{"component": component, "positions": "all", "mode": mode, **r}
                     for r in metric_rows(loss(component, mode, attn_only), -0.5 * (i + 1))]
    for nd in candidates(attn_only):
        rows += [{"component": nd.component, "positions": nd.group, "mode": "resample", **r}
                 for r in metric_rows(node_loss(nd), -0.2)]
    return pd.DataFrame(rows)


def nodes_frame(attn_only: bool) -> pd.DataFrame:
    circuit = circuit_nodes(attn_only)
    return pd.DataFrame([{"node": nd.name, "component": nd.component, "layer": nd.layer, "group": nd.group,
                          "ablated_alone_margin_loss": node_loss(nd), "kept_alone_faithfulness": -0.01,
                          "in_circuit": nd.name in circuit,
                          "minimality": MINIMALITY[nd.name][0] if nd.name in circuit else np.nan}
                         for nd in candidates(attn_only)])


def edges_frame(attn_only: bool) -> pd.DataFrame:
    """Every edge attribution.edges allows between the embeddings and the candidates, with an effect."""
    receivers = candidates(attn_only)
    senders = [Node(-1, "embed", g) for g in GROUPS] + receivers
    rows = []
    for i, edge in enumerate(possible_edges(senders, receivers, "bos")):
        r = edge.receiver
        key = (edge.sender.name, edge.receiver_name, edge.via)
        effect = STRONG_EDGES.get(key, 0.01 * (i % 7) - 0.02)
        rows.append({"sender": edge.sender.name, "sender_component": edge.sender.component,
                     "sender_layer": edge.sender.layer, "sender_group": edge.sender.group,
                     "receiver": edge.receiver_name, "receiver_component": LOGITS if r is None else r.component,
                     "receiver_layer": N_LAYERS if r is None else r.layer,
                     "receiver_group": LOGITS if r is None else r.group, "via": edge.via, "effect": effect,
                     "n_pairs": 6, "pair_q25": effect - 0.1, "pair_median": effect / 2, "pair_q75": effect + 0.1})
    return pd.DataFrame(rows)


def composition_frame() -> pd.DataFrame:
    rows = []
    for m, mode in enumerate("QKV"):
        for s in range(N_HEADS):
            for r in range(N_HEADS):
                score = 0.15 + 0.01 * (3 * m + 2 * s + r)
                rows.append({"mode": mode, "sender": f"L0H{s}", "receiver": f"L1H{r}", "score": score,
                             "baseline_mean": 0.17, "baseline_q95": 0.19, "ratio": score / 0.17,
                             "above_q95": score > 0.19})
    return pd.DataFrame(rows)


def weights_frames(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    qk = []
    for length in LENGTHS:
        n = length + 2
        for i, name in enumerate(HEADS):
            layer, head = divmod(i, N_HEADS)
            scores = rng.normal(size=(n, n))
            pattern = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
            for q in range(n):
                for k in range(n):
                    qk.append({"length": length, "layer": layer, "head": head, "component": name, "query_pos": q,
                               "key_pos": k, "score": scores[q, k], "pattern": pattern[q, k]})
    w_pos = rng.normal(size=(WIDTH, D_MODEL))
    unit = w_pos / np.linalg.norm(w_pos, axis=1, keepdims=True)
    pos, dim = np.meshgrid(np.arange(WIDTH), np.arange(D_MODEL), indexing="ij")
    i, j = np.meshgrid(np.arange(WIDTH), np.arange(WIDTH), indexing="ij")
    return {"pos_qk": pd.DataFrame(qk),
            "pos_embed": pd.DataFrame({"pos": pos.ravel(), "dim": dim.ravel(), "value": w_pos.ravel()}),
            "pos_cosine": pd.DataFrame({"pos_i": i.ravel(), "pos_j": j.ravel(), "cosine": (unit @ unit.T).ravel()})}


def adversarial_frames(n_wrong: int) -> dict[str, pd.DataFrame]:
    rows = []
    for source_id, source in enumerate(("abba", "abcba")):
        for position in range(len(source)):
            for new in "abcd":
                if new == source[position]:
                    continue
                text = source[:position] + new + source[position + 1:]
                rows.append({"source_id": source_id, "source": source, "text": text, "length": len(source),
                             "position": position, "pair_pos": min(position, len(source) - 1 - position),
                             "old": source[position], "new": new, "label": text == text[::-1],
                             "source_logit_diff": 5.0})
    edits = pd.DataFrame(rows)
    edits["margin"] = 0.2 + np.arange(len(edits)) * 0.05
    edits.loc[: n_wrong - 1, "margin"] = -np.arange(1, n_wrong + 1) * 0.1
    edits["logit_diff"] = np.where(edits["label"], edits["margin"], -edits["margin"])
    edits["correct"] = edits["margin"] > 0
    edits["predicted"] = edits["logit_diff"] > 0
    edits = edits.sort_values("margin", kind="stable").reset_index(drop=True)
    edits.insert(0, "rank", np.arange(len(edits)))
    broken = edits[~edits["label"]]
    by_pos = broken.groupby(["length", "pair_pos"]).agg(
        n=("margin", "size"), n_wrong=("correct", lambda c: int((~c).sum())), min_margin=("margin", "min"),
        mean_margin=("margin", "mean")).reset_index()
    by_pos["accuracy"] = 1 - by_pos["n_wrong"] / by_pos["n"]
    return {"adversarial": edits, "adversarial_by_position": by_pos}


def scrub_result(name: str) -> dict:
    recovered, control, constant, verdict = SCRUBS[name]
    model_loss, random_loss = 0.01, 2.0
    span = random_loss - model_loss

    def run(rec: float, acc: float) -> dict:
        loss_ = random_loss - rec * span
        return {"loss": loss_, "loss_palindrome": 2 * loss_ - 0.05, "loss_not_palindrome": 0.05,
                "balanced_accuracy": acc, "balanced_margin": BASE_MARGIN * rec}

    return {"name": name, "claim": f"after layer 0 each position carries only <{name}> & nothing else",
            "after_layer": 0, "keep": {"chars": SCRUB_FEATURES[name]}, "n_draws": 4, "n_rows": 40, "recovered": recovered,
            "recovered_constant": RECOVERED_CONSTANT[name], "accuracy_recovered": ACCURACY_RECOVERED[name],
            "control": control, "control_constant": control - 1.5, "constant": constant, "verdict": verdict,
            "self_draw_share": SELF_DRAWS[name], "bits": {"bos": 0.0, "chars": 0.97, "eos": 0.0},
            "local": {"recovered": LOCAL_RECOVERED[name], "accuracy_recovered": LOCAL_RECOVERED[name] - 0.02,
                      "pooled_recovered": LOCAL_RECOVERED[name] + 0.012,  # the mean over the pairs sits above the
                      "pooled_accuracy_recovered": LOCAL_RECOVERED[name] - 0.01,  # weakest one
                      "worst_unit": "pair 1", "units": []},
            "baseline": {"label_entropy": math.log(2), "random_loss": random_loss, "model_loss": model_loss},
            "runs": {"model": run(1.0, 0.98), "hypothesis": run(recovered, 0.5 + 0.48 * recovered),
                     "control": run(control, 0.4),
                     "random": run(0.0, 0.5)}}


DISCOVERED = {0: {"bos": "none", "chars": "pair_diff", "eos": "none"}, 1: {"bos": "label", "chars": "none", "eos": "none"}}


def discovered() -> dict:
    """circuit.json's `discovered`, as attribution.discovery.discover writes it: after layer 0 the characters keep
    pair_diff (label and pair_match tried first, and failed), after layer 1 BOS keeps the label."""
    def facts(rec: float, const: float, acc: float, local: float, verdict: str) -> dict:
        return {"recovered": rec, "recovered_constant": const, "accuracy_recovered": acc, "control": -0.07,
                "control_constant": -2.4, "constant": 0.85, "self_draw_share": 0.008, "local_recovered": local,
                "local_accuracy_recovered": local - 0.01, "worst_unit": "pair 2", "bits": {"chars": 1.0},
                "verdict": verdict}

    boundaries = []
    for layer, keep in DISCOVERED.items():
        result = {**scrub_result("pair_flags"), "name": f"discovered_after_layer_{layer}", "after_layer": layer,
                  "keep": keep, "recovered": 0.998, "recovered_constant": 0.987, "accuracy_recovered": 0.995,
                  "control": -0.071, "control_constant": -2.45, "verdict": "supported",
                  "bits": {"bos": 0.0, "chars": 3.48 if layer == 0 else 0.0, "eos": 0.0}}
        path = [{"group": "chars", "feature": "label", "keep": {**keep, "chars": "label"}, "bits": 0.77,
                 "screen": facts(0.976, 0.84, 0.971, 0.842, "fails"), "full": None, "accepted": False},
                {"group": "chars", "feature": "pair_match", "keep": {**keep, "chars": "pair_match"}, "bits": 0.9,
                 "screen": facts(0.971, 0.807, 0.966, 0.986, "fails"), "full": None, "accepted": False},
                {"group": "chars", "feature": keep["chars"], "keep": keep, "bits": 3.48,
                 "screen": facts(1.0, 0.999, 1.0, 1.0, "supported"), "full": facts(0.998, 0.987, 0.995, 0.999,
                                                                                  "supported"), "accepted": True}]
        boundaries.append({"after_layer": layer, "keep": keep, "bits": result["bits"], "position_bits": [],
                           "library": {}, "coarser_than_all": {g: True for g in keep}, "sanity_all_recovered": 1.0,
                           "budget_exhausted": False, "result": result, "path": path})
    return {"budget": 100, "evaluated": 17, "screen_rows": 384, "screen_draws": 2, "draws": 4,
            "groups": ["chars", "bos", "eos"], "boundaries": boundaries}


def circuit_json(attn_only: bool, edges: pd.DataFrame) -> dict:
    """circuit.json as attribution.run.circuit_document writes it; the graph's edges follow its rule (between
    drawn nodes, |effect| at least the edge floor)."""
    inputs = [Node(-1, "embed", g) for g in GROUPS]
    circuit = circuit_nodes(attn_only)
    by_name = {nd.name: nd for nd in candidates(attn_only)}
    shown = {nd.name for nd in inputs} | set(circuit)
    drawn = edges[edges["sender"].isin(shown) & (edges["receiver"].isin(shown) | (edges["receiver"] == LOGITS))
                  & (edges["effect"].abs() >= EDGE_FLOOR)]
    return {
        "format": CIRCUIT_FORMAT,
        "nodes": [{"name": nd.name, "component": nd.component, "layer": nd.layer, "positions": nd.group,
                   "role": "input" if nd.layer < 0 else "circuit"} for nd in [*inputs, *(by_name[n] for n in circuit)]],
        "edges": [{"from": r.sender, "to": r.receiver, "via": r.via, "effect": r.effect, "n_pairs": r.n_pairs,
                   "pair_median": r.pair_median} for r in drawn.itertuples()],
        "faithfulness": FAITHFULNESS,
        "completeness": {"value": max(COMPLETENESS.values()), "worst_k": "{L1H0@bos}", "tried": COMPLETENESS},
        "minimality": {n: {"value": MINIMALITY[n][0], "k": MINIMALITY[n][1], "search": "exhaustive"} for n in circuit},
        "ablation": {"mode": "resample", "seed": 0, "metric": "class-balanced margin",
                     "model": {"balanced_margin": BASE_MARGIN, "balanced_accuracy": 0.98},
                     "circuit_only": {"balanced_margin": FAITHFULNESS * BASE_MARGIN, "balanced_accuracy": 0.95},
                     "nothing": {"balanced_margin": 0.1, "balanced_accuracy": 0.52},
                     "constant_predictor": {"balanced_margin": 0.0, "balanced_accuracy": 0.5}},
        "search": {"method": "exhaustive", "target": TARGET, "candidates": list(by_name), "n_candidates": len(by_name),
                   "exhaustive_up_to": 4, "budget": 5000, "screened": 123, "rescored": 3, "screening_rows": 256,
                   "reached": True, "node_positions": "chars"},
        "gates": {"faithfulness_target": TARGET, "minimality_floor": FLOOR, "edge_floor": EDGE_FLOOR},
        "scrubbing": [scrub_result(name) for name in SCRUBS],
        "discovered": discovered(),
        "sentences": [f"The decision is carried by {', '.join(circuit)}: it keeps 93.0% of the margin.",
                      "Hypothesis 'pair_flags' is supported.",
                      "After layer 0, each character position carries only whether its mirrored pair matches and, "
                      "if not, which two characters differ (pair_diff).",
                      "Where the comparison is made (...): after layer 0, 23.7% against 100.0% for the whole "
                      "residual."],
    }


def summary_json(n_edits: int, n_wrong: int, n_examples: int, attn_only: bool, circuit: dict) -> dict:
    nodes = circuit_nodes(attn_only)
    evidence = {}
    for i, name in enumerate(HEADS):
        mine = [n for n in nodes if n.startswith(f"{name}@")]
        evidence[name] = {"layer": i // N_HEADS, "head": i % N_HEADS,
                          **{f"{m}_ablation_margin_loss": loss(name, m, attn_only) for m in MODES},
                          **{f"{m}_ablation_lean": -0.5 * (i + 1) for m in MODES},
                          "patching_recovery": 0.9 - 0.2 * i, "patching_best_pos": 0,
                          "patching_best_pos_recovery": 0.5, "mirror_score": MIRROR_SCORES[name], "in_circuit": bool(mine),
                          "circuit_nodes": mine, "minimality": min((MINIMALITY[n][0] for n in mine), default=None)}

    def run(balanced: float, palindrome: float, d1: float, lean: float) -> dict:
        return {"accuracy": (balanced + 0.9) / 2, "distance_1_accuracy": d1, "palindrome_accuracy": palindrome,
                "balanced_accuracy": balanced, "balanced_margin": BASE_MARGIN * balanced, "lean": lean}

    return {
        "format": "palindrome-lens/attribution/v2",
        "model": {"n_layers": N_LAYERS, "d_model": D_MODEL, "n_heads": N_HEADS, "d_head": 4, "d_mlp": 16,
                  "attn_only": attn_only, "normalization_type": "LN", "lengths": list(LENGTHS),
                  "attention_dir": "bidirectional", "readout": "bos"},
        "n_examples": n_examples, "accuracy": 0.9, "balanced_accuracy": 0.98, "dla_max_abs_error": 3e-7,
        "mirror_scores": dict(MIRROR_SCORES),
        "circuit_heads": list(dict.fromkeys(n.split("@")[0] for n in nodes if n.startswith("L"))),
        "circuit_nodes": nodes, "weak": False, "selection": "the smallest set of nodes reaching 0.9",
        "faithfulness": circuit["faithfulness"], "completeness": circuit["completeness"]["value"],
        "minimality": {n: m["value"] for n, m in circuit["minimality"].items()}, "search": circuit["search"],
        "scrubbing": {r["name"]: {k: r[k] for k in ("recovered", "control", "constant", "verdict")}
                      for r in circuit["scrubbing"]},
        "evidence": evidence,
        "circuit_accuracy": {"n": n_examples, "n_distance_1": 8, "n_palindrome": 8, "mode": "resample",
                             "circuit": nodes,
                             "unablated": run(0.98, 1.0, 0.875, BASE_LEAN),
                             "others_ablated": run(0.95, 0.75, 0.7, -0.3),
                             "circuit_ablated": run(0.51, 0.25, 0.125, -2.0)},
        "sentences": circuit["sentences"],
        "patching": {"n_pairs": 6, "full_resid_pre_recovery_min": 1.0, "full_resid_pre_recovery_max": 1.0,
                     "sets": [{"component": c, "positions": where, "n": 6, "recovery": r, "median": m}
                              for c, cells in SET_PATCHING.items() if not attn_only or "mlp" not in c
                              for where, (r, m) in cells.items()]},
        "adversarial": {"n_palindromes": 2, "n_edits": n_edits, "n_misclassified": n_wrong, "min_margin": -0.1,
                        "misclassified": []},
        "files": sorted([f"{name}.parquet" for name in SCHEMAS] + ["summary.json", "circuit.json"]),
    }


def write_attribution(root: Path, n_wrong: int, attn_only: bool = False,
                      predictions: pd.DataFrame | None = None) -> None:
    rng = np.random.default_rng(0)
    examples = analysis_rows()
    out = root / "data/attribution"
    out.mkdir(parents=True)
    dla = dla_frame(examples, rng)
    if attn_only:
        dla = dla[~dla["component"].isin(MLPS)]
    distributions = distributions_frame(dla)
    adversarial = adversarial_frames(n_wrong)
    edges = edges_frame(attn_only)
    tables = {"dla": dla, "distributions": distributions,
              "distribution_stats": distribution_stats_frame(distributions), "attention": attention_frame(rng),
              "mirror": mirror_frame(), "readout_attention": readout_attention_frame(),
              "patching": patching_frame(rng, mlp=not attn_only),
              "ablation": ablation_frame(attn_only), "nodes": nodes_frame(attn_only), "edges": edges,
              "composition": composition_frame(), **weights_frames(rng), **adversarial,
              "readout_by_position": readout_by_position_frame(),
              **explorer_frames(predictions if predictions is not None else write_evaluation_frame(0),
                                adversarial["adversarial"], attn_only, np.random.default_rng(2))}
    assert sorted(tables) == sorted(SCHEMAS)  # every table the stage writes
    for name, frame in tables.items():
        save(frame, out / f"{name}.parquet")
    circuit = circuit_json(attn_only, edges)
    (out / "circuit.json").write_text(json.dumps(circuit))
    summary = summary_json(len(adversarial["adversarial"]), n_wrong, len(examples), attn_only, circuit)
    (out / "summary.json").write_text(json.dumps(summary))


def write_activations(root: Path, with_patterns: bool = True) -> np.ndarray:
    """A real activation store (manifest + examples.parquet + one .npy per layer's hook_pattern)."""
    out = root / "data/activations"
    out.mkdir(parents=True)
    examples = analysis_rows()
    rows = [{**r, "pair_id": None, "role": None} for r in analysis_records()]
    write_table(table(rows, {f.name: f.type for f in EXAMPLES_SCHEMA}), out / "examples.parquet")
    rng = np.random.default_rng(1)
    patterns = np.zeros((len(examples), N_LAYERS, N_HEADS, WIDTH, WIDTH), dtype=np.float32)
    for i, length in enumerate(examples["length"]):
        n = length + 2  # the PAD columns of a shorter string stay 0, as the PAD mask makes them
        patterns[i, :, :, :n, :n] = rng.dirichlet(np.ones(n), size=(N_LAYERS, N_HEADS, n))
    hooks = {}
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(N_LAYERS)] if with_patterns else ["hook_embed"]
    for layer, name in enumerate(names):
        data = patterns[:, layer] if with_patterns else np.zeros((len(examples), WIDTH, D_MODEL), np.float32)
        np.save(out / f"{name}.npy", data)
        hooks[name] = {"file": f"{name}.npy", "shape": list(data.shape), "dtype": "float32"}
    (out / "manifest.json").write_text(json.dumps({
        "format": "palindrome-lens/activations/v1", "n_examples": len(examples), "n_positions": WIDTH,
        "dtype": "float32", "examples": {"file": "examples.parquet"}, "hooks": hooks,
        "model": {"dims": {}, "sha256": {}}, "data": {"sha256": {}}}))
    return patterns


COMMIT = "0123456789abcdef0123456789abcdef01234567"
PARAMS = {"seed": 3, "data.alphabet": "abcd", "data.lengths": list(LENGTHS), "data.n_train": 640, "data.n_test": 32,
          "data.palindrome_fraction": 0.5, "data.negative_mix": {"near1": 0.6, "near2": 0.2, "random": 0.2, "redraw": 0.0},
          "data.redraw_probability": 0.5, "train.lr": 0.003}
COMMITTED = {**PARAMS, "train.lr": 0.002}  # the run changed one param


def provenance() -> Provenance:
    return Provenance(commit=COMMIT, commit_date="2026-01-02T03:04:05+00:00", commit_subject="a <b>test</b> commit",
                      uncommitted=(), model_md5="feedc0de" * 4, params=PARAMS, committed_params=COMMITTED,
                      machine="Linux x86_64, a test CPU, Python 3.x, torch 0")


def sources(root: Path) -> Sources:
    return Sources(
        train_metrics=root / "data/train/metrics.json",
        train_loss=root / "data/train/plots/metrics/train/loss.tsv",
        val_accuracy=root / "data/train/plots/metrics/val/accuracy.tsv",
        eval_metrics=root / "data/eval/metrics.json",
        predictions=root / "data/eval/predictions.parquet",
        attribution=root / "data/attribution",
        activations=root / "data/activations",
        provenance=provenance(),
    )


# --- reading pages back -------------------------------------------------------------------------------


def page(pages: list[Page], filename: str) -> Page:
    return next(p for p in pages if p.filename == filename)


def built_page(inputs: ReportInputs, filename: str, n_examples: int = 3, hist_bins: int = 7) -> Page:
    """One analysis page built as report_pages builds it (its own BUILDERS entry), without building the others
    (the index needs them all: use report_pages for it)."""
    build = next(build for module, build in BUILDERS if filename == module.FILENAME)
    return build(inputs, n_examples, hist_bins)


def section(p: Page, heading_start: str) -> Section:
    found = [s for s in p.sections if s.heading.startswith(heading_start)]
    assert len(found) == 1, [s.heading for s in p.sections]
    return found[0]


def figure(p: Page, heading_start: str) -> go.Figure:
    content = section(p, heading_start).content
    assert isinstance(content, Figure)
    return content.fig


def z_of(trace: go.Heatmap) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in trace.z], dtype=float)


def write_all(root: Path, n_wrong: int = 5, n_adv_wrong: int = 4, attn_only: bool = False,
              with_patterns: bool = True) -> Sources:
    write_training(root)
    predictions = write_evaluation(root, n_wrong)
    write_attribution(root, n_adv_wrong, attn_only, predictions)
    write_activations(root, with_patterns)
    return sources(root)
