"""``bench/gpu.py`` end to end: its CPU dry run everywhere (gloo, DeepSpeed's CPU accelerator, bf16),
so the GPU benchmark cannot rot on machines without one; the GPU run itself where CUDA is."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODES = ("AdamW + torch.compile", "DeepSpeed ZeRO-2 + torch.compile")


def run_bench(*args: str) -> subprocess.CompletedProcess:
    # This checkout's package and bench/ first, whichever vitforge the environment has installed.
    path = os.pathsep.join([str(ROOT / "platform"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard (a stuck process group), not a performance check
        check=False,
    )


@pytest.mark.slow
def test_gpu_bench_cpu_dry_run() -> None:
    r = run_bench("--device", "cpu", "--steps", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(CPU dry run)" in r.stdout, r.stdout
    for mode in MODES:  # one table row per mode: model, mode, batch, then images/s
        assert re.search(rf"ViT-test/4 MAE\s+{re.escape(mode)}\s+8\s+[\d.]+", r.stdout), r.stdout


@pytest.mark.gpu
def test_gpu_bench_on_cuda() -> None:
    """The GPU path as the run book runs it (``python -m bench.gpu``), in its short form."""
    r = run_bench("--smoke")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipped" not in r.stdout
    for mode in MODES:
        assert re.search(rf"ViT-B/16 MAE\s+{re.escape(mode)}\s+16\s+[\d.]+", r.stdout), r.stdout
