"""Every stage asks torch for its AVX2 CPU kernels unless the caller chose (palindrome_lens/stage.py): torch 2.13's
AVX-512 softmax over rows shorter than 16 takes a slow path (benchmarks/cpu_kernels.py). The setting must hold
after everything a stage imports, since torch reads it at its first CPU kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from palindrome_lens.stage import run_stage
from tests.conftest import ROOT


def test_a_stage_sets_avx2_unless_the_caller_set_a_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    run_stage("generate", lambda params: seen.append(os.environ["ATEN_CPU_CAPABILITY"]), ROOT)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    run_stage("generate", lambda params: seen.append(os.environ["ATEN_CPU_CAPABILITY"]), ROOT)
    assert seen == ["avx2", "default"]


def test_the_kernels_take_effect_after_a_stages_imports() -> None:
    """In a fresh interpreter: import what the attribute stage imports, run a stage body, ask torch what it uses."""
    code = ("import stages.attribute, torch\n"
            "from palindrome_lens.stage import run_stage\n"
            "run_stage('generate', lambda p: print(torch.backends.cpu.get_cpu_capability()), '.')\n")
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] in ("AVX2", "DEFAULT")  # never AVX512; DEFAULT on a CPU without AVX2
