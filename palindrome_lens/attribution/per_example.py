"""One string at a time, for the report's explorer: every analysis string, the misclassified test strings
and the single edits that fool the model, each with its logit difference, its direct logit attribution, every
head's attention pattern and what patching each candidate node from its counterpart does.

The counterpart is the string patching starts from, of the same length: a non-palindrome's repair (every
broken mirrored pair takes its left character), or a palindrome's copy with its outermost pair broken (the
last character moved to the next letter of the alphabet). Per node, the node's activation at its positions is
replaced by the counterpart's (the circuit search's resample machinery, with the counterpart as the source)
and

    recovery = (patched - own) / (counterpart - own)   of the logit difference

is the share of the way to the counterpart's answer that this one node moves the string: 1 = all of it,
0 = nothing; null where the two answers (almost) coincide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from transformer_lens.ActivationCache import ActivationCache

from palindrome_lens.attribution.ablation import Ablator
from palindrome_lens.attribution.common import (
    MIN_GAP,
    device_of,
    forward_logit_diff,
    logit_diff,
    margin,
    readout_positions,
    to_numpy,
)
from palindrome_lens.attribution.dla import component_stack, fold_final_ln
from palindrome_lens.attribution.nodes import NODE_POSITIONS, Node, group_masks, node
from palindrome_lens.errors import AnalysisError
from palindrome_lens.model.classifier import Classifier

MAX_SHOWN = 100  # misclassified test strings, and fooling edits, kept each (most confidently wrong first)
MISCLASSIFIED, FOOLING, ANALYSIS = "misclassified test string", "fooling edit", "analysis string"
FOUND = "failure found from the mechanism"  # the explain stage's failure search: a proposal the model gets wrong
DLA_TOLERANCE = 1e-3  # as the stage's own check: |sum of components - logit diff| relative to max(1, |diff|)
_HOOKS = ("hook_embed", "hook_pos_embed", "attn.hook_pattern", "attn.hook_z", "hook_mlp_out", "ln_final.hook_scale")


def counterpart(text: str, alphabet: str) -> str:
    """The same-length string patching starts from (see the module docstring); `text` itself when it has no pair."""
    n = len(text)
    if n < 2:
        return text
    if text != text[::-1]:
        half = text[: n // 2]
        return half + text[n // 2: n - n // 2] + half[::-1]
    return text[:-1] + alphabet[(alphabet.index(text[-1]) + 1) % len(alphabet)]


def explorer_strings(examples: pd.DataFrame, test: pd.DataFrame, test_diff: np.ndarray,
                     adversarial: pd.DataFrame) -> pd.DataFrame:
    """key, source, text, kind, label, length, example_id: the misclassified test strings and the fooling
    edits (each most confidently wrong first, at most MAX_SHOWN), then every analysis string in example_id order."""
    label = test["label"].to_numpy(dtype=bool)
    test_margin = np.where(label, test_diff, -test_diff)
    wrong = test.assign(_margin=test_margin)[test_margin <= 0]
    wrong = wrong.sort_values(["_margin", "text"], kind="stable").head(MAX_SHOWN)
    fooled = adversarial[~adversarial["correct"]].head(MAX_SHOWN)  # adversarial.parquet is sorted by margin
    parts = [
        pd.DataFrame({"source": MISCLASSIFIED, "text": wrong["text"], "kind": wrong["kind"], "label": wrong["label"],
                      "example_id": None}),
        pd.DataFrame({"source": FOOLING, "text": fooled["text"], "kind": "edit", "label": fooled["label"],
                      "example_id": None}),
        pd.DataFrame({"source": ANALYSIS, "text": examples["text"], "kind": examples["kind"],
                      "label": examples["label"], "example_id": examples["example_id"]}),
    ]
    out = pd.concat([p for p in parts if len(p)], ignore_index=True)
    out["text"] = out["text"].astype(str)
    out["label"] = out["label"].astype(bool)
    out["length"] = out["text"].str.len()
    out.insert(0, "key", np.arange(len(out)))
    return out


def failure_strings(failures: pd.DataFrame) -> pd.DataFrame:
    """The explorer's strings of the explain stage's failure search (failures.parquet): the distinct proposals the
    model gets wrong, most confidently wrong first (at most MAX_SHOWN)."""
    wrong = failures[failures["model_wrong"]]
    how_wrong = np.where(wrong["label"], -wrong["model_logit_diff"], wrong["model_logit_diff"])
    wrong = wrong.assign(_how=how_wrong).sort_values(["_how", "text"], ascending=[False, True], kind="stable")
    wrong = wrong.drop_duplicates("text").head(MAX_SHOWN)
    out = pd.DataFrame({"key": np.arange(len(wrong)), "source": FOUND, "text": wrong["text"].astype(str).to_numpy(),
                        "kind": "edit", "label": wrong["label"].to_numpy(dtype=bool), "example_id": None})
    out["length"] = out["text"].str.len()
    return out


def failure_views(clf: Classifier, failures: pd.DataFrame | None, circuit: dict, batch_size: int
                  ) -> dict[str, pd.DataFrame]:
    """The explorer's tables of failure_strings, patched over circuit.json's candidate nodes; {} when there are none."""
    if failures is None or not failures["model_wrong"].any():
        return {}
    search = circuit["search"]
    candidates = [node(name) for name in search["candidates"]]
    return string_views(clf, failure_strings(failures), candidates, NODE_POSITIONS[search["node_positions"]], batch_size)


def cached_run(clf: Classifier, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, ActivationCache]:
    """Logit differences and an ActivationCache of the hooks DLA, attention and patching need, in batches."""
    model = clf.model
    device = device_of(model)
    names = {f"blocks.{layer}.{h}" for layer in range(model.cfg.n_layers) for h in _HOOKS} | set(_HOOKS)
    diffs, parts = [], {}
    tokens = clf.encode(list(texts))
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start:start + batch_size].to(device)
        with torch.inference_mode():
            logits, cache = model.run_with_cache(batch, names_filter=lambda name: name in names,
                                                 return_cache_object=False)
        diffs.append(to_numpy(logit_diff(logits, readout_positions(model, batch))))
        for name, tensor in cache.items():  # hook_pos_embed may come for one row: give every row its own
            parts.setdefault(name, []).append(tensor.expand(len(batch), *tensor.shape[1:]).float())
    cache = ActivationCache({name: torch.cat(ts) for name, ts in parts.items()}, model)
    return np.concatenate(diffs).astype(np.float64), cache


def dla_rows(clf: Classifier, cache: ActivationCache, keys: np.ndarray, diffs: np.ndarray,
             positions: torch.Tensor) -> pd.DataFrame:
    """example_dla.parquet: key, component, value; checked to sum to each string's logit difference."""
    names, stack = component_stack(clf.model, cache, positions)
    values = to_numpy(fold_final_ln(clf.model, cache, stack, names, positions)).astype(np.float64)
    error = np.abs(values.sum(axis=1) - diffs) / np.maximum(1.0, np.abs(diffs))
    if len(error) and error.max() > DLA_TOLERANCE:
        raise AnalysisError(f"explorer DLA check failed: the components of string {int(error.argmax())} miss its "
                            f"logit difference by {error.max():.2g} (relative)")
    return pd.DataFrame({"key": keys.repeat(len(names)), "component": names * len(keys), "value": values.ravel()})


