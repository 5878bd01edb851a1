"""ZeRO memory: per-worker parameter, gradient and optimizer bytes for ZeRO 0/1/2/3 with 2 Ray
Train workers, read from the DeepSpeed engines, against ZeRO-0 and the ideal 1/N split.

    python -m bench.zero_memory [--smoke]
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bench.common import bench_main, local_ray


def run(smoke: bool = False) -> list[dict]:
    from vitforge.config import load_spec
    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import run_stage_on_ray

    size = "test" if smoke else "tiny"
    rows = []
    with local_ray(env={"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}):
        for zero in (0, 3) if smoke else (0, 1, 2, 3):
            tmp = tempfile.mkdtemp(prefix="bench-zero-")
            spec = load_spec(data={
                "name": f"zero{zero}", "model": {"size": size, "patch_size": 4, "img_size": 16},
                "data": {"source": "digits"}, "scaling": {"num_workers": 2},
                "deepspeed": {"zero_stage": zero},
                "stages": [{"name": "mae", "global_batch_size": 32, "max_steps": 2}],
                "checkpoint": {"storage_path": tmp}, "tracking": {"enabled": False},
            })  # fmt: skip
            ds = load_train_data(spec)
            res = run_stage_on_ray(spec, 0, None, ds, normalization_for(spec, ds), memory_report=tmp + "/mem")
            assert res.error is None, res.error
            mem = [json.loads((Path(tmp) / "mem" / f"rank{r}.json").read_text()) for r in (0, 1)]
            shutil.rmtree(tmp, ignore_errors=True)
            m = max(mem, key=lambda x: x["param_bytes"] + x["optimizer_bytes"])
            rows.append({"zero": zero, "param_MiB": m["param_bytes"] / 2**20, "grad_MiB": m["grad_bytes"] / 2**20,
                         "optimizer_MiB": m["optimizer_bytes"] / 2**20})  # fmt: skip
    base = rows[0]["param_MiB"] + rows[0]["optimizer_MiB"]
    for r in rows:
        total = r["param_MiB"] + r["optimizer_MiB"]
        r["param_plus_opt_vs_zero0"] = total / base
        r["ideal_vs_zero0"] = {0: 1.0, 1: (base - rows[0]["optimizer_MiB"] / 2) / base,
                               2: (base - rows[0]["optimizer_MiB"] / 2) / base, 3: 0.5}[r["zero"]]  # fmt: skip
        r["model"] = f"ViT-{size}/4 MAE, 2 workers"
    return rows


COLS = ["zero", "param_MiB", "grad_MiB", "optimizer_MiB", "param_plus_opt_vs_zero0", "ideal_vs_zero0"]


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("zero_memory", "ZeRO per-worker state (largest rank)", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
