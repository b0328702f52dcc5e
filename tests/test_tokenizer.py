import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from palindrome_lens.data.tokenizer import Tokenizer
from palindrome_lens.errors import DataFileError, TokenizerError

ALPHABET = "abcxyzé"


@given(st.lists(st.text(alphabet=ALPHABET, max_size=9), max_size=20), st.booleans())
def test_decode_inverts_encode(texts: list[str], add_eos: bool) -> None:
    tok = Tokenizer(ALPHABET, max_length=9, add_eos=add_eos)
    ids = tok.encode(texts)
    assert ids.shape == (len(texts), tok.width)
    assert tok.decode(ids) == texts


def test_layout_is_bos_chars_eos_pad() -> None:
    tok = Tokenizer("ab", max_length=4)
    assert tok.encode(["ab", "b"]).tolist() == [[1, 3, 4, 2, 0, 0], [1, 4, 2, 0, 0, 0]]
    assert tok.lengths(tok.encode(["ab", "b"])).tolist() == [2, 1]


def test_unknown_character_names_it_and_the_string() -> None:
    tok = Tokenizer("ab", max_length=4)
    with pytest.raises(TokenizerError, match=r"character 'z' in 'abz'"):
        tok.encode(["ab", "abz"])
    with pytest.raises(TokenizerError, match="at most 4"):
        tok.encode(["ababa"])


def test_json_round_trip(tmp_path) -> None:
    tok = Tokenizer("qwe", max_length=7, add_eos=False)
    tok.to_json(tmp_path / "t.json")
    assert Tokenizer.from_json(tmp_path / "t.json") == tok
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["vocab"][:3] == ["[PAD]", "[BOS]", "[EOS]"] and data["bos_id"] == 1


def test_json_that_disagrees_with_its_alphabet_is_rejected(tmp_path) -> None:
    tok = Tokenizer("qwe", max_length=7)
    data = tok.to_dict() | {"vocab": ["[PAD]", "[BOS]", "[EOS]", "q", "w"]}
    (tmp_path / "t.json").write_text(json.dumps(data))
    with pytest.raises(DataFileError, match="vocab"):
        Tokenizer.from_json(tmp_path / "t.json")
