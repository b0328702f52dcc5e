"""DVC stage `train`: train the classifier on data/tokens, log with dvclive, save data/model."""

import time
from pathlib import Path

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.model.bridge import new_native_model, resolve_device, wrap_native
from palindrome_lens.model.classifier import save_classifier
from palindrome_lens.model.config import model_config
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage
from palindrome_lens.training.batches import load_token_set
from palindrome_lens.training.tracking import LiveLogger
from palindrome_lens.training.train import train_native

TOKENS, MODEL, LIVE = Path("data/tokens"), Path("data/model"), Path("data/train")


def main(p: StageParams) -> None:
    started = time.perf_counter()
    device = resolve_device(p.device)
    tokenizer = Tokenizer.from_json(TOKENS / "tokenizer.json")
    model = p.model.whole()
    train = load_token_set(TOKENS / "train.parquet", tokenizer, device, model.readout)
    val = load_token_set(TOKENS / "val.parquet", tokenizer, device, model.readout)
    lengths = tokenizer.lengths(train.tokens).unique().tolist()
    config = model_config(model, tokenizer, p.seed, lengths)
    native = new_native_model(config).to(device)
    logger = LiveLogger(LIVE)
    summary = train_native(native, train, val, p.train.whole(), p.seed, logger)
    logger.finish(summary)
    save_classifier(wrap_native(native, config), tokenizer, config, MODEL)
    print(
        f"train: {summary.steps} steps, {summary.n_examples} examples at {summary.examples_per_s:.0f}/s "
        f"({summary.train_seconds:.1f} s optimising, {summary.eval_seconds:.1f} s validating, "
        f"{time.perf_counter() - started:.1f} s in all); "
        f"val accuracy {summary.val.accuracy:.4f}, loss {summary.val.loss:.4f}; saved {MODEL}"
    )


if __name__ == "__main__":
    run_stage("train", main)
