"""Read what the report shows: the pipeline's outputs, checked, as plain DataFrames and dicts.

Every missing file, column or key is a DataFileError naming the file and what is wrong. The report never
runs the model: attention views of example strings come from the extracted activations on disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from palindrome_lens.atomic import read_json
from palindrome_lens.attribution.edges import LOGITS
from palindrome_lens.attribution.schemas import SCHEMAS, columns
from palindrome_lens.attribution.summary import FORMAT as CIRCUIT_FORMAT
from palindrome_lens.data.parquet import read_table
from palindrome_lens.errors import DataFileError
from palindrome_lens.report.explanation_inputs import ExplanationInputs, load_explanation
from palindrome_lens.report.provenance import Provenance

INT, F, S, B = pa.int64(), pa.float64(), pa.string(), pa.bool_()

PREDICTION_COLUMNS = {"text": S, "label": B, "kind": S, "length": INT, "distance": INT, "mismatch_pos": INT,
                      "logit_diff": F, "prob_palindrome": F, "prediction": B, "correct": B}

# The keys of summary.json (palindrome-lens/attribution/v2) the pages read; the circuit itself comes from circuit.json.
SUMMARY_KEYS = ("circuit_nodes", "circuit_accuracy.mode", "evidence", "model.n_layers", "model.n_heads", "model.readout",
                "dla_max_abs_error", "mirror_scores", "patching", "adversarial")
# summary.json's circuit_accuracy runs, each with these figures (run.circuit_accuracy).
CIRCUIT_RUNS = ("unablated", "others_ablated", "circuit_ablated")
RUN_KEYS = ("accuracy", "distance_1_accuracy", "palindrome_accuracy", "balanced_accuracy", "balanced_margin", "lean")
# circuit.json (palindrome-lens/circuit/v2, written by attribution.run.circuit_document); lists are checked per item.
CIRCUIT_KEYS = ("format", "nodes", "edges", "faithfulness", "completeness.value", "completeness.worst_k",
                "completeness.tried", "minimality", "ablation.mode", "search.method", "search.target",
                "search.n_candidates", "search.candidates", "search.exhaustive_up_to", "search.budget",
                "search.screened", "search.rescored", "search.screening_rows", "search.reached",
                "search.node_positions", "gates.faithfulness_target", "gates.minimality_floor", "gates.edge_floor",
                "scrubbing", "sentences", "discovered.boundaries", "discovered.budget", "discovered.evaluated",
                "discovered.screen_rows", "discovered.screen_draws", "discovered.draws")
CIRCUIT_RUN_KEYS = ("balanced_margin", "balanced_accuracy")
CIRCUIT_ABLATION_RUNS = ("model", "circuit_only", "nothing", "constant_predictor")
SCRUB_RUNS = ("model", "hypothesis", "control", "random")  # scrubbing.scrub's runs
SCRUB_RUN_KEYS = ("loss", "loss_palindrome", "loss_not_palindrome", "balanced_accuracy", "balanced_margin")
# every scrub's figures (attribution.scrubbing.Scrubber.scrub), and the search's boundaries and path steps
SCRUB_FIGURES = ("recovered", "recovered_constant", "accuracy_recovered", "control", "control_constant", "constant",
                 "self_draw_share", "bits")
BOUNDARY_KEYS = ("after_layer", "keep", "bits", "path", "budget_exhausted", "sanity_all_recovered",
                 *(f"result.{k}" for k in (*SCRUB_FIGURES, "verdict", "local", "n_draws", "n_rows")))
STEP_KEYS = ("group", "feature", "keep", "bits", "accepted", "full", *(f"screen.{k}" for k in (*SCRUB_FIGURES, "verdict",
                                                                                               "local_recovered")))
CIRCUIT_ITEM_KEYS = {
    "nodes": ("name", "component", "layer", "positions", "role"),
    "edges": ("from", "to", "via", "effect", "n_pairs", "pair_median"),
    "scrubbing": ("name", "claim", "after_layer", "keep", "n_draws", "n_rows", *SCRUB_FIGURES, "verdict", "local",
                  "baseline.label_entropy", "baseline.random_loss", "baseline.model_loss",
                  *(f"runs.{run}.{key}" for run in SCRUB_RUNS for key in SCRUB_RUN_KEYS)),
}
EXAMPLE_KINDS = ("palindrome", "near1", "near2", "random")
BOS, EOS = "[BOS]", "[EOS]"


@dataclass(frozen=True)
class Sources:
    """Where the report reads from (the stage passes the pipeline's paths)."""

    train_metrics: Path
    train_loss: Path  # dvclive TSV: step, loss
    val_accuracy: Path  # dvclive TSV: step, accuracy
    eval_metrics: Path
    predictions: Path
    attribution: Path  # directory
    activations: Path  # directory
    provenance: Provenance = field(default_factory=Provenance)  # collected by the stage (git, dvc.lock, params)
    explanation: Path | None = None  # directory (the explain stage)


@dataclass(frozen=True)
class Training:
    metrics: dict[str, Any]
    loss: pd.DataFrame  # step, loss
    val_accuracy: pd.DataFrame  # step, accuracy


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # PREDICTION_COLUMNS; mismatch_pos is nullable


@dataclass(frozen=True)
class Attribution:
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]  # every table of attribution.schemas.SCHEMAS, by name
    circuit: dict[str, Any] = field(default_factory=dict)  # circuit.json

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]


