"""DVC stage `extract`: the analysis set and its activations for every requested hook under data/activations/."""

from pathlib import Path

from palindrome_lens.activations import choose_examples, write_activations
from palindrome_lens.data.generate import SCHEMA
from palindrome_lens.data.parquet import read_table
from palindrome_lens.model.bridge import resolve_device
from palindrome_lens.model.classifier import load_classifier
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage

MODEL, TEST, OUT = Path("data/model"), Path("data/raw/test.parquet"), Path("data/activations")


def main(p: StageParams) -> None:
    params = p.extract.whole()
    clf = load_classifier(MODEL, device=resolve_device(p.device))
    test = read_table(TEST, {f.name: f.type for f in SCHEMA})
    examples = choose_examples(test, params.n_per_group, params.n_pairs, p.seed, clf.tokenizer.alphabet)
    manifest = write_activations(OUT, clf, examples, params.hooks, params.dtype, params.batch_size,
                                 model_dir=MODEL, data_files=[TEST], params=p.as_dict(exclude=("device",)))
    files = {entry["file"] for entry in manifest["hooks"].values()}
    print(f"extract: {OUT}: {manifest['n_examples']} examples, {len(manifest['hooks'])} hooks in {len(files)} "
          f"{params.dtype} files on {clf.device}")
    for name, reason in manifest["skipped_hooks"].items():
        print(f"extract: skipped {name}: {reason}")


if __name__ == "__main__":
    run_stage("extract", main)
