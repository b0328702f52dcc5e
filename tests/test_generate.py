import dataclasses
import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from palindrome_lens.data.generate import GenerationError, generate_splits, split_counts
from palindrome_lens.data.strings import distance, mismatch_positions
from palindrome_lens.params import load_params_file
from tests.conftest import ROOT

BASE = dataclasses.replace(load_params_file(ROOT / "params.yaml").data, n_train=20000, n_val=2000, n_test=4000)


@pytest.fixture(scope="module")
def splits():
    return {k: v.to_pandas() for k, v in generate_splits(BASE, seed=3).items()}


def test_sizes(splits) -> None:
    assert [len(splits[s]) for s in ("train", "val", "test")] == [20000, 2000, 4000]


def test_labels_distances_and_positions_come_from_the_text(splits) -> None:
    for df in splits.values():
        sample = df.sample(2000, random_state=0) if len(df) > 2000 else df
        for row in sample.itertuples():
            assert row.distance == distance(row.text)
            assert row.label == (row.distance == 0)
            assert row.length == len(row.text)
            if row.distance == 1:
                assert row.mismatch_pos == mismatch_positions(row.text)[0]
            else:
                assert np.isnan(row.mismatch_pos)
            assert row.kind in {"palindrome", "near1", "near2", "random"}
            if row.kind == "near1":
                assert row.distance == 1
            if row.kind == "near2":
                assert row.distance == 2


def test_mix_proportions(splits) -> None:
    test = splits["test"]
    share = test.kind.value_counts(normalize=True)
    assert share["palindrome"] == pytest.approx(0.5, abs=0.01)
    assert share["near1"] == pytest.approx(0.3, abs=0.01)
    assert share["near2"] == pytest.approx(0.1, abs=0.01)
    assert share["random"] == pytest.approx(0.1, abs=0.01)


def test_mismatch_positions_cover_every_pair_evenly(splits) -> None:
    near1 = splits["train"].query("kind == 'near1'")
    counts = near1.mismatch_pos.value_counts()
    assert sorted(counts.index.astype(int)) == list(range(5))
    assert counts.min() > 0.8 * counts.max()


def test_held_out_splits_are_distinct_and_unseen(splits) -> None:
    train = set(splits["train"].text)
    for split in ("val", "test"):
        assert splits[split].text.is_unique
        assert not train & set(splits[split].text)
    assert not set(splits["val"].text) & set(splits["test"].text)


def test_several_lengths_odd_and_even() -> None:
    params = dataclasses.replace(BASE, alphabet="abcdefgh", lengths=(2, 3, 7, 8), n_train=4000, n_val=8, n_test=16)
    df = generate_splits(params, seed=1)["train"].to_pandas()
    assert sorted(df.length.unique()) == [2, 3, 7, 8]
    assert set(df.query("length <= 3").kind) <= {"palindrome", "near1", "random"}
    assert (df.text.str.len() == df.length).all()


def test_counts_are_exact() -> None:
    cells = split_counts(1001, (4, 5), 0.5, {"near1": 0.6, "near2": 0.2, "random": 0.2})
    assert sum(c.count for c in cells) == 1001


def _bytes(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def test_same_params_same_bytes_and_seed_matters() -> None:
    small = dataclasses.replace(BASE, n_train=3000, n_val=300, n_test=300)
    a, b = generate_splits(small, seed=7), generate_splits(small, seed=7)
    assert all(_bytes(a[s]) == _bytes(b[s]) for s in a)
    c = generate_splits(small, seed=8)
    assert _bytes(a["train"]) != _bytes(c["train"])


def test_impossible_draw_is_a_clear_error() -> None:
    params = dataclasses.replace(BASE, alphabet="ab", lengths=(2,), n_train=10, n_val=1, n_test=1)
    with pytest.raises(GenerationError, match="distinct"):
        generate_splits(dataclasses.replace(params, n_test=3), seed=0)


def test_redraw_changes_only_the_second_half_at_the_given_rate() -> None:
    """ARENA's negatives: a palindrome whose second-half positions are each redrawn with probability p, so a
    redraw may give the letter back (then it still matches); labels and kinds come from the text."""
    mix = {"near1": 0.0, "near2": 0.0, "random": 0.0, "redraw": 1.0}
    rates = {}
    for p in (0.25, 0.5):
        data = dataclasses.replace(BASE, alphabet="abc", lengths=(8,), negative_mix=mix, redraw_probability=p,
                                   n_val=20, n_test=40)
        train = generate_splits(data, seed=1)["train"].to_pandas()
        redraws = train[train["kind"] == "redraw"]
        assert set(train["kind"]) <= {"palindrome", "redraw"} and len(redraws) > 5000
        text = np.array([list(t) for t in redraws["text"]])
        first, mirrored = text[:, :4], text[:, 4:][:, ::-1]
        assert (redraws["label"] == (first == mirrored).all(axis=1)).all()
        assert not redraws["label"].any()  # a redraw that came back a palindrome is kind "palindrome"
        rates[p] = (first != mirrored).mean()
    # a redrawn letter differs with probability 2/3 (three letters); among strings kept as redraws (at least
    # one pair broken) the share of broken pairs is a little above p * 2/3
    assert rates[0.25] == pytest.approx(0.25 * 2 / 3 / (1 - (1 - 0.25 * 2 / 3) ** 4), abs=0.01)
    assert rates[0.5] == pytest.approx(0.5 * 2 / 3 / (1 - (1 - 0.5 * 2 / 3) ** 4), abs=0.01)


def test_an_unused_kind_changes_nothing() -> None:
    """The default mix gives redraw no share: the splits are what they were before the kind existed (the
    random stream draws nothing for it)."""
    assert BASE.negative_mix["redraw"] == 0.0
    with_p = dataclasses.replace(BASE, redraw_probability=0.9)
    a, b = generate_splits(BASE, seed=3), generate_splits(with_p, seed=3)
    assert all(a[s].equals(b[s]) for s in a)
