"""No pickle, no unsafe torch.load, no eval/exec anywhere in the project's Python."""

import re

from tests.conftest import ROOT, tracked_files

UNSAFE = [
    (re.compile(r"^\s*(import pickle|from pickle|import cPickle|import dill|import joblib)", re.M), "pickle import"),
    (re.compile(r"pickle\.loads?\("), "pickle.load"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "eval/exec"),
]


def test_no_unsafe_loading_in_the_source() -> None:
    problems = []
    for rel in tracked_files():
        if not rel.endswith(".py") or rel == "tests/test_security.py":
            continue
        text = (ROOT / rel).read_text(encoding="utf-8")
        for pattern, what in UNSAFE:
            problems += [f"{rel}: {what}: {m.group(0).strip()}" for m in pattern.finditer(text)]
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                problems.append(f"{rel}: torch.load without weights_only=True")
    assert not problems, "\n".join(problems)
