"""Faults: a stage killed (SIGKILL) mid-write leaves its previous complete outputs or none, and a
rerun succeeds; an unwritable output directory gives a clear error."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, make_repo_copy, run, tiny_params


def _digest(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*")) if p.is_file()
    }


def _kill_while_writing(repo: Path, stage: str, out: Path, timeout: float = 240) -> bool:
    """Start the stage, SIGKILL it as soon as its temporary output appears. True if killed mid-write."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PALINDROME_LENS_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(out.parent.glob(f".{out.name}.*")):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _bigger(stage: str) -> dict:
    """Params that make the stage's write phase long enough to be caught."""
    params = tiny_params()
    if stage == "generate":
        params["data"] |= {"alphabet": "abcdefghijklmnopqrstuvwxyz", "lengths": [10, 11], "n_train": 600000}
    if stage == "extract":
        params["extract"] |= {"n_per_group": 400, "n_pairs": 40, "batch_size": 16}
    return params


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "out"), [
    ("generate", "data/raw"),
    ("train", "data/model"),
    ("extract", "data/activations"),
])
def test_sigkill_mid_write_keeps_previous_output_and_rerun_succeeds(tmp_path, stage, out) -> None:
    repo = make_repo_copy(tmp_path / "repo", _bigger(stage))
    run(["dvc", "repro", stage], repo)
    out_path = repo / out
    before = _digest(out_path)
    assert before
    # Change the stage's inputs so the rerun writes different bytes, then kill it while writing.
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("seed: 0", "seed: 1"))
    killed = False
    for _ in range(5):  # the write window can be short; try a few times
        killed = _kill_while_writing(repo, stage, out_path)
        after = _digest(out_path)
        assert after in (before, {}), f"{out} was left partially written"
        if killed:
            break
    assert killed, f"never caught {stage} mid-write"
    run(["dvc", "repro", stage], repo)
    final = _digest(out_path)
    assert final and final != before
    assert not list(out_path.parent.glob(f".{out_path.name}.*")), "temporary files were left behind"


def test_output_path_blocked_is_a_clear_error(tmp_path) -> None:
    # Root ignores permission bits, so block the output directory with a file instead.
    repo = make_repo_copy(tmp_path / "repo")
    (repo / "data").write_text("a file where the output directory should be")
    proc = run(["python", "-m", "stages.generate"], repo, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cannot create output directory data" in proc.stderr and "Traceback" not in proc.stderr


def test_disk_full_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    import errno

    import pyarrow as pa
    import pyarrow.parquet as pq

    from palindrome_lens.data.parquet import write_table
    from palindrome_lens.errors import PalindromeLensError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(PalindromeLensError, match="No space left"):
        write_table(pa.table({"a": [1]}), tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []
