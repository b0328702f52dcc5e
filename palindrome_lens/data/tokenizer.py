"""Character tokenizer: `[BOS] chars [EOS]` padded with `[PAD]`, saved as JSON (never pickled).

Ids: PAD=0, BOS=1, EOS=2, then the alphabet in order. Position 0 always holds BOS, where the model's
class logits are read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from palindrome_lens.atomic import read_json, write_json
from palindrome_lens.errors import DataFileError, TokenizerError

PAD, BOS, EOS = "[PAD]", "[BOS]", "[EOS]"
SPECIALS = (PAD, BOS, EOS)
FORMAT = "palindrome-lens/tokenizer/v1"


@dataclass(frozen=True)
class Tokenizer:
    alphabet: str
    max_length: int
    add_eos: bool = True

    def __post_init__(self) -> None:
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise TokenizerError(f"tokenizer alphabet {self.alphabet!r} must be non-empty with distinct characters")
        if self.max_length < 1:
            raise TokenizerError(f"tokenizer max_length {self.max_length} must be >= 1")

    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    @property
    def vocab(self) -> list[str]:
        return [*SPECIALS, *self.alphabet]

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.alphabet)

    @property
    def width(self) -> int:
        """Token positions per row: BOS + max_length characters (+ EOS)."""
        return self.max_length + 1 + int(self.add_eos)

    def encode_numpy(self, texts: Sequence[str]) -> np.ndarray:
        """(n, width) int64 ids. Vectorised: code points are mapped through a sorted lookup."""
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TokenizerError(f"can only encode strings, got {type(text).__name__}: {text!r}")
            if len(text) > self.max_length:
                raise TokenizerError(
                    f"{text!r} has {len(text)} characters; this tokenizer takes at most {self.max_length}"
                )
            if "\x00" in text:
                raise TokenizerError(f"character '\\x00' in {text!r} is not in the alphabet {self.alphabet!r}")
        out = np.full((len(texts), self.width), self.pad_id, dtype=np.int64)
        out[:, 0] = self.bos_id
        if not texts:
            return out
        codes = np.array(texts, dtype=f"<U{max(1, self.max_length)}").view(np.uint32).reshape(len(texts), -1)
        lengths = np.array([len(t) for t in texts])
        letters = np.array([ord(c) for c in self.alphabet], dtype=np.uint32)
        order = np.argsort(letters)
        where = np.searchsorted(letters[order], codes).clip(0, len(letters) - 1)
        found = letters[order][where] == codes
        real = np.arange(codes.shape[1]) < lengths[:, None]
        bad = real & ~found
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise TokenizerError(
                f"character {texts[row][col]!r} in {texts[row]!r} is not in the alphabet {self.alphabet!r}"
            )
        ids = np.where(real, order[where] + len(SPECIALS), self.pad_id)
        out[:, 1 : 1 + codes.shape[1]] = ids
        if self.add_eos:
            out[np.arange(len(texts)), lengths + 1] = self.eos_id
        return out

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, width) LongTensor of token ids."""
        return torch.from_numpy(self.encode_numpy(texts))

    def decode(self, ids: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> list[str]:
        """Inverse of encode: the characters between BOS and EOS/PAD."""
        rows = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
        if rows.ndim == 1:
            rows = rows[None, :]
        vocab = self.vocab
        out = []
        for row in rows:
            if row.min(initial=0) < 0 or row.max(initial=0) >= len(vocab):
                raise TokenizerError(f"token ids {row.tolist()} fall outside the vocabulary of {len(vocab)}")
            out.append("".join(vocab[i] for i in row if i >= len(SPECIALS)))
        return out

    def lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """Characters per row (positions that are neither special nor padding)."""
        return (ids >= len(SPECIALS)).sum(dim=-1)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "alphabet": self.alphabet,
            "max_length": self.max_length,
            "add_eos": self.add_eos,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "vocab": self.vocab,
            "width": self.width,
        }

    def to_json(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer") -> Tokenizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataFileError(f"{source}: not a palindrome-lens tokenizer (expected format {FORMAT!r})")
        try:
            tok = cls(alphabet=data["alphabet"], max_length=int(data["max_length"]), add_eos=bool(data["add_eos"]))
        except KeyError as exc:
            raise DataFileError(f"{source}: key {exc.args[0]!r} is missing") from exc
        except (TypeError, ValueError, TokenizerError) as exc:
            raise DataFileError(f"{source}: {exc}") from exc
        expected = tok.to_dict()
        for key in ("pad_id", "bos_id", "eos_id", "vocab", "width"):
            if key in data and data[key] != expected[key]:
                raise DataFileError(f"{source}: {key} is {data[key]!r} but the alphabet implies {expected[key]!r}")
        return tok

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Tokenizer:
        return cls.from_dict(read_json(path, "tokenizer file"), source=str(path))
