"""The whole attribute analysis: read the model and the extracted activations, compute every table, the
circuit document and the summary, and write them into one directory atomically."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache

from palindrome_lens.activations import load_cache, load_examples, load_manifest
from palindrome_lens.atomic import atomic_dir, write_json
from palindrome_lens.attribution.ablation import MODES, Ablator, ablation_table, resample_sources
from palindrome_lens.attribution.adversarial import (
    adversarial_by_position,
    adversarial_search,
    choose_palindromes,
)
from palindrome_lens.attribution.attention import (
    mean_patterns,
    mirror_by_head,
    mirror_scores,
    readout_attention,
)
from palindrome_lens.attribution.circuit import (
    RANK_ROWS,
    SEARCH_ROWS,
    CircuitScorer,
    completeness,
    minimality,
    screening_rows,
    search_circuit,
    without,
)
from palindrome_lens.attribution.common import (
    balanced_accuracy,
    balanced_mean,
    forward_logit_diff,
    head_names,
    is_causal,
    margin,
    readout_positions,
    save_table,
    to_numpy,
)
from palindrome_lens.attribution.composition import composition_table
from palindrome_lens.attribution.discovery import discover
from palindrome_lens.attribution.distributions import centred_components, distribution_stats
from palindrome_lens.attribution.dla import direct_logit_attribution
from palindrome_lens.attribution.edges import LOGITS, path_patching, possible_edges
from palindrome_lens.attribution.nodes import (
    NODE_POSITIONS,
    Node,
    candidate_nodes,
    embedding_nodes,
    group_masks,
)
from palindrome_lens.attribution.patching import activation_patching, corruption_pairs
from palindrome_lens.attribution.per_example import example_tables
from palindrome_lens.attribution.readable import read_test
from palindrome_lens.attribution.reader import readout_by_position
from palindrome_lens.attribution.reconcile import set_patching
from palindrome_lens.attribution.schemas import SCHEMAS
from palindrome_lens.attribution.scrubbing import DonorPool, Hypothesis, Scrubber
from palindrome_lens.attribution.summary import FORMAT as CIRCUIT_FORMAT
from palindrome_lens.attribution.summary import (
    discovered_sentences,
    head_evidence,
    scrub_facts,
    scrub_verdict,
    sentences,
)
from palindrome_lens.attribution.weights import pos_cosine, pos_embed_table, positional_qk
from palindrome_lens.errors import AnalysisError, DataFileError
from palindrome_lens.hooks import ATTRIBUTION_HOOKS, full_hook_names
from palindrome_lens.model.classifier import Classifier
from palindrome_lens.model.readout import readout_of
from palindrome_lens.params import AttributeParams

FORMAT = "palindrome-lens/attribution/v2"
SUMMARY, CIRCUIT = "summary.json", "circuit.json"
DLA_TOLERANCE = 1e-3  # |sum of DLA components - logit diff|, relative to max(1, |logit diff|)
PATCH_TOLERANCE = 1e-3  # |recovery - 1| when every activation of a layer is patched


@dataclass
class Attribution:
    """Every table (by file stem), the summary and the circuit document; `seconds` per part (printed by
    the stage and the benchmark, never written: outputs stay byte-identical)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    circuit: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start


def needed_hooks(clf: Classifier) -> list[str]:
    """Full hook names this model has among ATTRIBUTION_HOOKS (no MLPs when attn_only, no LN scales without LN)."""
    cfg = clf.model.cfg
    names = full_hook_names(ATTRIBUTION_HOOKS, cfg.n_layers)
    if cfg.attn_only:
        names = [n for n in names if not n.endswith("hook_mlp_out")]
    if cfg.normalization_type != "LN":
        names = [n for n in names if ".hook_scale" not in n]
    return names


def _check_rows(examples: pd.DataFrame, cache: ActivationCache) -> None:
    if not (examples["example_id"].to_numpy() == np.arange(len(examples))).all():
        raise DataFileError("examples: example_id must be 0..n-1 in row order (the rows of the activation cache)")
    cached = cache["hook_embed"].shape[0] if "hook_embed" in cache.cache_dict else len(examples)
    if cached != len(examples):
        raise DataFileError(f"the activation cache holds {cached} examples but examples.parquet lists {len(examples)}")


