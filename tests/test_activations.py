"""The activations library: the analysis set, the on-disk store and load_cache, on a real (untrained,
perturbed) TransformerLens model saved and loaded like the pipeline's."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from palindrome_lens.activations import (
    UnknownHookError,
    choose_examples,
    load_cache,
    load_examples,
    load_manifest,
    verify_sources,
    write_activations,
)
from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.parquet import read_table, write_table
from palindrome_lens.data.strings import distance, mismatch_positions
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError, PalindromeLensError
from palindrome_lens.hooks import full_hook_names
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import load_classifier, save_classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import KNOWN_HOOKS, DataParams, ModelParams

ALPHABET, LENGTHS = "abcdefgh", [5, 6]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A saved 2-layer model with perturbed weights (LN weights and biases far from 1/0) and a test split."""
    root = tmp_path_factory.mktemp("activations")
    data = DataParams.check({"alphabet": ALPHABET, "lengths": LENGTHS, "n_train": 400, "n_val": 20, "n_test": 300,
                             "palindrome_fraction": 0.5, "negative_mix": {"near1": 0.6, "near2": 0.2, "random": 0.2, "redraw": 0.0},
                             "redraw_probability": 0.5})
    test_path = root / "test.parquet"
    write_table(generate_splits(data, 0)["test"], test_path)
    tokenizer = Tokenizer(ALPHABET, max(LENGTHS), add_eos=True)
    params = ModelParams(n_layers=2, d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu",
                         normalization="LN", attn_only=False, n_ctx=None)
    config = model_config(params, tokenizer, seed=0, lengths=LENGTHS)
    native = new_native_model(config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in native.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    save_classifier(wrap_native(native, config), tokenizer, config, root / "model")
    clf = load_classifier(root / "model")
    examples = choose_examples(read_table(test_path), n_per_group=6, n_pairs=3, seed=0, alphabet=ALPHABET)
    out = root / "acts"
    write_activations(out, clf, examples, KNOWN_HOOKS, "float32", batch_size=7, model_dir=root / "model",
                      data_files=[test_path])
    return {"root": root, "test": test_path, "clf": clf, "examples": examples, "out": out, "batch": 7}


def _digest(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# --- the analysis set ---------------------------------------------------------------------------


def test_examples_are_stratified_and_deterministic(world) -> None:
    test = read_table(world["test"]).to_pandas()
    df = load_examples(world["out"] / "examples.parquet")
    assert df["example_id"].tolist() == list(range(len(df)))
    strat = df[df["role"].isna()]
    counts = Counter(zip(strat["length"], strat["kind"]))
    for (length, kind), available in Counter(zip(test["length"], test["kind"])).items():
        assert counts[(length, kind)] == min(6, available)
    assert set(strat["text"]) <= set(test["text"])  # drawn from the test split
    merged = strat.merge(test, on="text", suffixes=("", "_test"))
    for col in ("label", "kind", "distance", "length"):
        assert (merged[col] == merged[f"{col}_test"]).all()
    again = choose_examples(read_table(world["test"]), 6, 3, 0, ALPHABET)
    assert again.equals(world["examples"])
    assert not choose_examples(read_table(world["test"]), 6, 3, 1, ALPHABET).equals(world["examples"])


def test_corruption_pairs_differ_at_exactly_one_mirrored_pair(world) -> None:
    df = load_examples(world["out"] / "examples.parquet")
    pairs = df[df["pair_id"].notna()]
    assert pairs["pair_id"].nunique() == 3 * len(LENGTHS)
    for _, rows in pairs.groupby("pair_id"):
        clean = rows[rows["role"] == "clean"]
        corrupted = rows[rows["role"] == "corrupted"]
        assert len(clean) == 1
        text = clean["text"].iat[0]
        n = len(text)
        assert distance(text) == 0 and bool(clean["label"].iat[0]) and clean["mismatch_pos"].isna().all()
        assert sorted(corrupted["mismatch_pos"].astype(int)) == list(range(n // 2))  # every pair position
        for _, row in corrupted.iterrows():
            diff = [i for i in range(n) if row["text"][i] != text[i]]
            pos = int(row["mismatch_pos"])
            assert len(diff) == 1 and diff[0] in (pos, n - 1 - pos)
            assert mismatch_positions(row["text"]) == [pos]
            assert row["distance"] == 1 and not row["label"] and row["kind"] == "near1" and row["length"] == n
            assert set(row["text"]) <= set(ALPHABET)


def test_one_letter_alphabet_cannot_corrupt(world) -> None:
    with pytest.raises(PalindromeLensError, match="one letter"):
        choose_examples(read_table(world["test"]), 1, 1, 0, "a")


# --- exactness and padding ----------------------------------------------------------------------


def test_float32_cache_equals_run_with_cache_exactly(world) -> None:
    clf, batch = world["clf"], world["batch"]
    texts = world["examples"].column("text").to_pylist()
    manifest = load_manifest(world["out"])
    assert manifest.n_examples == len(texts)
    names = full_hook_names(KNOWN_HOOKS, 2)
    assert sorted(manifest.hooks) == sorted(names)
    for start in range(0, len(texts), batch):
        stop = min(start + batch, len(texts))
        cache = load_cache(world["out"], clf, examples=range(start, stop))
        _, live = clf.model.run_with_cache(clf.encode(texts[start:stop]))
        for name in names:
            assert torch.equal(cache[name], live[name]), name


def test_padded_examples_equal_the_string_alone(world) -> None:
    clf = world["clf"]
    df = load_examples(world["out"] / "examples.parquet")
    short = df.index[df["length"] == min(LENGTHS)][:5].tolist()
    cache = load_cache(world["out"], clf, examples=short)
    for row, example_id in enumerate(short):
        text = df.loc[example_id, "text"]
        real = len(text) + 2  # BOS, characters, EOS
        tokens = clf.tokenizer.encode([text])
        assert (tokens[0, real:] == clf.tokenizer.pad_id).all() and tokens.shape[1] > real  # really padded
        _, alone = clf.model.run_with_cache(tokens[:, :real])
        for name in cache:
            stored = cache[name][row]
            if name.endswith("hook_pattern"):
                assert torch.equal(stored[:, :, real:], torch.zeros_like(stored[:, :, real:])), name
                stored = stored[:, :real, :real]
            else:
                stored = stored[:real]
            torch.testing.assert_close(stored, alone[name][0], rtol=1e-5, atol=1e-6, msg=name)


# --- TransformerLens analysis on the loaded cache -------------------------------------------------


def test_analysis_methods_work_on_the_loaded_cache(world) -> None:
    clf = world["clf"]
    model = clf.model
    cache = load_cache(world["out"], model)
    n = cache["hook_embed"].shape[0]
    final = cache["blocks.1.hook_resid_post"]
    parts = cache.decompose_resid()  # embed, pos_embed, attn_out and mlp_out of each layer
    assert parts.shape[0] == 6
    torch.testing.assert_close(parts.sum(0), final, rtol=1e-5, atol=1e-5)
    acc = cache.accumulated_resid()
    assert torch.equal(acc[-1], final)
    heads = cache.stack_head_results(layer=-1)  # (layers * heads, n, pos, d_model)
    assert heads.shape[0] == 4
    torch.testing.assert_close(heads[2:].sum(0) + model.blocks[1].attn.b_O, cache["blocks.1.hook_attn_out"],
                               rtol=1e-5, atol=1e-5)
    # LN folded by hand (the notes: apply_ln_to_stack only centres and scales): logits from the cache.
    normed = cache.apply_ln_to_stack(final[None], layer=None)[0]
    logits = (normed * model.ln_final.weight + model.ln_final.bias) @ model.W_U + model.b_U
    torch.testing.assert_close(logits[:, 0], clf.logits(world["examples"].column("text").to_pylist()),
                               rtol=1e-5, atol=1e-5)
    assert logits.shape == (n, clf.tokenizer.width, 2)


# --- selection, dtype, validation ------------------------------------------------------------------


def test_hook_and_example_selection(world) -> None:
    clf, out = world["clf"], world["out"]
    full = load_cache(out, clf)
    part = load_cache(out, clf, hooks=["blocks.0.attn.hook_pattern", "hook_mlp_out"], examples=[3, 1, 4])
    assert sorted(part.keys()) == ["blocks.0.attn.hook_pattern", "blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    assert torch.equal(part["blocks.1.hook_mlp_out"], full["blocks.1.hook_mlp_out"][[3, 1, 4]])
    mask = np.zeros(full["hook_embed"].shape[0], dtype=bool)
    mask[[2, 5]] = True
    assert torch.equal(load_cache(out, clf, hooks="hook_embed", examples=mask)["hook_embed"], full["hook_embed"][[2, 5]])
    assert torch.equal(load_cache(out, clf, hooks="hook_embed", examples=slice(2, 9, 3))["hook_embed"],
                       full["hook_embed"][2:9:3])
    # Aliases are one tensor, as in a live cache.
    assert full["blocks.1.hook_resid_pre"] is full["blocks.0.hook_resid_post"]
    with pytest.raises(UnknownHookError, match=r"'blocks\.0\.hook_nope' was not extracted; stored hooks are .*hook_embed"):
        load_cache(out, clf, hooks=["blocks.0.hook_nope"])
    with pytest.raises(UnknownHookError, match="blocks.5.hook_resid_pre"):
        load_cache(out, clf, hooks=["blocks.5.hook_resid_pre"])
    with pytest.raises(PalindromeLensError, match="example_id 9999 is out of range"):
        load_cache(out, clf, examples=[0, 9999])


def test_unknown_generic_hook_is_an_error_listing_valid_ones(world, tmp_path) -> None:
    with pytest.raises(UnknownHookError, match="valid hooks are hook_embed, hook_pos_embed"):
        write_activations(tmp_path / "x", world["clf"], world["examples"], ["hook_embed", "hook_nope"])
    assert not (tmp_path / "x").exists()


def test_loaded_tensors_are_memory_mapped_not_copied(world) -> None:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    cache = load_cache(world["out"], world["clf"], hooks=["hook_embed"], examples=slice(10, 20))
    ptr = cache["hook_embed"].data_ptr()
    for line in maps.read_text().splitlines():
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= ptr < hi:
            assert fields[-1].endswith("hook_embed.npy"), line
            return
    pytest.fail("tensor memory is not in any mapping")


def test_float16_store(world, tmp_path) -> None:
    clf, examples = world["clf"], world["examples"]
    out = tmp_path / "half"
    write_activations(out, clf, examples, KNOWN_HOOKS, "float16", batch_size=world["batch"])
    assert load_manifest(out).dtype == "float16"
    assert np.load(out / "hook_embed.npy", mmap_mode="r").dtype == np.float16
    exact = load_cache(world["out"], clf)
    upcast = load_cache(out, clf)  # default dtype=float32
    kept = load_cache(out, clf, dtype=None)
    for name in exact:
        assert upcast[name].dtype == torch.float32 and kept[name].dtype == torch.float16
        torch.testing.assert_close(upcast[name], exact[name], rtol=2e-3, atol=2e-3, msg=name)
        assert torch.equal(upcast[name], exact[name].half().float()), name


def test_rewrite_is_byte_identical(world, tmp_path) -> None:
    out = tmp_path / "again"
    write_activations(out, world["clf"], world["examples"], KNOWN_HOOKS, "float32", batch_size=world["batch"],
                      model_dir=world["root"] / "model", data_files=[world["test"]])
    a, b = _digest(out), _digest(world["out"])
    manifest_a = json.loads((out / "manifest.json").read_text())
    manifest_b = json.loads((world["out"] / "manifest.json").read_text())
    assert manifest_a == manifest_b
    assert a == b


def test_manifest_records_and_verifies_sources(world, tmp_path) -> None:
    manifest = load_manifest(world["out"]).raw
    assert set(manifest["model"]["sha256"]) == {"model.safetensors", "config.json", "tokenizer.json"}
    assert list(manifest["data"]["sha256"]) == [str(world["test"])]
    verify_sources(world["out"], world["root"] / "model", [world["test"]])
    other = tmp_path / "test.parquet"
    other.write_bytes(world["test"].read_bytes() + b"x")
    with pytest.raises(DataFileError, match="differs from the data"):
        verify_sources(world["out"], data_files=[other])


def _broken_copy(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in src.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


@pytest.mark.parametrize("damage", ["missing", "truncated", "shape", "dtype", "no_manifest", "examples_missing"])
def test_manifest_that_disagrees_with_files_is_a_clear_error(world, tmp_path, damage) -> None:
    out = _broken_copy(world["out"], tmp_path / "broken")
    target = out / "blocks.0.attn.hook_z.npy"
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    expect = "blocks.0.attn.hook_z.npy"
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-10])
    elif damage == "shape":
        manifest["hooks"]["blocks.0.attn.hook_z"]["shape"][-1] += 1
        manifest_path.write_text(json.dumps(manifest))
        expect = "manifest says"
    elif damage == "dtype":
        np.save(target, np.load(target).astype(np.float64))
    elif damage == "no_manifest":
        manifest_path.unlink()
        expect = "manifest.json"
    elif damage == "examples_missing":
        (out / "examples.parquet").unlink()
        expect = "examples.parquet"
    with pytest.raises(DataFileError, match=expect.replace(".", r"\.")):
        load_cache(out, world["clf"])


def test_wrong_model_is_a_clear_error(world) -> None:
    tokenizer = world["clf"].tokenizer
    params = ModelParams(n_layers=1, d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu",
                         normalization="LN", attn_only=False, n_ctx=None)
    config = model_config(params, tokenizer, seed=0, lengths=LENGTHS)
    other = wrap_native(new_native_model(config), config)
    with pytest.raises(DataFileError, match="n_layers=2"):
        load_cache(world["out"], other)


def test_hooks_missing_from_the_model_are_skipped(world, tmp_path) -> None:
    tokenizer = world["clf"].tokenizer
    params = ModelParams(n_layers=1, d_model=16, n_heads=2, d_head=None, d_mlp=32, act_fn="relu",
                         normalization="LN", attn_only=True, n_ctx=None)
    config = model_config(params, tokenizer, seed=0, lengths=LENGTHS)
    save_classifier(wrap_native(new_native_model(config), config), tokenizer, config, tmp_path / "model")
    clf = load_classifier(tmp_path / "model")
    manifest = write_activations(tmp_path / "acts", clf, world["examples"], KNOWN_HOOKS, batch_size=32)
    assert "blocks.0.mlp.hook_post" in manifest["skipped_hooks"]
    assert "blocks.0.hook_attn_out" in manifest["hooks"]
    cache = load_cache(tmp_path / "acts", clf)
    assert cache.decompose_resid().shape[0] == 3  # embed, pos_embed, attn_out


# --- a real SIGKILL while writing ------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys, time
    from palindrome_lens.activations import choose_examples, write_activations
    from palindrome_lens.activations import store
    from palindrome_lens.data.parquet import read_table
    from palindrome_lens.model.classifier import load_classifier
    from palindrome_lens.params import KNOWN_HOOKS

    model, test, out = sys.argv[1], sys.argv[2], sys.argv[3]
    append = store.NpyWriter.append

    def traced(self, block):
        append(self, block)
        print("appended", self.path.name, self.rows, flush=True)
        time.sleep(0.01)  # widen the write window so the kill lands mid-write

    store.NpyWriter.append = traced
    clf = load_classifier(model)
    examples = choose_examples(read_table(test), 40, 20, 1, clf.tokenizer.alphabet)
    write_activations(out, clf, examples, KNOWN_HOOKS, "float32", batch_size=8)
    print("done", flush=True)
""")


def _kill_mid_write(world, script: Path, out: Path) -> None:
    env = {**os.environ, "PALINDROME_LENS_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(world["root"] / "model"), str(world["test"]), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    seen = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += line.startswith("appended")
            if seen >= 60:  # several batches of every hook are on disk, in the temporary directory
                assert list(out.parent.glob(f".{out.name}.*.tmpdir")), "no temporary directory while writing"
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-write: {proc.stderr.read() if proc.stderr else ''}"


@pytest.mark.parametrize("previous", [True, False])
def test_sigkill_mid_write_leaves_previous_output_or_none(world, tmp_path, previous) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    out = tmp_path / "acts"
    if previous:
        _broken_copy(world["out"], out)  # a complete earlier output
    before = _digest(out)
    _kill_mid_write(world, script, out)
    assert _digest(out) == before  # the previous complete output, or none
    if previous:
        load_cache(out, world["clf"])  # still whole and readable
    # Rerun (in this process: same examples as the script) and it completes.
    examples = choose_examples(read_table(world["test"]), 40, 20, 1, ALPHABET)
    write_activations(out, world["clf"], examples, KNOWN_HOOKS, "float32", batch_size=8)
    assert _digest(out) not in (before, {})
    assert not list(out.parent.glob(f".{out.name}.*")), "temporary directories were left behind"
    manifest = load_manifest(out)
    cache = load_cache(out, world["clf"], hooks="hook_embed")
    assert cache["hook_embed"].shape[0] == manifest.n_examples
