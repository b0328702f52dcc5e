"""Where a report comes from: the code's commit, the model's hash, the params and how they differ from the
committed ones, the machine. Every field has a deterministic source, so rerunning the report stage on the same
inputs gives the same bytes: the *commit's* date stands for "when" (the wall clock would change every run),
the model's hash is the one dvc.lock records for data/model, and the machine is the one that ran the report
stage (the one that trained the model too, unless the outputs came from a DVC remote).

git HEAD is not a DVC dependency: committing without changing a dependency of the report leaves the page
naming the commit it was written at. The page says so.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

CODE_PATHS = ("palindrome_lens", "stages", "dvc.yaml")  # what "uncommitted code" looks at
MODEL_DIR = "data/model"


@dataclass(frozen=True)
class Provenance:
    commit: str | None = None  # full hash of git HEAD when the report was written; None outside git
    commit_date: str | None = None  # the commit's own date (ISO 8601)
    commit_subject: str | None = None
    uncommitted: tuple[str, ...] = ()  # code files that differ from the commit
    model_md5: str | None = None  # dvc.lock's md5 of data/model (the train stage's output)
    params: Mapping[str, Any] = field(default_factory=dict)  # this run's params, flat: {"data.alphabet": ...}
    committed_params: Mapping[str, Any] | None = None  # params.yaml at the commit, flat; None when unknown
    machine: str = "not recorded"

    def changed_params(self) -> list[tuple[str, Any, Any]]:
        """(key, this run, committed) for every key whose value differs from params.yaml at the commit."""
        if self.committed_params is None:
            return []
        keys = sorted(set(self.params) | set(self.committed_params))
        return [(k, self.params.get(k), self.committed_params.get(k)) for k in keys
                if _canonical(self.params.get(k)) != _canonical(self.committed_params.get(k))]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


def flatten_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml's mapping as its dvc.yaml keys: `seed`, `data.alphabet`, ... (sections one level deep)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{name}": inner for name, inner in value.items()})
        else:
            out[key] = value
    return out


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def model_md5(root: Path) -> str | None:
    """The md5 dvc.lock records for data/model under the train stage, or None."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    outs = ((lock.get("stages") or {}).get("train") or {}).get("outs") or []
    return next((str(o.get("md5")) for o in outs if isinstance(o, Mapping) and o.get("path") == MODEL_DIR), None)


def machine() -> str:
    """Operating system, processor, Python and torch: what the bytes of a training run depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return f"{platform.system()} {platform.machine()}, {cpu}, Python {platform.python_version()}, torch {torch}"


def collect_provenance(root: str | Path, params: Mapping[str, Any]) -> Provenance:
    """Provenance of a report written in the checkout at `root` with `params` (flat, as StageParams.as_dict)."""
    root = Path(root)
    head = _git(root, "log", "-1", "--format=%H%n%cI%n%s")
    commit = date = subject = None
    committed = None
    uncommitted: tuple[str, ...] = ()
    if head:
        commit, date, subject = (head.splitlines() + ["", "", ""])[:3]
        shown = _git(root, "show", "HEAD:params.yaml")
        if shown is not None:
            try:
                committed = flatten_params(yaml.safe_load(shown) or {})
            except yaml.YAMLError:
                committed = None
        status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS) or ""
        uncommitted = tuple(sorted(line[3:] for line in status.splitlines() if line.strip()))
    return Provenance(commit=commit, commit_date=date, commit_subject=subject, uncommitted=uncommitted,
                      model_md5=model_md5(root), params=dict(params), committed_params=committed, machine=machine())
