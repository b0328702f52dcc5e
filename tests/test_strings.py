from hypothesis import given
from hypothesis import strategies as st

from palindrome_lens.data.strings import distance, is_palindrome, mismatch_positions, pair_mismatches

texts = st.text(alphabet="abc", max_size=12)


@given(texts)
def test_palindrome_matches_reversal(text: str) -> None:
    assert is_palindrome(text) == (text == text[::-1])


@given(texts)
def test_distance_counts_differing_mirrored_pairs(text: str) -> None:
    brute = sum(1 for i in range(len(text)) for j in range(len(text)) if i < j and i + j == len(text) - 1
                and text[i] != text[j])
    assert distance(text) == brute
    assert mismatch_positions(text) == [i for i in range(len(text) // 2) if text[i] != text[-1 - i]]


@given(st.lists(st.text(alphabet="abcd", min_size=7, max_size=7), min_size=1, max_size=20))
def test_vectorised_mismatches_agree(rows: list[str]) -> None:
    import numpy as np

    ids = np.array([[ord(c) for c in row] for row in rows])
    assert pair_mismatches(ids).sum(axis=1).tolist() == [distance(r) for r in rows]