def analyse(clf: Classifier, cache: ActivationCache, examples: pd.DataFrame, test: pd.DataFrame,
            settings: AttributeParams, seed: int) -> Attribution:
    """All analyses in memory. `cache` holds the rows of `examples` (example_id order)."""
    model = clf.model
    model.eval()
    _check_rows(examples, cache)
    bs = settings.batch_size
    tokens = clf.encode(examples["text"].tolist())
    positions = readout_positions(model, tokens)
    label = examples["label"].to_numpy(dtype=bool)
    diff = forward_logit_diff(model, tokens, bs)
    base = to_numpy(diff)
    out = Attribution()
    t = out.tables
    with out.timed("dla"):
        t["dla"] = direct_logit_attribution(model, cache, examples, diff, positions)
        dla_error = _check_dla(t["dla"], base)
        t["distributions"] = centred_components(t["dla"])
        t["distribution_stats"] = distribution_stats(t["distributions"])
    with out.timed("attention"):
        t["attention"] = mean_patterns(model, cache, examples, tokens, clf.tokenizer.pad_id)
        t["mirror"] = mirror_scores(model, cache, examples)
        t["readout_attention"] = readout_attention(model, cache, examples, tokens)
        t["readout_by_position"] = readout_by_position(model, cache, examples, tokens)
    with out.timed("patching"):
        t["patching"] = activation_patching(model, tokens, cache, examples, bs)
        patch_facts = _check_patching(t["patching"])
        patch_facts["sets"] = set_patching(model, tokens, cache, examples, bs)  # patching vs ablation, reconciled

    # nodes, class-balanced ablation and the circuit
    readout_kind = readout_of(model).kind
    groups = NODE_POSITIONS[settings.node_positions]
    masks = group_masks(examples["length"], tokens.shape[1], groups, clf.tokenizer.add_eos)
    candidates = candidate_nodes(model, groups, masks, readout_kind)
    sources = resample_sources(examples, seed)
    ablators = {mode: Ablator(model, tokens, cache, examples, masks, mode, sources) for mode in MODES}
    with out.timed("ablation"):
        alone = ablators["resample"].logit_diffs([[nd] for nd in candidates], desc="node ablation")
        t["ablation"] = ablation_table(ablators, model, examples, base, candidates, alone)
    scorer = CircuitScorer(ablators[settings.ablation], candidates, label)
    screen = CircuitScorer(ablators[settings.ablation], candidates, label, screening_rows(examples, seed))
    with out.timed("search"):
        search = search_circuit(screen, scorer, settings.faithfulness_target, settings.search_budget)
    circuit = search.nodes
    if settings.ablation == "resample":  # each node alone is a row of nodes.parquet too: run once (after the search,
        scorer.remember([without(candidates, [nd]) for nd in candidates], alone)  # which counts the sets it scored)
    full = float(scorer.f([candidates])[0])
    with out.timed("completeness and minimality"):
        ranker = CircuitScorer(ablators[settings.ablation], candidates, label, screening_rows(examples, seed, RANK_ROWS))
        complete = (completeness(scorer, circuit, full, ranker) if full > 0
                    else {"value": None, "worst_k": None, "tried": {}})
        minimal = minimality(scorer, circuit, full, ranker) if full > 0 else {}
        t["nodes"] = node_table(scorer, candidates, circuit, minimal, full)

    # edges by path patching, composition scores, scrubbing
    with out.timed("path patching"):
        pairs = corruption_pairs(examples)
        senders = [nd for nd in embedding_nodes(groups, masks) if nd.component == "embed"] + candidates
        edges = possible_edges(senders, candidates, readout_kind)
        drawn = {nd.name for nd in [*embedding_nodes(groups, masks), *circuit]} | {LOGITS}
        undrawn = [e for e in edges if not {e.sender.name, e.receiver_name} <= drawn]  # not in the graph: a few pairs
        t["edges"] = path_patching(model, tokens, cache, pairs, masks, edges, bs, screened=undrawn,
                                    confirm_from=settings.edge_floor / 2)
    with out.timed("composition"):
        t["composition"] = composition_table(model, seed)
    with out.timed("donor pool"):
        pool = DonorPool.build(model, clf.encode, examples["text"].astype(str).tolist(), test["text"].astype(str).tolist(),
                               range(model.cfg.n_layers), bs)
        scrubber = Scrubber(model, tokens, examples, pool, seed, clf.tokenizer.add_eos, bs, base)
    with out.timed("scrubbing"):
        scrubbing = [_scrub(scrubber, raw, settings) for raw in settings.hypotheses]
    with out.timed("discovery"):
        discovered = discover(scrubber, groups, is_causal(model), settings.faithfulness_target,
                              settings.discovery_budget, seed, lambda r: scrub_verdict(r, settings.faithfulness_target))
        _check_sanity(discovered)
        for boundary in discovered["boundaries"]:  # where the comparison is made, not only what is carried
            boundary["read"] = read_test(scrubber, int(boundary["after_layer"]), seed, settings.faithfulness_target)
    with out.timed("weights"):
        t["pos_qk"] = positional_qk(model, cache, examples, tokens)
        t["pos_embed"] = pos_embed_table(model)
        t["pos_cosine"] = pos_cosine(model)
    with out.timed("adversarial"):
        sources_adv = choose_palindromes(test, settings.n_adversarial, seed)
        t["adversarial"] = adversarial_search(model, clf.tokenizer, sources_adv, bs)
        t["adversarial_by_position"] = adversarial_by_position(t["adversarial"])
    with out.timed("per example"):
        t.update(example_tables(clf, examples, test, t["adversarial"], candidates, groups, bs))

    out.circuit = circuit_document(scorer, search, circuit, candidates, full, complete, minimal, t["edges"],
                                   scrubbing, settings, seed, masks, groups)
    out.circuit["discovered"] = discovered
    mirrors = mirror_by_head(t["mirror"])
    evidence = head_evidence(t["ablation"], t["patching"], mirrors, head_names(model), circuit, minimal)
    out.circuit["sentences"] = (sentences(out.circuit, evidence, settings.faithfulness_target, settings.minimality_floor)
                                + discovered_sentences(discovered, settings.faithfulness_target))
    circuit_heads = list(dict.fromkeys(nd.component for nd in circuit if nd.is_head))
    correct = to_numpy(margin(diff.cpu(), torch.tensor(label))) > 0
    out.summary = {
        "format": FORMAT,
        "model": {k: clf.config.get(k) for k in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "attn_only",
                                                  "normalization_type", "lengths", "attention_dir")}
        | {"readout": readout_kind},
        "n_examples": len(examples),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(balanced_accuracy(np.where(label, base, -base), label)),
        "dla_max_abs_error": dla_error,
        "mirror_scores": mirrors,
        "circuit_heads": circuit_heads,
        "circuit_nodes": [nd.name for nd in circuit],
        "weak": not search.reached,
        "selection": (f"the smallest set of nodes (component at position group) whose faithfulness under "
                      f"{settings.ablation} ablation reaches {settings.faithfulness_target:g}; {search.method} search"),
        "faithfulness": out.circuit["faithfulness"],
        "completeness": complete["value"],
        "minimality": {name: m["value"] for name, m in minimal.items()},
        "search": out.circuit["search"],
        "scrubbing": {r["name"]: scrub_facts(r, r["verdict"]) for r in scrubbing},
        "discovered": [{"after_layer": b["after_layer"], "keep": b["keep"], **scrub_facts(b["result"], b["result"]["verdict"])}
                       for b in discovered["boundaries"]],
        "evidence": evidence,
        "circuit_accuracy": circuit_accuracy(scorer, candidates, circuit, examples),
        "sentences": out.circuit["sentences"],
        "patching": patch_facts,
        "adversarial": _adversarial_facts(t["adversarial"], len(sources_adv)),
        "files": sorted([f"{name}.parquet" for name in t] + [SUMMARY, CIRCUIT]),
    }
    return out