@dataclass(frozen=True)
class ExampleAttention:
    """Every head's attention on one analysis string, real positions only (BOS, characters, EOS)."""

    example_id: int
    text: str
    kind: str
    tokens: list[str]
    pattern: np.ndarray  # (heads in TransformerLens order, dest, src)
    head_names: list[str]


@dataclass(frozen=True)
class ReportInputs:
    training: Training
    evaluation: Evaluation
    attribution: Attribution
    examples: list[ExampleAttention] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
    explanation: ExplanationInputs | None = None  # None: the report was not given the explain stage's output


# --- small readers -----------------------------------------------------------------------------------


RERUN = "; rerun the stage that produces it (dvc repro)"


def missing_key(data: Any, keys: Sequence[str]) -> str | None:
    """The first dotted key (`val.accuracy`) of `keys` that `data` lacks, or None."""
    for key in keys:
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return key
            node = node[part]
    return None


def require_keys(data: Mapping[str, Any], keys: Sequence[str], path: str | os.PathLike[str]) -> None:
    """Dotted keys (`val.accuracy`) that must be present in `data`."""
    key = missing_key(data, keys)
    if key is not None:
        raise DataFileError(f"{path}: key {key!r} is missing; rerun the stage that produces it")


def require_items(data: Mapping[str, Any], key: str, keys: Sequence[str], path: str | os.PathLike[str]) -> None:
    """`data[key]` is a list whose every item has the dotted `keys` (reported as `key[i].k`)."""
    items = data[key]
    if not isinstance(items, list):
        raise DataFileError(f"{path}: key {key!r} must be a list; rerun the stage that produces it")
    for i, item in enumerate(items):
        missing = missing_key(item, keys)
        if missing is not None:
            raise DataFileError(f"{path}: key '{key}[{i}].{missing}' is missing; rerun the stage that produces it")


