"""Bad files: each gets our own DataFileError naming the file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from safetensors.torch import save_file

from palindrome_lens.data.parquet import read_table, write_table
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError
from palindrome_lens.model.bridge import new_native_model, wrap_native
from palindrome_lens.model.classifier import load_classifier, save_classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import load_params_file
from tests.conftest import ROOT, make_repo_copy, run

REQUIRED = {"text": pa.string(), "label": pa.bool_()}


@pytest.fixture
def good_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "split.parquet"
    write_table(pa.table({"text": ["abba", "abc"], "label": [True, False]}), path)
    return path


def test_truncated_parquet(good_parquet: Path) -> None:
    good_parquet.write_bytes(good_parquet.read_bytes()[: good_parquet.stat().st_size // 2])
    with pytest.raises(DataFileError, match=rf"{good_parquet}: not a readable Parquet file"):
        read_table(good_parquet, REQUIRED)


def test_garbage_parquet(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_text("hello")
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        read_table(path, REQUIRED)


def test_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    write_table(pa.table({"text": ["abba"]}), path)
    with pytest.raises(DataFileError, match=r"column 'label' is missing"):
        read_table(path, REQUIRED)


def test_wrongly_typed_column(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    write_table(pa.table({"text": [1, 2], "label": [True, False]}), path)
    with pytest.raises(DataFileError, match=r"column 'text' has type int64, expected string"):
        read_table(path, REQUIRED)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="file not found"):
        read_table(tmp_path / "nope.parquet", REQUIRED)


def test_stage_reports_a_corrupt_input_by_name(tmp_path: Path) -> None:
    repo = make_repo_copy(tmp_path / "repo")
    run(["python", "-m", "stages.generate"], repo)
    (repo / "data" / "raw" / "val.parquet").write_bytes(b"PAR1 not really")
    proc = run(["python", "-m", "stages.tokenize"], repo, check=False)
    assert proc.returncode == 2
    assert "data/raw/val.parquet" in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / "data" / "tokens").exists()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    tok = Tokenizer("abcd", max_length=6)
    config = model_config(load_params_file(ROOT / "tests" / "tiny_params.yaml").model, tok, 0, [5, 6])
    directory = tmp_path / "model"
    save_classifier(wrap_native(new_native_model(config), config), tok, config, directory)
    return directory


def test_model_dir_loads(model_dir: Path) -> None:
    assert load_classifier(model_dir).predict(["abcba"]).shape == (1,)


def test_missing_config(model_dir: Path) -> None:
    (model_dir / "config.json").unlink()
    with pytest.raises(DataFileError, match=r"config.json: model config not found"):
        load_classifier(model_dir)


@pytest.mark.parametrize(("change", "message"), [
    ({"d_model": "32"}, r"d_model is '32', expected int"),
    ({"n_layerz": 2}, r"unknown key 'n_layerz'"),
    ({"format": "other"}, r"not a palindrome-lens model config"),
    ({"d_vocab_out": 3}, r"d_vocab_out is 3"),
])
def test_mismatched_config(model_dir: Path, change: dict, message: str) -> None:
    config = json.loads((model_dir / "config.json").read_text()) | change
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataFileError, match=message):
        load_classifier(model_dir)


def test_config_that_does_not_fit_the_weights(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text()) | {"d_mlp": 64}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataFileError, match=r"model.safetensors: weights do not fit the model config"):
        load_classifier(model_dir)


def test_safetensors_with_wrong_shapes(model_dir: Path) -> None:
    from safetensors.torch import load_file

    weights = load_file(str(model_dir / "model.safetensors"))
    weights["embed.weight"] = torch.zeros(3, 3)
    save_file(weights, str(model_dir / "model.safetensors"))
    with pytest.raises(DataFileError, match=r"model.safetensors: weights do not fit"):
        load_classifier(model_dir)


def test_corrupt_safetensors(model_dir: Path) -> None:
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(DataFileError, match=r"model.safetensors: not a readable safetensors file"):
        load_classifier(model_dir)


def test_tokenizer_that_disagrees_with_the_model(model_dir: Path) -> None:
    Tokenizer("abcdefg", max_length=6).to_json(model_dir / "tokenizer.json")
    with pytest.raises(DataFileError, match=r"tokenizer.json: vocabulary has 10 tokens but .*d_vocab=7"):
        load_classifier(model_dir)
