"""Ray Train overhead: the same tiny MAE job under Ray Train (2 workers) vs plain torch.distributed
(2 processes, gloo) running the same loop (``vitforge.train.loop.run_stage``) and the same
in-process loader. Reports steady-state images/s (median over reports after warm-up) and wall time.
Goal: Ray Train costs under 5% of throughput.

    python -m bench.ray_overhead [--smoke]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import bench_main


def _spec(steps: int, storage: str):
    from vitforge.config import load_spec

    return load_spec(
        data={
            "name": "overhead",
            "model": {"size": "test", "patch_size": 4, "img_size": 32},
            "data": {"source": "digits-cluttered", "loader": "local"},
            "scaling": {"num_workers": 2},
            "stages": [{"name": "mae", "epochs": 100, "global_batch_size": 64, "max_steps": steps}],
            "checkpoint": {"storage_path": storage, "every_steps": 10**6},
            "tracking": {"log_every_steps": 5},
        }
    )


def _steady(history: list[dict]) -> float:
    vals = [h["img_per_s_total"] for h in history[2:]] or [h["img_per_s_total"] for h in history]
    return statistics.median(vals)


def _torch_worker(rank: int, port: int, steps: int, storage: str) -> None:
    import torch.distributed as dist

    from vitforge.data.pipeline import iter_batches
    from vitforge.train.inputs import load_train_data, make_batch_maker, normalization_for
    from vitforge.train.loop import WorkerContext, run_stage

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    import torch

    torch.set_num_threads(1)  # as Ray's workers (OMP_NUM_THREADS=1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    spec = _spec(steps, storage)
    ds = load_train_data(spec)
    norm = normalization_for(spec, ds)
    maker = make_batch_maker(spec, 0, norm, normalize=False)
    ctx = WorkerContext(
        rank=rank,
        world_size=2,
        local_rank=rank,
        batches=lambda e: iter_batches(ds, maker, 32, e, drop_last=True, rank=rank, world_size=2),
        report=lambda m, d: None,
        num_train_rows=len(ds),
        log=lambda s: None,
        normalization=norm,
    )
    run_stage(ctx, spec, 0)
    if rank == 0:
        (Path(storage) / "torch_history.json").write_text(json.dumps(ctx.history))
    dist.destroy_process_group()


def _run_torch(steps: int, storage: str) -> tuple[list[dict], float]:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    # No mp.Manager: it forks this Ray driver, which leaves Ray's gRPC client hung.
    mp.spawn(_torch_worker, args=(port, steps, storage), nprocs=2, join=True)
    wall = time.perf_counter() - t0
    return json.loads((Path(storage) / "torch_history.json").read_text()), wall


def _run_ray(steps: int, storage: str) -> tuple[list[dict], float]:
    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import job_dir, run_stage_on_ray

    spec = _spec(steps, storage)
    spec.tracking.enabled = False
    ds = load_train_data(spec)
    history = job_dir(spec) / "history-0-mae.jsonl"
    history.unlink(missing_ok=True)
    t0 = time.perf_counter()
    result = run_stage_on_ray(spec, 0, None, ds, normalization_for(spec, ds))
    wall = time.perf_counter() - t0
    assert result.error is None, result.error
    return [json.loads(x) for x in history.read_text().splitlines()], wall


def run(smoke: bool = False) -> list[dict]:
    """Alternate the two runners (torch, Ray, torch, Ray) and take each one's median."""
    import shutil

    import ray

    steps, rounds = (10, 1) if smoke else (120, 2)
    ray.init(
        num_cpus=4,
        include_dashboard=True,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
        runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}},
    )
    results: dict[str, list[tuple[float, float]]] = {"torch": [], "ray": []}
    try:
        for _ in range(rounds):
            for name, fn in (("torch", _run_torch), ("ray", _run_ray)):
                storage = tempfile.mkdtemp(prefix="bench-overhead-")
                hist, wall = fn(steps, storage)
                results[name].append((_steady(hist), wall))
                shutil.rmtree(storage, ignore_errors=True)
    finally:
        ray.shutdown()
    med = {k: (statistics.median(x for x, _ in v), statistics.median(w for _, w in v)) for k, v in results.items()}
    base = med["torch"][0]
    return [
        {"runner": label, "steps": steps, "rounds": rounds, "img_per_s": med[k][0], "wall_s": med[k][1],
         "throughput_vs_torch": med[k][0] / base, "img_per_s_each": [round(x) for x, _ in results[k]]}
        for k, label in (("torch", "torch.distributed (2 procs)"), ("ray", "Ray Train (2 workers)"))
    ]  # fmt: skip


COLS = ["runner", "steps", "img_per_s", "img_per_s_each", "throughput_vs_torch", "wall_s"]


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("ray_overhead", "Ray Train overhead (same loop, same loader)", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