def attention_rows(clf: Classifier, cache: ActivationCache, keys: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """example_attention.parquet: key, layer, head, dest, src, value over each string's real positions."""
    cfg = clf.model.cfg
    extra = 1 + int(clf.tokenizer.add_eos)  # BOS, and EOS when the tokenizer adds it
    frames = []
    for length in sorted(set(lengths.tolist())):
        rows = np.flatnonzero(lengths == length)
        n = length + extra
        for layer in range(cfg.n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"][torch.from_numpy(rows)][:, :, :n, :n]
            key, head, dest, src = np.meshgrid(keys[rows], np.arange(cfg.n_heads), np.arange(n), np.arange(n),
                                               indexing="ij")
            frames.append(pd.DataFrame({"key": key.ravel(), "layer": layer, "head": head.ravel(),
                                        "dest": dest.ravel(), "src": src.ravel(),
                                        "value": to_numpy(pattern).ravel()}))
    return pd.concat(frames, ignore_index=True).sort_values(["key", "layer", "head", "dest", "src"], kind="stable")


def patching_rows(clf: Classifier, cache: ActivationCache, texts: list[str], diffs: np.ndarray,
                  candidates: Sequence[Node], groups: Sequence[str]) -> pd.DataFrame:
    """example_patching.parquet: key, node, patched_logit_diff, recovery. `texts` and `diffs` hold the
    strings, then their counterparts, in the same order."""
    n = len(texts) // 2
    tokens = clf.encode(texts)
    lengths = np.array([len(t) for t in texts])
    masks = group_masks(lengths, tokens.shape[1], groups, clf.tokenizer.add_eos)
    sources = np.concatenate([np.arange(n, 2 * n), np.arange(n, 2 * n)])  # each string takes its counterpart's
    rows = pd.DataFrame({"length": lengths})  # what the resample ablator needs of the rows
    ablator = Ablator(clf.model, tokens, cache, rows, masks, "resample", sources)
    patched = ablator.logit_diffs([[nd] for nd in candidates], rows=np.arange(n))  # (nodes, n)
    own, other = diffs[:n], diffs[n:]
    gap = other - own
    usable = np.abs(gap) > MIN_GAP
    recovery = np.where(usable, (patched - own) / np.where(usable, gap, 1.0), np.nan)
    names = [nd.name for nd in candidates]
    return pd.DataFrame({"key": np.tile(np.arange(n), len(names)), "node": np.repeat(names, n),
                         "patched_logit_diff": patched.ravel(), "recovery": recovery.ravel()}
                        ).sort_values(["key"], kind="stable").reset_index(drop=True)


def example_tables(clf: Classifier, examples: pd.DataFrame, test: pd.DataFrame, adversarial: pd.DataFrame,
                   candidates: Sequence[Node], groups: Sequence[str], batch_size: int) -> dict[str, pd.DataFrame]:
    """example_strings, example_dla, example_attention and example_patching (the explorer's tables)."""
    test_texts = test["text"].astype(str).tolist()
    test_diff = to_numpy(forward_logit_diff(clf.model, clf.encode(test_texts), batch_size)).astype(np.float64)
    return string_views(clf, explorer_strings(examples, test, test_diff, adversarial), candidates, groups, batch_size)


def string_views(clf: Classifier, strings: pd.DataFrame, candidates: Sequence[Node], groups: Sequence[str],
                 batch_size: int) -> dict[str, pd.DataFrame]:
    """The explorer's four tables of `strings` (key, source, text, kind, label, length, example_id)."""
    texts = strings["text"].tolist()
    others = [counterpart(t, clf.tokenizer.alphabet) for t in texts]
    diffs, cache = cached_run(clf, texts + others, batch_size)
    n = len(texts)
    keys = strings["key"].to_numpy()
    own = diffs[:n]
    strings["logit_diff"] = own
    strings["correct"] = to_numpy(margin(torch.tensor(own), torch.tensor(strings["label"].to_numpy(dtype=bool)))) > 0
    strings["counterpart"] = others
    strings["counterpart_logit_diff"] = diffs[n:]
    positions = readout_positions(clf.model, clf.encode(texts))
    first = ActivationCache({name: tensor[:n] for name, tensor in cache.cache_dict.items()}, clf.model)
    return {
        "example_strings": strings,
        "example_dla": dla_rows(clf, first, keys, own, positions),
        "example_attention": attention_rows(clf, first, keys, strings["length"].to_numpy()),
        "example_patching": patching_rows(clf, cache, texts + others, diffs, candidates, groups),
    }