def read_curve(path: str | os.PathLike[str], value: str) -> pd.DataFrame:
    """A dvclive plot TSV with columns `step` and `value`, sorted by step, numbers checked."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found; run the train stage (dvc repro train)")
    try:
        frame = pd.read_csv(path, sep="\t")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataFileError(f"{path}: not a readable TSV ({exc}); rerun the train stage") from exc
    for column in ("step", value):
        if column not in frame.columns:
            raise DataFileError(f"{path}: column {column!r} is missing (columns are {', '.join(frame.columns)})")
    frame = frame[["step", value]]
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1) | ~np.isfinite(numeric.to_numpy(dtype="float64")).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFileError(f"{path}: row {row + 2} is not a pair of finite numbers: {frame.iloc[row].tolist()}")
    return numeric.astype({"step": "int64", value: "float64"}).sort_values("step", kind="stable").reset_index(drop=True)


def read_frame(path: str | os.PathLike[str], required: Mapping[str, pa.DataType]) -> pd.DataFrame:
    """A Parquet table with the `required` columns (and only those), as pandas."""
    table = read_table(path, required)
    return table.select(list(required)).to_pandas()


# --- the pipeline's outputs ---------------------------------------------------------------------------


def load_training(sources: Sources) -> Training:
    metrics = read_json(sources.train_metrics, hint=RERUN)
    require_keys(metrics, ("step", "n_examples", "val.accuracy", "val.loss", "train.loss"), sources.train_metrics)
    return Training(metrics, read_curve(sources.train_loss, "loss"), read_curve(sources.val_accuracy, "accuracy"))


def load_evaluation(sources: Sources) -> Evaluation:
    metrics = read_json(sources.eval_metrics, hint=RERUN)
    require_keys(metrics, ("n",), sources.eval_metrics)
    if metrics["n"]:
        require_keys(metrics, ("accuracy", "kind", "distance", "length", "mismatch_pos", "confusion"),
                     sources.eval_metrics)
    predictions = read_frame(sources.predictions, PREDICTION_COLUMNS)
    predictions["mismatch_pos"] = predictions["mismatch_pos"].astype("Int64")
    return Evaluation(metrics, predictions)


def load_circuit(path: Path) -> dict[str, Any]:
    """circuit.json, checked: every key the circuit and index pages read."""
    circuit = read_json(path, hint=RERUN)
    require_keys(circuit, CIRCUIT_KEYS, path)
    if circuit["format"] != CIRCUIT_FORMAT:
        raise DataFileError(f"{path}: format {circuit['format']!r}, expected {CIRCUIT_FORMAT!r}; rerun dvc repro attribute")
    require_keys(circuit, [f"ablation.{run}.{k}" for run in CIRCUIT_ABLATION_RUNS for k in CIRCUIT_RUN_KEYS], path)
    for key, keys in CIRCUIT_ITEM_KEYS.items():
        require_items(circuit, key, keys, path)
    require_items(circuit["discovered"], "boundaries", BOUNDARY_KEYS, f"{path} (discovered)")
    for i, boundary in enumerate(circuit["discovered"]["boundaries"]):
        require_items(boundary, "path", STEP_KEYS, f"{path} (discovered.boundaries[{i}])")
    known = {n["name"] for n in circuit["nodes"]} | {LOGITS}
    for i, edge in enumerate(circuit["edges"]):
        for end in ("from", "to"):
            if edge[end] not in known:
                raise DataFileError(f"{path}: edges[{i}].{end} is {edge[end]!r}, which is not one of its nodes; "
                                    "rerun dvc repro attribute")
    for name, entry in circuit["minimality"].items():  # {} when the model has no margin to measure against
        missing = missing_key(entry, ("value", "k"))
        if missing is not None:
            raise DataFileError(f"{path}: key 'minimality.{name}.{missing}' is missing; rerun dvc repro attribute")
    return circuit


def load_attribution(directory: str | os.PathLike[str]) -> Attribution:
    directory = Path(directory)
    summary_path = directory / "summary.json"
    summary = read_json(summary_path, hint=RERUN)
    require_keys(summary, SUMMARY_KEYS, summary_path)
    require_keys(summary, [f"circuit_accuracy.{run}.{k}" for run in CIRCUIT_RUNS for k in RUN_KEYS], summary_path)
    circuit = load_circuit(directory / "circuit.json")
    tables = {}
    for name in SCHEMAS:
        frame = read_frame(directory / f"{name}.parquet", columns(name))
        if name == "patching":  # null = "every position" / "no head" / "all mismatch positions"
            frame = frame.astype({"head": "Int64", "pos": "Int64", "mismatch_pos": "Int64"})
        if name == "example_strings":  # null off the analysis set
            frame = frame.astype({"example_id": "Int64"})
        tables[name] = frame
    return Attribution(summary, tables, circuit)


def pick_examples(examples: pd.DataFrame, per_kind: int = 1) -> pd.DataFrame:
    """Analysis strings for attention views: the first stratified string(s) of each kind at the longest length."""
    stratified = examples[examples["role"].isna()]
    if stratified.empty:
        return stratified
    longest = stratified[stratified["length"] == stratified["length"].max()]
    order = [k for k in EXAMPLE_KINDS if k in set(longest["kind"])]
    chosen = [longest[longest["kind"] == kind].head(per_kind) for kind in order]
    return pd.concat(chosen) if chosen else longest.head(0)


def load_example_attention(activations: str | os.PathLike[str], attention: pd.DataFrame,
                           per_kind: int = 1) -> list[ExampleAttention]:
    """Attention of a few analysis strings, read from the stored `attn.hook_pattern` (no model run).

    `attention` (attention.parquet) gives the number of real positions per length. Returns [] when the
    patterns were not extracted.
    """
    # Imported here: the activations package pulls in TransformerLens, which only this view needs.
    from palindrome_lens.activations import load_examples, load_manifest

    manifest = load_manifest(activations)
    hooks = sorted((name for name in manifest.hooks if name.endswith("attn.hook_pattern")),
                   key=lambda name: int(name.split(".")[1]))
    if not hooks:
        return []
    examples = load_examples(manifest.examples_path)
    widths = attention.groupby("length")["dest"].max() + 1
    patterns = [np.load(manifest.path_of(hook), mmap_mode="r", allow_pickle=False) for hook in hooks]
    out = []
    for row in pick_examples(examples, per_kind).itertuples(index=False):
        length = int(row.length)
        if length not in widths.index:
            continue
        n = int(widths[length])
        stacked = np.concatenate([np.asarray(p[int(row.example_id), :, :n, :n], dtype=np.float64) for p in patterns])
        n_heads = patterns[0].shape[1]
        names = [f"L{layer}H{head}" for layer in range(len(hooks)) for head in range(n_heads)]
        tokens = [BOS, *str(row.text), *([EOS] if n > length + 1 else [])]
        if len(tokens) != n or not np.isfinite(stacked).all():
            raise DataFileError(f"{Path(activations)}: the stored attention of example {row.example_id} "
                                f"({row.text!r}) does not fit {n} real positions; rerun dvc repro extract attribute")
        out.append(ExampleAttention(int(row.example_id), str(row.text), str(row.kind), tokens, stacked, names))
    return out


def load_inputs(sources: Sources) -> ReportInputs:
    attribution = load_attribution(sources.attribution)
    return ReportInputs(
        training=load_training(sources),
        evaluation=load_evaluation(sources),
        attribution=attribution,
        examples=load_example_attention(sources.activations, attribution["attention"]),
        provenance=sources.provenance,
        explanation=None if sources.explanation is None else load_explanation(sources.explanation),
    )


def finite(value: Any) -> float | None:
    """A float, or None for missing/NaN (JSON null)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
