"""DVC stage `tokenize`: the vocabulary (tokenizer.json) and token ids per split under data/tokens/."""

from pathlib import Path

from palindrome_lens.atomic import atomic_dir
from palindrome_lens.data.generate import SCHEMA, SPLITS
from palindrome_lens.data.parquet import read_table, write_table
from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.data.tokens import tokenize_table
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage

RAW, OUT = Path("data/raw"), Path("data/tokens")


def main(p: StageParams) -> None:
    required = {"text": SCHEMA.field("text").type, "label": SCHEMA.field("label").type, "length": SCHEMA.field("length").type}
    raw = {split: read_table(RAW / f"{split}.parquet", required) for split in SPLITS}
    max_length = max(max(t.column("length").to_pylist(), default=0) for t in raw.values())
    tokenizer = Tokenizer(alphabet=p.data.alphabet, max_length=max_length, add_eos=p.tokenize.add_eos)
    with atomic_dir(OUT) as tmp:
        tokenizer.to_json(tmp / "tokenizer.json")
        for split, table in raw.items():
            write_table(tokenize_table(table, tokenizer), tmp / f"{split}.parquet")
            print(f"tokenize: {OUT / split}.parquet: {table.num_rows} rows, width {tokenizer.width}")


if __name__ == "__main__":
    run_stage("tokenize", main)
