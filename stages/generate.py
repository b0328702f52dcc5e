"""DVC stage `generate`: labelled train/val/test strings as Parquet under data/raw/."""

from pathlib import Path

from palindrome_lens.atomic import atomic_dir
from palindrome_lens.data.generate import generate_splits
from palindrome_lens.data.parquet import write_table
from palindrome_lens.params import StageParams
from palindrome_lens.stage import run_stage

OUT = Path("data/raw")


def main(p: StageParams) -> None:
    splits = generate_splits(p.data.whole(), p.seed)
    with atomic_dir(OUT) as tmp:
        for name, table in splits.items():
            write_table(table, tmp / f"{name}.parquet")
            print(f"generate: {OUT / name}.parquet: {table.num_rows} rows")


if __name__ == "__main__":
    run_stage("generate", main)
