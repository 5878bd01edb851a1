"""The benchmark suite's smoke mode runs, so the scripts never rot (no timing assertions).

The benchmarks without Ray run through the command line; those on Ray run in process on the
session's shared cluster (each would otherwise start and stop a Ray of its own: ~20 s apiece here).
"""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_command_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", "mae_step", "compile_step", "loader", "gpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    for column in ("speedup_vs_hf", "speedup_vs_eager", "ratio_vs_step"):
        assert column in r.stdout, column


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("ray_overhead", ("throughput_vs_torch",)),  # CPU shares need a busy second: not in 10 steps
        ("serve", ("vs_in_process", "p99_vs_small_only", "gateway_mib_per_request")),
        ("tune_asha", ("compute_vs_grid", "best_vs_grid")),
    ],
)
def test_bench_smoke_on_ray(ray_cluster, name: str, columns: tuple[str, ...]) -> None:
    import ray

    rows = importlib.import_module(f"bench.{name}").main(["--smoke"])
    assert rows, name
    for column in columns:
        assert any(r.get(column) is not None for r in rows), (name, column, rows)
    assert ray.is_initialized(), "a benchmark shut down the cluster it did not start"
