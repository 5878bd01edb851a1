"""The benchmark suite's smoke mode runs, so the scripts never rot (no timing assertions)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for column in ("speedup_vs_hf", "speedup_vs_eager", "ratio_vs_step", "throughput_vs_torch"):
        assert column in r.stdout, column
