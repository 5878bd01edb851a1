"""Ray Train overhead: the same tiny MAE job under Ray Train (2 workers) vs plain torch.distributed
(2 processes, gloo) running the same loop (``vitforge.train.loop.run_stage``) and the same
in-process loader. Reports steady-state images/s (median over reports after warm-up) and wall time.
Goal: Ray Train costs under 5% of throughput.

    python -m bench.ray_overhead [--smoke]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time

from bench.common import print_table, save


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


def _torch_worker(rank: int, port: int, steps: int, storage: str, out) -> None:
    import torch.distributed as dist

    from vitforge.data.pipeline import iter_batches
    from vitforge.train.loop import WorkerContext, run_stage
    from vitforge.train.run import load_train_data, make_batch_maker, normalization_for

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    import torch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    spec = _spec(steps, storage)
    ds = load_train_data(spec)
    maker = make_batch_maker(spec, 0, normalization_for(spec, ds))
    ctx = WorkerContext(
        rank=rank,
        world_size=2,
        local_rank=rank,
        batches=lambda e: iter_batches(ds, maker, 32, e, drop_last=True, rank=rank, world_size=2),
        report=lambda m, d: None,
        num_train_rows=len(ds),
        log=lambda s: None,
    )
    run_stage(ctx, spec, 0)
    if rank == 0:
        out.extend(ctx.history)
    dist.destroy_process_group()


def run(smoke: bool = False) -> list[dict]:
    import ray
    import torch.multiprocessing as mp

    from vitforge.train.run import load_train_data, normalization_for, run_stage_on_ray

    steps = 10 if smoke else 120
    storage = tempfile.mkdtemp(prefix="bench-overhead-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with mp.Manager() as manager:
        hist = manager.list()
        mp.spawn(_torch_worker, args=(port, steps, storage, hist), nprocs=2, join=True)
        torch_hist = list(hist)
    torch_wall = time.perf_counter() - t0

    ray.init(
        num_cpus=4,
        include_dashboard=True,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
        runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}},
    )
    try:
        spec = _spec(steps, storage)
        ds = load_train_data(spec)
        t0 = time.perf_counter()
        result = run_stage_on_ray(spec, 0, None, ds, normalization_for(spec, ds))
        ray_wall = time.perf_counter() - t0
        import json

        from vitforge.train.run import job_dir

        ray_hist = [json.loads(x) for x in (job_dir(spec) / "history-0-mae.jsonl").read_text().splitlines()]
        assert result.error is None
    finally:
        ray.shutdown()
    base = _steady(torch_hist)
    rows = [
        {"runner": "torch.distributed (2 procs)", "img_per_s": base, "wall_s": torch_wall, "throughput_vs_torch": 1.0},
        {
            "runner": "Ray Train (2 workers)",
            "img_per_s": _steady(ray_hist),
            "wall_s": ray_wall,
            "throughput_vs_torch": _steady(ray_hist) / base,
        },
    ]
    for r in rows:
        r["steps"] = steps
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.smoke)
    print_table(
        "Ray Train overhead (same loop, same loader)",
        rows,
        ["runner", "steps", "img_per_s", "throughput_vs_torch", "wall_s"],
    )
    if not args.smoke:
        save("ray_overhead", rows)
    return rows


if __name__ == "__main__":
    main()
