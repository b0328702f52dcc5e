"""What misclassified strings have in common, said in one sentence: the mirrored pair most of them break and
the characters it holds ("All 3 break pair 2 (characters 3 and 8), with c/n (2×) and a/n"), and how many are
palindromes called non-palindromes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from palindrome_lens.data.strings import mismatch_positions
from palindrome_lens.report.formatting import count, names

MOST_CHARACTER_PAIRS = 4  # character pairs named at most


def pair_characters(text: str, pair: int) -> str:
    """The two characters of mirrored pair `pair`, in alphabetical order: 'c/n'."""
    return "/".join(sorted((text[pair], text[len(text) - 1 - pair])))


def failure_pattern(texts: Sequence[str], labels: Sequence[bool], noun: str = "string") -> str:
    """One or two sentences on the misclassified `texts` (with their true `labels`); '' when there are none."""
    if not texts:
        return ""
    sentences = []
    palindromes = [t for t, label in zip(texts, labels) if label]
    broken = [t for t, label in zip(texts, labels) if not label]
    if palindromes:
        sentences.append(f"{count(len(palindromes), 'palindrome')} called not a palindrome.")
    if broken:
        pairs = Counter(p for t in broken for p in mismatch_positions(t))
        pair, n = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        lengths = {len(t) for t in broken}
        where = f" (characters {pair + 1} and {next(iter(lengths)) - pair})" if len(lengths) == 1 else ""
        chars = Counter(pair_characters(t, pair) for t in broken if pair in mismatch_positions(t))
        shown = [f"{c} ({k}×)" if k > 1 else c for c, k in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))]
        more = len(shown) - MOST_CHARACTER_PAIRS
        listed = names(shown[:MOST_CHARACTER_PAIRS] + ([f"{more} other character pairs"] if more > 0 else []))
        if len(broken) == 1:
            subject = f"The misclassified non-palindrome {noun} breaks"
        else:
            who = ("Both" if len(broken) == 2 else f"All {len(broken)}") if n == len(broken) else f"{n} of the {len(broken)}"
            subject = f"{who} misclassified non-palindrome {noun}s break"
        sentences.append(f"{subject} mirrored pair {pair}{where}, with {listed}.")
    return " ".join(sentences)