def _scrub(scrubber: Scrubber, raw: dict[str, Any], settings: AttributeParams) -> dict[str, Any]:
    hypothesis = Hypothesis.from_params(raw)
    n_layers = scrubber.model.cfg.n_layers
    if hypothesis.after_layer >= n_layers:
        raise AnalysisError(f"attribute.hypotheses: {hypothesis.name} scrubs after layer {hypothesis.after_layer}, "
                            f"but the model has {n_layers} layers (0..{n_layers - 1})")
    result = scrubber.scrub(hypothesis)
    result["verdict"] = scrub_verdict(result, settings.faithfulness_target)
    return result


def _check_sanity(discovered: dict[str, Any]) -> None:
    """Keeping every position whole must recover exactly the model: the scrubbing machinery's invariant."""
    for boundary in discovered["boundaries"]:
        value = boundary["sanity_all_recovered"]
        if value is not None and abs(value - 1) > PATCH_TOLERANCE:
            raise AnalysisError(f"scrubbing check failed: keeping every position after layer {boundary['after_layer']} "
                                f"whole recovers {value:.6f} of the loss, not 1")


def node_table(scorer: CircuitScorer, candidates: list[Node], circuit: list[Node], minimal: dict[str, Any],
               full: float) -> pd.DataFrame:
    """nodes.parquet: every candidate node, its share of the margin lost when it alone is ablated, and
    whether (and how minimally) it is in the circuit."""
    alone = scorer.f([without(candidates, [nd]) for nd in candidates])
    kept_alone = scorer.f([[nd] for nd in candidates])
    rows = []
    for nd, a, k in zip(candidates, alone, kept_alone):
        rows.append({"node": nd.name, "component": nd.component, "layer": nd.layer, "group": nd.group,
                     "ablated_alone_margin_loss": (full - a) / full if full > 0 else np.nan,
                     "kept_alone_faithfulness": k / full if full > 0 else np.nan,
                     "in_circuit": nd in circuit,
                     "minimality": minimal[nd.name]["value"] if nd.name in minimal else np.nan})
    return pd.DataFrame(rows)


