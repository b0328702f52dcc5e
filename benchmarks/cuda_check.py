"""Training and the attribute analysis on a CUDA device beside the CPU, from data/tokens and params.yaml.

Trains the params' model from the same seed on each device (TL-native module, as the train stage does, without
dvclive), then runs the whole attribute analysis (the hypothesis search included) on each device's model, and
prints per device: training throughput and validation accuracy, the analysis seconds per part, the DLA check,
the circuit and the discovered hypothesis. Floating-point results differ across devices in the last bits, so
the check is that both train to the same accuracy and the analysis reaches the same conclusions.

    python -m stages.generate && python -m stages.tokenize   # data/tokens (no DVC needed)
    python benchmarks/cuda_check.py [--devices cuda cpu] [--n-examples 500000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("PALINDROME_LENS_QUIET", "1")

from palindrome_lens.activations import choose_examples, load_cache, load_examples, write_activations  # noqa: E402
from palindrome_lens.attribution import analyse, needed_hooks  # noqa: E402
from palindrome_lens.data.generate import SCHEMA  # noqa: E402
from palindrome_lens.data.parquet import read_table  # noqa: E402
from palindrome_lens.data.tokenizer import Tokenizer  # noqa: E402
from palindrome_lens.model.bridge import new_native_model, wrap_native  # noqa: E402
from palindrome_lens.model.classifier import Classifier  # noqa: E402
from palindrome_lens.model.config import model_config  # noqa: E402
from palindrome_lens.params import KNOWN_HOOKS, load_params_file  # noqa: E402
from palindrome_lens.training.batches import load_token_set  # noqa: E402
from palindrome_lens.training.train import train_native  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    parser.add_argument("--n-examples", type=int, default=None, help="training budget (default: params.yaml)")
    args = parser.parse_args()
    params = load_params_file(ROOT / "params.yaml")
    tokens_dir = ROOT / "data" / "tokens"
    tokenizer = Tokenizer.from_json(tokens_dir / "tokenizer.json")
    train_params = params.train if args.n_examples is None else dataclasses.replace(params.train,
                                                                                      n_examples=args.n_examples)
    test = read_table(ROOT / "data" / "raw" / "test.parquet", {f.name: f.type for f in SCHEMA})
    print(f"torch {torch.__version__}, cuda available {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    for name in args.devices:
        device = torch.device(name)
        train = load_token_set(tokens_dir / "train.parquet", tokenizer, device, params.model.readout)
        val = load_token_set(tokens_dir / "val.parquet", tokenizer, device, params.model.readout)
        config = model_config(params.model, tokenizer, params.seed, tokenizer.lengths(train.tokens).unique().tolist())
        native = new_native_model(config).to(device)
        summary = train_native(native, train, val, train_params, params.seed)
        print(f"[{name}] train: {summary.n_examples} examples at {summary.examples_per_s:.0f}/s, "
              f"val accuracy {summary.val.accuracy:.4f}, loss {summary.val.loss:.5f}")
        clf = Classifier(wrap_native(native, config).eval(), tokenizer, config)
        with tempfile.TemporaryDirectory() as tmp:
            acts = Path(tmp) / "acts"
            examples = choose_examples(test, params.extract.n_per_group, params.extract.n_pairs, params.seed,
                                       tokenizer.alphabet)
            write_activations(acts, clf, examples, KNOWN_HOOKS, "float32", params.extract.batch_size)
            started = time.perf_counter()
            result = analyse(clf, load_cache(acts, clf, hooks=needed_hooks(clf)), load_examples(acts / "examples.parquet"),
                             test.to_pandas(), params.attribute, params.seed)
        s = result.summary
        print(f"[{name}] attribute: {time.perf_counter() - started:.1f} s ("
              + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()) + ")")
        print(f"[{name}] DLA max error {s['dla_max_abs_error']:.2e}; circuit {', '.join(s['circuit_nodes'])}; "
              f"faithfulness {s['faithfulness']:.3f}")
        for boundary in s["discovered"]:
            print(f"[{name}] discovered after layer {boundary['after_layer']}: {boundary['keep']} "
                  f"({boundary['verdict']}, loss recovered {boundary['recovered']:.3f}, "
                  f"from a constant {boundary['recovered_constant']:.3f})")


if __name__ == "__main__":
    main()
