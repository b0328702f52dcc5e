"""The report pages on small synthetic pipeline outputs written in the real formats.

Training curves are dvclive TSVs, predictions and metrics come from the evaluate stage's own functions
(score_table, evaluation_metrics), the attribution tables have the attribute stage's columns and types,
and the activations are a real manifest + .npy store. Values are chosen so each figure can be checked
cell by cell. The real pipeline and a real browser are in test_pipeline_report.py.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pytest
import torch
from plotly.colors import get_colorscale

from palindrome_lens.activations import EXAMPLES_SCHEMA
from palindrome_lens.data.generate import SCHEMA as RAW_SCHEMA
from palindrome_lens.data.parquet import write_table
from palindrome_lens.data.strings import distance, mismatch_positions
from palindrome_lens.errors import DataFileError
from palindrome_lens.report import (
    Figure,
    Links,
    Page,
    ReportError,
    Section,
    Table,
    Text,
    build_report,
    render_page,
)
from palindrome_lens.report.inputs import ReportInputs, Sources, load_inputs
from palindrome_lens.report.pages import PAGE_FILES, report_pages, write_report
from palindrome_lens.report.plots import position_labels
from palindrome_lens.training.evaluate import score_table
from palindrome_lens.training.metrics import evaluation_metrics
from tests.conftest import run

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
KNOWN_ATTENTION = 0.875  # L1H0, length 4, dest 1 -> src 4 (the mirror of 1)


def table(rows: list[dict], types: dict[str, pa.DataType]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema(list(types.items())))


def save(frame: pd.DataFrame, path: Path) -> None:
    write_table(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), path)


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
    records = analysis_records()
    frame = pd.DataFrame(records)
    raw = table([{f.name: r[f.name] for f in RAW_SCHEMA} for r in records], {f.name: f.type for f in RAW_SCHEMA})
    sign = np.where(frame["label"], 1.0, -1.0)
    sign[:n_wrong] *= -1
    size = 0.5 + np.arange(len(frame)) / 10  # distinct margins, so ordering is checkable
    diff = torch.tensor(sign * size, dtype=torch.float32)
    logits = torch.stack([-diff / 2, diff / 2], dim=1)
    predictions = score_table(raw, logits)
    (root / "data/eval").mkdir(parents=True)
    write_table(predictions, root / "data/eval/predictions.parquet")
    (root / "data/eval/metrics.json").write_text(json.dumps(evaluation_metrics(predictions)))
    return predictions.to_pandas()


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
                             "n": 8 if kind == "all" else 2, "mirror_score": 0.1 + 0.2 * i, "std": 0.01})
    return pd.DataFrame(rows)


def patching_frame(rng: np.random.Generator, mlp: bool = True) -> pd.DataFrame:
    rows = []

    def add(length: int, activation: str, component: str, layer: int, head: int | None, pos: int | None) -> None:
        for pair in [None, *range(length // 2)]:
            value = float(rng.uniform(-0.5, 1.2))
            if (length, activation, layer, pos, pair) == (5, "resid_pre", 1, 2, 1):
                value = KNOWN_RECOVERY
            rows.append({"length": length, "activation": activation, "component": component, "layer": layer,
                         "head": head, "pos": pos, "mismatch_pos": pair, "n": 3, "recovery": value, "stderr": 0.1,
                         "clean_logit_diff": 2.0, "corrupted_logit_diff": -1.0})

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


def ablation_frame(components: list[str]) -> pd.DataFrame:
    rows = []
    kinds = ["all", "palindrome", "near1", "near2", "random", "distance_1"]
    for component, mode in [("none", "none")] + [(c, m) for c in components for m in ("zero", "mean")]:
        for i, kind in enumerate(kinds):
            accuracy = 1.0 if component == "none" else 0.5 + 0.05 * i
            rows.append({"component": component, "mode": mode, "kind": kind, "n": 16, "accuracy": accuracy,
                         "mean_logit_diff": 0.3 * (i - 2), "mean_margin": 1.0, "accuracy_change": accuracy - 1.0,
                         "logit_diff_change": -0.1, "margin_change": -0.2})
    return pd.DataFrame(rows)


def weights_frames(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    qk = []
    for i, name in enumerate(HEADS):
        layer, head = divmod(i, N_HEADS)
        scores = rng.normal(size=(WIDTH, WIDTH))
        pattern = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        for q in range(WIDTH):
            for k in range(WIDTH):
                qk.append({"layer": layer, "head": head, "component": name, "query_pos": q, "key_pos": k,
                           "score": scores[q, k], "pattern": pattern[q, k]})
    w_pos = rng.normal(size=(WIDTH, D_MODEL))
    unit = w_pos / np.linalg.norm(w_pos, axis=1, keepdims=True)
    pos, dim = np.meshgrid(np.arange(WIDTH), np.arange(D_MODEL), indexing="ij")
    i, j = np.meshgrid(np.arange(WIDTH), np.arange(WIDTH), indexing="ij")
    return {"pos_qk": pd.DataFrame(qk),
            "pos_embed": pd.DataFrame({"pos": pos.ravel(), "dim": dim.ravel(), "value": w_pos.ravel()}),
            "pos_cosine": pd.DataFrame({"pos_i": i.ravel(), "pos_j": j.ravel(), "cosine": (unit @ unit.T).ravel()})}


def adversarial_frames(n_wrong: int) -> dict[str, pd.DataFrame]:
    rows = []
    for source in ("abba", "abcba"):
        for position in range(len(source)):
            for new in "abcd":
                if new == source[position]:
                    continue
                text = source[:position] + new + source[position + 1:]
                rows.append({"source": source, "text": text, "length": len(source), "position": position,
                             "pair_pos": min(position, len(source) - 1 - position), "old": source[position],
                             "new": new, "label": text == text[::-1]})
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


def summary_json(n_edits: int, n_wrong: int, n_examples: int, attn_only: bool) -> dict:
    evidence = {name: {"layer": i // N_HEADS, "head": i % N_HEADS, "score": 0.9 - 0.2 * i,
                       "mean_ablation_margin_loss": 0.5, "patching_recovery": 0.9 - 0.2 * i, "patching_best_pos": 0,
                       "mean_ablation_distance_1_accuracy_change": -0.3,
                       "zero_ablation_distance_1_accuracy_change": -0.4, "mirror_score": 0.1 + 0.2 * i}
                for i, name in enumerate(HEADS)}
    return {
        "format": "palindrome-lens/attribution/v1",
        "model": {"n_layers": N_LAYERS, "d_model": D_MODEL, "n_heads": N_HEADS, "d_head": 4, "d_mlp": 16,
                  "attn_only": attn_only, "normalization_type": "LN", "lengths": list(LENGTHS)},
        "n_examples": n_examples, "accuracy": 0.9, "dla_max_abs_error": 3e-7,
        "mirror_scores": {name: 0.1 + 0.2 * i for i, name in enumerate(HEADS)},
        "circuit_heads": ["L0H0", "L0H1"], "weak": False, "selection": "top heads by score",
        "evidence": evidence,
        "circuit_accuracy": {"n": n_examples, "n_distance_1": 8, "other_heads": ["L1H0", "L1H1"],
                             "unablated": {"accuracy": 0.9, "distance_1_accuracy": 0.875,
                                           "palindrome_accuracy": 1.0},
                             "circuit_ablated": {"accuracy": 0.55, "distance_1_accuracy": 0.125,
                                                 "palindrome_accuracy": 0.25},
                             "others_ablated": {"accuracy": 0.85, "distance_1_accuracy": 0.75,
                                                "palindrome_accuracy": 0.5}},
        "sentences": ["The decision is carried mainly by L0H0 and L0H1.", "Patching L0H0 recovers 90.0%."],
        "patching": {"n_pairs": 6, "full_resid_pre_recovery_min": 1.0, "full_resid_pre_recovery_max": 1.0},
        "adversarial": {"n_palindromes": 2, "n_edits": n_edits, "n_misclassified": n_wrong, "min_margin": -0.1,
                        "misclassified": []},
        "files": [],
    }


def write_attribution(root: Path, n_wrong: int, attn_only: bool = False) -> None:
    rng = np.random.default_rng(0)
    examples = analysis_rows()
    out = root / "data/attribution"
    out.mkdir(parents=True)
    dla = dla_frame(examples, rng)
    if attn_only:
        dla = dla[~dla["component"].isin(MLPS)]
    adversarial = adversarial_frames(n_wrong)
    tables = {"dla": dla, "distributions": distributions_frame(dla), "attention": attention_frame(rng),
              "mirror": mirror_frame(), "patching": patching_frame(rng, mlp=not attn_only),
              "ablation": ablation_frame(HEADS + ([] if attn_only else MLPS)), **weights_frames(rng), **adversarial}
    for name, frame in tables.items():
        save(frame, out / f"{name}.parquet")
    summary = summary_json(len(adversarial["adversarial"]), n_wrong, len(examples), attn_only)
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


def sources(root: Path) -> Sources:
    return Sources(
        train_metrics=root / "data/train/metrics.json",
        train_loss=root / "data/train/plots/metrics/train/loss.tsv",
        val_accuracy=root / "data/train/plots/metrics/val/accuracy.tsv",
        eval_metrics=root / "data/eval/metrics.json",
        predictions=root / "data/eval/predictions.parquet",
        attribution=root / "data/attribution",
        activations=root / "data/activations",
    )


def write_all(root: Path, n_wrong: int = 5, n_adv_wrong: int = 4, attn_only: bool = False,
              with_patterns: bool = True) -> Sources:
    write_training(root)
    write_evaluation(root, n_wrong)
    write_attribution(root, n_adv_wrong, attn_only)
    write_activations(root, with_patterns)
    return sources(root)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> ReportInputs:
    return load_inputs(write_all(tmp_path_factory.mktemp("synthetic")))


def page(pages: list[Page], filename: str) -> Page:
    return next(p for p in pages if p.filename == filename)


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


# --- the pages ----------------------------------------------------------------------------------------


def test_every_page_is_built_with_captions_and_labelled_figures(synthetic: ReportInputs, tmp_path: Path) -> None:
    pages = report_pages(synthetic, n_examples=3, hist_bins=7)
    assert tuple(p.filename for p in pages) == PAGE_FILES
    written = write_report(tmp_path, synthetic, n_examples=3, hist_bins=7)
    assert sorted(path.name for path in written if path.suffix == ".html") == sorted(PAGE_FILES)
    for p in pages:
        assert p.sections, p.filename
        text = (tmp_path / p.filename).read_text()
        assert 'src="http' not in text and "cdn." not in text, p.filename
        for s in p.sections:  # the reader sees each caption right under its own heading
            first = " ".join(s.caption.split("\n\n")[0].split())
            assert f'<h2>{html.escape(s.heading)}</h2>\n<p class="caption">{html.escape(first)}</p>' in text, s.heading
        # Sections share a caption only when their headings differ by a length, a count or an example string:
        # a caption copied onto another kind of figure would say how to read the wrong thing.
        headings_by_caption: dict[str, set[str]] = {}
        for s in p.sections:
            headings_by_caption.setdefault(s.caption, set()).add(re.sub(r"\d+|'[^']*'|\([^)]*\)", "#", s.heading))
        assert all(len(h) == 1 for h in headings_by_caption.values()), (p.filename, headings_by_caption)
        for s in p.sections:  # a heatmap's caption explains red and blue exactly when its colours diverge
            if isinstance(s.content, Figure) and any(isinstance(t, go.Heatmap) for t in s.content.fig.data):
                colours = [colour for _, colour in s.content.fig.layout.coloraxis.colorscale]
                diverging = any(colours == [c for _, c in get_colorscale(name)] for name in ("RdBu_r", "RdYlGn"))
                explains = re.search(r"\bred\b", s.caption, re.IGNORECASE) is not None
                assert explains == diverging, (p.filename, s.heading)
    assert (tmp_path / "assets/plotly.min.js").is_file() and (tmp_path / "assets/circuitsvis.js").is_file()


def test_same_inputs_give_byte_identical_pages(synthetic: ReportInputs, tmp_path: Path) -> None:
    write_report(tmp_path / "a", synthetic, n_examples=3, hist_bins=7)
    again = load_inputs(write_all(tmp_path / "inputs"))  # rewritten from scratch
    write_report(tmp_path / "b", again, n_examples=3, hist_bins=7)
    for name in PAGE_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def index_html(inputs: ReportInputs) -> str:
    pages = report_pages(inputs, n_examples=3, hist_bins=7)
    return render_page(page(pages, "index.html"), pages)


def test_index_links_every_page_and_shows_the_key_numbers(synthetic: ReportInputs) -> None:
    pages = report_pages(synthetic, n_examples=3, hist_bins=7)
    index = page(pages, "index.html")
    links = section(index, "Pages").content
    assert isinstance(links, Links)
    assert [href for href, _, _ in links.items] == list(PAGE_FILES[1:])
    numbers = section(index, "Key numbers").content.df.set_index("quantity")["value"]
    m = synthetic.evaluation.metrics
    assert numbers["test accuracy"] == f"{100 * m['accuracy']:.2f}% of {m['n']} strings"
    d1 = m["distance"]["1"]
    assert numbers["test accuracy, distance 1 (one pair broken)"] == f"{100 * d1['accuracy']:.2f}% of {d1['n']}"
    by_kind = synthetic.evaluation.predictions.groupby("kind")["correct"].mean()  # 5 wrong: 2 tie at 50%
    worst = min(by_kind.index, key=lambda k: (by_kind[k], k))
    assert (worst, by_kind[worst]) == ("near1", 0.5)
    assert numbers["worst kind on test"] == "near1: 50.00%"
    assert numbers["circuit heads"] == "L0H0 and L0H1"
    assert numbers["distance-1 accuracy, circuit heads mean-ablated"] == "12.5%"
    assert numbers["distance-1 accuracy, all other heads mean-ablated"] == "75.0%"
    assert numbers["palindrome accuracy: unablated / circuit ablated / others ablated"] == "100.0% / 25.0% / 50.0%"


def test_index_shows_the_circuit_in_the_attribute_stages_own_sentences(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    summary = json.loads((src.attribution / "summary.json").read_text())
    before = index_html(load_inputs(src))
    for sentence in summary["sentences"]:
        assert f"<p>{html.escape(sentence)}</p>" in before
    # Other sentences and heads in summary.json: the page follows the file, escaped, and drops the old ones.
    summary["sentences"] = ["L1H1 compares the outer pair <first> & passes it to BOS.", "Nothing else matters."]
    summary["circuit_heads"], summary["weak"] = ["L1H1", "L0H0", "L1H0"], True
    (src.attribution / "summary.json").write_text(json.dumps(summary))
    after = index_html(load_inputs(src))
    shown = "<p>L1H1 compares the outer pair &lt;first&gt; &amp; passes it to BOS.</p>\n<p>Nothing else matters.</p>"
    assert shown in after
    assert "carried mainly by" in before and "carried mainly by" not in after
    assert ">L1H1, L0H0 and L1H0 (weak: no head passes the threshold)</td>" in after  # a key number


def test_training_curves_come_from_the_dvclive_files(synthetic: ReportInputs) -> None:
    p = page(report_pages(synthetic, 3, 7), "training.html")
    loss = figure(p, "Training loss")
    assert list(loss.data[0].x) == list(range(10, 110, 10)) and loss.layout.yaxis.type == "log"
    assert loss.data[0].y[1] == pytest.approx(0.7 * 0.7)
    acc = figure(p, "Validation accuracy")
    assert acc.data[0].y[-1] == 1.0
    assert "It first reached 100% at step 60." in p.intro


def test_evaluation_tables_obey_n_examples_and_order_by_margin(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, n_wrong=5))
    for n in (1, 3, 50):
        p = page(report_pages(inputs, n_examples=n, hist_bins=7), "evaluation.html")
        wrong = section(p, "Misclassified test strings").content.df
        assert len(wrong) == min(n, 5)
        assert (wrong["margin"] < 0).all() and wrong["margin"].is_monotonic_increasing
        close = section(p, "Closest calls").content.df
        assert len(close) == min(n, N_STRINGS - 5) and (close["margin"] > 0).all() and close["margin"].is_monotonic_increasing
    by_kind = figure(p, "Accuracy by kind")
    m = inputs.evaluation.metrics["kind"]
    assert list(by_kind.data[0].x) == ["palindrome", "near1", "near2", "random"]
    assert list(by_kind.data[0].y) == [m[k]["accuracy"] for k in ("palindrome", "near1", "near2", "random")]
    confusion = z_of(figure(p, "Confusion matrix").data[0])
    c = inputs.evaluation.metrics["confusion"]
    assert confusion.tolist() == [[c["true_palindrome"], c["false_not_palindrome"]],
                                  [c["false_palindrome"], c["true_not_palindrome"]]]
    assert confusion.sum() == N_STRINGS


def test_a_perfect_model_says_so_instead_of_an_empty_table(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, n_wrong=0, n_adv_wrong=0))
    pages = report_pages(inputs, n_examples=3, hist_bins=7)
    content = section(page(pages, "evaluation.html"), "Misclassified test strings").content
    assert isinstance(content, Text) and f"all {N_STRINGS} test strings are classified correctly" in content.text
    content = section(page(pages, "adversarial.html"), "Misclassified edits").content
    assert isinstance(content, Text) and "None" in content.text


def test_histograms_use_hist_bins_and_show_each_class_as_shares(synthetic: ReportInputs) -> None:
    for bins in (5, 13):
        pages = report_pages(synthetic, 3, bins)
        for s in (section(page(pages, "attribution.html"), "Distributions by class"),
                  section(page(pages, "evaluation.html"), "Logit difference by kind")):
            assert f"({bins} bins" in s.caption and all(len(trace.x) == bins for trace in s.content.fig.data)
        fig = figure(page(pages, "attribution.html"), "Distributions by class")
        assert len(fig.data) == 2 * len(COMPONENTS)  # palindrome + not_palindrome per component
        for trace in fig.data:
            assert len(trace.x) == bins
            assert sum(trace.y) == pytest.approx(1.0)  # every sample of the class lands in a bin
        names_shown = [t.name for t in fig.data if t.showlegend]
        assert names_shown == ["palindrome", "not_palindrome"]
        titles = [a.text for a in fig.layout.annotations][: len(COMPONENTS)]
        assert titles == COMPONENTS


def test_dla_means_are_per_kind_and_sum_to_the_logit_difference(synthetic: ReportInputs) -> None:
    p = page(report_pages(synthetic, 3, 7), "attribution.html")
    means = section(p, "Mean contribution table").content.df.set_index("component \\ kind")
    dla = synthetic.attribution["dla"]
    expected = dla[(dla["kind"] == "near1") & (dla["component"] == "L1H0")]["value"].mean()
    assert means.loc["L1H0", "near1"] == pytest.approx(expected)
    sums = means.drop(index="logit_diff (sum)").sum()
    assert sums.to_numpy() == pytest.approx(means.loc["logit_diff (sum)"].to_numpy())
    fig = figure(p, "Mean contribution per component")
    assert list(fig.data[0].x) == COMPONENTS


def test_patching_heatmaps_put_each_recovery_in_its_cell(synthetic: ReportInputs) -> None:
    p = page(report_pages(synthetic, 3, 7), "patching.html")
    fig = figure(p, "Residual stream by layer and position, length 5")
    assert len(fig.data) == 5 // 2  # one panel per mismatch pair
    panel = fig.data[1]  # pair 1
    z = z_of(panel)
    assert list(panel.x) == ["BOS", "1", "2", "3", "4", "5", "EOS"]
    assert list(panel.y) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    assert z[1, 2] == KNOWN_RECOVERY
    rows = synthetic.attribution["patching"]
    cell = rows[(rows["length"] == 5) & (rows["activation"] == "resid_pre") & (rows["layer"] == 0)
                & (rows["pos"] == 4) & (rows["mismatch_pos"] == 1)]
    assert z[0, 4] == pytest.approx(float(cell["recovery"].iloc[0]))
    assert fig.layout.annotations[1].text == "pair 1: positions 2↔4 (n=3)"
    heads = figure(p, "Heads by position, length 4")
    assert list(heads.data[0].y) == HEADS and len(heads.data) == 2
    every = figure(p, "Heads, every position at once")
    assert list(every.data[0].x) == ["all pairs", "pair 0", "pair 1"]
    assert figure(p, "MLPs by position, length 4").data[0].y == ("0_mlp_out", "1_mlp_out")


def test_attention_page_places_patterns_and_shows_example_views(synthetic: ReportInputs) -> None:
    p = page(report_pages(synthetic, 3, 7), "attention.html")
    fig = figure(p, "Mean attention, length 4")
    assert [a.text for a in fig.layout.annotations][:4] == [f"{h} (n=8)" for h in HEADS]
    z = z_of(fig.data[2])  # L1H0
    assert z.shape == (6, 6) and z[1, 4] == KNOWN_ATTENTION
    assert np.allclose(z.sum(axis=1), 1.0)
    mirror = figure(p, "Mirror scores")
    assert [t.name for t in mirror.data] == ["all", "palindrome", "near1", "near2", "random"]
    assert list(mirror.data[0].y) == pytest.approx([0.1, 0.3, 0.5, 0.7])
    views = [s for s in p.sections if s.heading.startswith("Example:")]
    assert [s.heading for s in views] == ["Example: 'abcba' (palindrome)", "Example: 'abcbd' (near1)",
                                          "Example: 'abdca' (near2)", "Example: 'cadbb' (random)"]
    view = views[0].content
    assert view.tokens == ["[BOS]", "a", "b", "c", "b", "a", "[EOS]"] and list(view.head_names) == HEADS
    assert view.pattern.shape == (4, 7, 7)
    qk = figure(p, "Positional QK per head")
    assert len(qk.data) == 4 and list(qk.data[0].x) == position_labels(5, 7)
    assert z_of(figure(p, "Positional similarity").data[0]).diagonal() == pytest.approx(np.ones(WIDTH))


def test_example_views_match_the_stored_patterns(tmp_path: Path) -> None:
    write_training(tmp_path)
    write_evaluation(tmp_path, 1)
    write_attribution(tmp_path, 1)
    patterns = write_activations(tmp_path)
    inputs = load_inputs(sources(tmp_path))
    assert len(inputs.examples) == 4
    for example in inputs.examples:
        n = len(example.text) + 2  # BOS, characters, EOS; the PAD columns are left out
        stored = patterns[example.example_id].reshape(N_LAYERS * N_HEADS, WIDTH, WIDTH)[:, :n, :n]
        assert np.array_equal(example.pattern, stored.astype(np.float64))
        assert np.allclose(example.pattern.sum(axis=-1), 1.0, atol=1e-5)


def test_missing_patterns_give_a_note_not_a_crash(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, with_patterns=False))
    assert inputs.examples == []
    p = page(report_pages(inputs, 3, 7), "attention.html")
    assert isinstance(section(p, "Example strings").content, Text)


def test_attention_only_model_has_no_mlp_rows(tmp_path: Path) -> None:
    inputs = load_inputs(write_all(tmp_path, attn_only=True))
    pages = report_pages(inputs, 3, 7)
    assert not [s for s in page(pages, "patching.html").sections if s.heading.startswith("MLPs")]
    acc = figure(page(pages, "ablation.html"), "Accuracy under ablation")
    assert list(acc.data[0].y) == ["none (unablated)", *HEADS]


def test_ablation_page_shows_both_modes_and_the_circuit(synthetic: ReportInputs) -> None:
    p = page(report_pages(synthetic, 3, 7), "ablation.html")
    acc = figure(p, "Accuracy under ablation")
    assert [a.text for a in acc.layout.annotations][:2] == ["zero ablation", "mean ablation"]
    assert list(acc.data[0].x) == ["all", "palindrome", "near1", "near2", "random", "distance_1"]
    z = z_of(acc.data[1])
    assert z[0].tolist() == [1.0] * 6  # unablated row
    assert z[1, 2] == pytest.approx(0.6)  # L0H0 mean-ablated, near1
    bars = figure(p, "Circuit heads versus the rest")
    assert list(bars.data[0].y) == [0.875, 0.125, 0.75] and bars.data[0].name == "distance_1"
    evidence = section(p, "Evidence per head").content.df
    assert evidence["head"].tolist() == HEADS and evidence["in circuit"].tolist() == [True, True, False, False]


def test_adversarial_page_lists_wrong_edits_worst_first(synthetic: ReportInputs) -> None:
    p = page(report_pages(synthetic, n_examples=2, hist_bins=7), "adversarial.html")
    wrong = section(p, "Misclassified edits").content.df
    assert wrong["margin"].tolist() == pytest.approx([-0.4, -0.3])
    close = section(p, "Closest calls").content.df
    assert len(close) == 2 and (close["margin"] > 0).all()
    acc = figure(p, "Accuracy by broken pair")
    assert [t.name for t in acc.data] == ["length 4", "length 5"]
    assert list(acc.data[0].x) == ["0", "1"]  # a centre edit of length 5 stays a palindrome: no pair 2
    by_pos = synthetic.attribution["adversarial_by_position"].set_index(["length", "pair_pos"])["accuracy"]
    assert list(acc.data[1].y) == [by_pos[(5, 0)], by_pos[(5, 1)]]
    assert by_pos[(4, 0)] < 1 and math.isclose(acc.data[0].y[0], by_pos[(4, 0)])


# --- bad inputs ---------------------------------------------------------------------------------------


def test_missing_or_malformed_inputs_name_the_file_and_the_problem(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    (src.attribution / "mirror.parquet").unlink()
    with pytest.raises(DataFileError, match=r"mirror\.parquet: file not found"):
        load_inputs(src)
    save(mirror_frame().drop(columns="mirror_score"), src.attribution / "mirror.parquet")
    with pytest.raises(DataFileError, match=r"mirror\.parquet: column 'mirror_score' is missing"):
        load_inputs(src)
    save(mirror_frame(), src.attribution / "mirror.parquet")
    original = (src.attribution / "summary.json").read_text()
    summary = json.loads(original)
    del summary["circuit_accuracy"]["others_ablated"]
    (src.attribution / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DataFileError, match=r"summary\.json: key 'circuit_accuracy\.others_ablated' is missing"):
        load_inputs(src)
    (src.attribution / "summary.json").write_text(original)
    src.train_loss.write_text("step\tloss\n10\t0.5\n20\tnan\n")
    with pytest.raises(DataFileError, match=r"loss\.tsv: row 3 is not a pair of finite numbers"):
        load_inputs(src)
    src.train_loss.write_text("step\tvalue\n10\t0.5\n")
    with pytest.raises(DataFileError, match=r"loss\.tsv: column 'loss' is missing"):
        load_inputs(src)
    src.train_loss.write_text("step\tloss\n10\t0.5\n")
    src.eval_metrics.write_text("[1, 2]")
    with pytest.raises(DataFileError, match=r"metrics\.json: expected a JSON object"):
        load_inputs(src)
    src.eval_metrics.write_text("{not json")
    with pytest.raises(DataFileError, match=r"metrics\.json: not valid JSON"):
        load_inputs(src)


def test_links_refuse_anything_but_a_local_page(tmp_path: Path) -> None:
    bad = [Page("index.html", "T", "", [Section("Pages", "Links to pages.", Links([("https://x.org/a.html", "x", "")]))])]
    with pytest.raises(ReportError, match="must name a page of this report"):
        build_report(tmp_path, bad)
    assert not any(tmp_path.iterdir())
    good = [Page("index.html", "T", "", [Section("Pages", "Links to pages.", Links([("b.html", "B <b>", "d & e")]))]),
            Page("b.html", "B", "", [Section("Table", "A table.", Table(pd.DataFrame({"a": [1]})))])]
    build_report(tmp_path, good)
    assert '<li><a href="b.html">B &lt;b&gt;</a>: d &amp; e</li>' in (tmp_path / "index.html").read_text()


def test_stage_fails_cleanly_without_its_inputs(repo_copy: Path) -> None:
    proc = run(["python", "-m", "stages.report"], repo_copy, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error in stage report: data/attribution/summary.json: file not found")
    assert not (repo_copy / "reports" / "index.html").exists()