def circuit_accuracy(scorer: CircuitScorer, candidates: list[Node], circuit: list[Node],
                     examples: pd.DataFrame) -> dict[str, Any]:
    """Accuracy unablated, with the circuit's nodes ablated and with every other node ablated (the circuit
    alone), over all rows, distance-1 rows and palindromes, plus the class-balanced figures."""
    label = examples["label"].to_numpy(dtype=bool)
    subsets = {"accuracy": np.ones(len(examples), dtype=bool),
               "distance_1_accuracy": examples["distance"].to_numpy() == 1,
               "palindrome_accuracy": label}
    kept = {"unablated": candidates, "circuit_ablated": without(candidates, circuit), "others_ablated": circuit}
    ablated = [without(candidates, k) for k in kept.values()]
    diffs = scorer.ablator.logit_diffs(ablated)
    out: dict[str, Any] = {"n": len(examples), "n_distance_1": int(subsets["distance_1_accuracy"].sum()),
                           "n_palindrome": int(label.sum()), "mode": scorer.ablator.mode,
                           "circuit": [nd.name for nd in circuit]}
    for key, d in zip(kept, diffs):
        signed = np.where(label, d, -d)
        out[key] = {name: float((signed[mask] > 0).mean()) if mask.any() else None for name, mask in subsets.items()}
        out[key]["balanced_accuracy"] = float(balanced_accuracy(signed, label))
        out[key]["balanced_margin"] = float(balanced_mean(signed, label))
        out[key]["lean"] = float(balanced_mean(d, label))
    return out


def circuit_document(scorer: CircuitScorer, search: Any, circuit: list[Node], candidates: list[Node], full: float,
                     complete: dict[str, Any], minimal: dict[str, Any], edges: pd.DataFrame, scrubbing: list[dict],
                     settings: AttributeParams, seed: int, masks: dict[str, np.ndarray],
                     groups: tuple[str, ...]) -> dict[str, Any]:
    """circuit.json (palindrome-lens/circuit/v2; `discovered` is added by analyse)."""
    (f_c, acc_c), (f_m, acc_m), (f_0, acc_0) = scorer.evaluate([circuit, candidates, []])
    inputs = [nd for nd in embedding_nodes(groups, masks) if nd.component == "embed"]
    shown = {nd.name for nd in [*inputs, *circuit]}
    in_graph = edges[edges["sender"].isin(shown) & (edges["receiver"].isin(shown) | (edges["receiver"] == LOGITS))
                     & (edges["effect"].abs() >= settings.edge_floor)]
    return {
        "format": CIRCUIT_FORMAT,
        "nodes": [{"name": nd.name, "component": nd.component, "layer": nd.layer, "positions": nd.group,
                   "role": "input" if nd.layer < 0 else "circuit"} for nd in [*inputs, *circuit]],
        "edges": [{"from": r.sender, "to": r.receiver, "via": r.via, "effect": float(r.effect),
                   "n_pairs": int(r.n_pairs), "pair_q25": float(r.pair_q25), "pair_median": float(r.pair_median),
                   "pair_q75": float(r.pair_q75)} for r in in_graph.itertuples()],
        "faithfulness": f_c / full if full > 0 else None,
        "completeness": complete,
        "minimality": minimal,
        "ablation": {
            "mode": settings.ablation, "seed": seed,
            "metric": "class-balanced margin: the logit difference signed towards the true label, averaged within "
                      "each class, then across the two",
            "model": {"balanced_margin": f_m, "balanced_accuracy": acc_m},
            "circuit_only": {"balanced_margin": f_c, "balanced_accuracy": acc_c},
            "nothing": {"balanced_margin": f_0, "balanced_accuracy": acc_0},
            "constant_predictor": {"balanced_margin": 0.0, "balanced_accuracy": 0.5},
        },
        "search": {"method": search.method, "target": settings.faithfulness_target,
                   "candidates": [nd.name for nd in candidates], "n_candidates": len(candidates),
                   "exhaustive_up_to": search.exhaustive_up_to, "budget": settings.search_budget,
                   "screened": search.evaluated, "rescored": search.rescored, "screening_rows": SEARCH_ROWS,
                   "reached": search.reached, "node_positions": settings.node_positions},
        "gates": {"faithfulness_target": settings.faithfulness_target, "minimality_floor": settings.minimality_floor,
                  "edge_floor": settings.edge_floor},
        "scrubbing": scrubbing,
    }


