"""DVC stage `evaluate`: score data/model on the test split; predictions, and metrics and plots logged with
dvclive, in data/eval/."""

import sys
from pathlib import Path

from palindrome_lens.data.parquet import write_table
from palindrome_lens.model.bridge import resolve_device
from palindrome_lens.model.classifier import load_classifier
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage
from palindrome_lens.training.evaluate import aligned_tokens, class_logits, read_raw, score_table
from palindrome_lens.training.metrics import evaluation_metrics
from palindrome_lens.training.tracking import log_evaluation

MODEL, RAW, TOKENS, OUT = Path("data/model"), Path("data/raw/test.parquet"), Path("data/tokens/test.parquet"), Path("data/eval")


def main(p: StageParams) -> None:
    classifier = load_classifier(MODEL, device=resolve_device(p.device))  # CUDA when present
    raw = read_raw(RAW)
    tokens = aligned_tokens(raw, RAW, TOKENS)
    predictions = score_table(raw, class_logits(classifier, tokens, p.evaluate.batch_size))
    metrics = evaluation_metrics(predictions)
    write_table(predictions, OUT / "predictions.parquet")
    log_evaluation(OUT, predictions, metrics)
    if metrics["absent_kinds"]:
        print(f"evaluate: warning: the test split has no {', '.join(metrics['absent_kinds'])} rows", file=sys.stderr)
    per_kind = ", ".join(f"{kind} {cell['accuracy']:.4f}" for kind, cell in metrics.get("kind", {}).items())
    print(f"evaluate: {metrics['n']} test examples, accuracy {metrics.get('accuracy', float('nan')):.4f} ({per_kind})")


if __name__ == "__main__":
    run_stage("evaluate", main)