def _check_dla(dla: pd.DataFrame, diff: np.ndarray) -> float:
    """The largest |sum of components - logit diff|; the stage fails if it exceeds the tolerance."""
    sums = dla.groupby("example_id", sort=True)["value"].sum().to_numpy()
    error = np.abs(sums - diff)
    worst = int(np.argmax(error / np.maximum(1.0, np.abs(diff)))) if len(error) else 0
    if len(error) and error[worst] > DLA_TOLERANCE * max(1.0, abs(diff[worst])):
        raise AnalysisError(f"DLA check failed: the components of example {worst} sum to {sums[worst]:.6f} but its "
                            f"logit difference is {diff[worst]:.6f} (tolerance {DLA_TOLERANCE:g} relative)")
    return float(error.max()) if len(error) else 0.0


def _check_patching(patching: pd.DataFrame) -> dict[str, Any]:
    """Patching every activation of a layer from the clean run must restore the clean output."""
    overall = patching[patching["mismatch_pos"].isna()]
    sanity = overall[(overall["activation"] == "resid_pre") & overall["pos"].isna()]["recovery"].dropna()
    if len(sanity) and (sanity - 1).abs().max() > PATCH_TOLERANCE:
        raise AnalysisError(f"patching check failed: patching a whole residual stream from the clean run recovers "
                            f"{sanity.min():.6f} to {sanity.max():.6f} of the logit difference, not 1")
    return {
        "n_pairs": int(overall["n"].iloc[0]) if len(overall) else 0,
        "full_resid_pre_recovery_min": _num(sanity.min()) if len(sanity) else None,
        "full_resid_pre_recovery_max": _num(sanity.max()) if len(sanity) else None,
    }


def _adversarial_facts(edits: pd.DataFrame, n_sources: int) -> dict[str, Any]:
    wrong = edits[~edits["correct"]]
    return {
        "n_palindromes": n_sources,
        "n_edits": len(edits),
        "n_misclassified": len(wrong),
        "min_margin": _num(edits["margin"].min()) if len(edits) else None,
        "misclassified": wrong["text"].head(20).tolist(),
    }


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def write_attribution(out_dir: str | os.PathLike[str], clf: Classifier, activations: str | os.PathLike[str],
                      test: pd.DataFrame, settings: AttributeParams, seed: int) -> Attribution:
    """Load the activations (data/activations), run `analyse`, write every table, summary.json and
    circuit.json atomically; returns what was written (and the seconds per part)."""
    manifest = load_manifest(activations)
    names = needed_hooks(clf)
    missing = [n for n in names if n not in manifest.hooks]
    if missing:
        raise DataFileError(f"{Path(activations)}: the attribute stage needs {missing[0]} (and {len(missing) - 1} more), "
                            f"which were not extracted; add {', '.join(ATTRIBUTION_HOOKS)} to extract.hooks")
    examples = load_examples(manifest.examples_path)
    if manifest.n_positions != clf.tokenizer.width:
        raise DataFileError(f"{Path(activations)}: activations have {manifest.n_positions} positions but the model's "
                            f"tokenizer has width {clf.tokenizer.width}; rerun dvc repro extract")
    cache = load_cache(activations, clf, hooks=names)
    result = analyse(clf, cache, examples, test, settings, seed)
    with atomic_dir(out_dir) as tmp:
        for name, table in result.tables.items():
            save_table(table, tmp / f"{name}.parquet", SCHEMAS[name])
        write_json(tmp / SUMMARY, result.summary)
        write_json(tmp / CIRCUIT, result.circuit)
    return result
