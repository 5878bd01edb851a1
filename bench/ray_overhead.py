"""Ray Train overhead: the same tiny MAE job under Ray Train (2 workers) vs plain torch.distributed
(2 processes, gloo) running the same loop (``vitforge.train.loop.run_stage``) and the same
in-process loader. Reports steady-state images/s (median over reports after warm-up), wall time,
and where the machine's CPU went while both training processes were busy: their share, and every
other process's (Ray's control plane, the driver), largest first. Goal: Ray Train costs under 3%
of throughput, or the CPU accounts for where the rest goes.

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

from bench.common import bench_main, local_ray


def _spec(steps: int, storage: str):
    from vitforge.config import load_spec

    return load_spec(
        data={
            "name": "overhead",
            "model": {"size": "test", "patch_size": 4, "img_size": 32},
            "data": {"source": "digits-cluttered"},
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

    from vitforge.data import iter_batches
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
        batches=lambda e, start, stop: iter_batches(
            ds, maker, 32, e, drop_last=True, rank=rank, world_size=2, start_batch=start, stop_batch=stop
        ),
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


class _CpuSampler:
    """Every process's CPU seconds, sampled each second during a run, to split the machine's CPU
    between the two training processes and everything else (Ray's control plane, the driver)."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, dict[int, tuple[float, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self.samples.append(self._snap())
            if self._stop.wait(1.0):
                self.samples.append(self._snap())
                return

    @staticmethod
    def _snap() -> tuple[float, dict[int, tuple[float, str]]]:
        import psutil

        procs = {}
        for p in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
            ct, cmd = p.info["cpu_times"], p.info["cmdline"] or [p.info["name"] or "?"]
            if ct is not None:
                procs[p.info["pid"]] = (ct.user + ct.system, _role(cmd))
        return time.monotonic(), procs

    def stop(self) -> dict:
        """The steady window (both training processes busy): training CPU, everything else's CPU
        as a share of the machine's cores, and the largest other consumers."""
        self._stop.set()
        self._thread.join()
        totals: dict[int, float] = {}
        for (_, a), (_, b) in zip(self.samples, self.samples[1:], strict=False):
            for pid, (cpu, _) in b.items():
                totals[pid] = totals.get(pid, 0.0) + cpu - a.get(pid, (cpu, ""))[0]
        trainers = sorted(totals, key=totals.get, reverse=True)[:2]
        cores = os.cpu_count() or 1
        wall = train = 0.0
        other: dict[str, float] = {}
        for (t0, a), (t1, b) in zip(self.samples, self.samples[1:], strict=False):
            dt = t1 - t0
            busy = [b.get(p, (0.0, ""))[0] - a.get(p, (0.0, ""))[0] for p in trainers]
            if len(busy) < 2 or min(busy) < 0.7 * dt:  # start-up, data loading, teardown: not steady
                continue
            wall += dt
            train += sum(busy)
            for pid, (cpu, role) in b.items():
                if pid not in trainers and pid in a:
                    other[role] = other.get(role, 0.0) + cpu - a[pid][0]
        if wall == 0:
            return {"steady_s": 0.0, "train_cpu_share": None, "other_cpu_share": None, "top_other": ""}
        top = sorted(other.items(), key=lambda kv: -kv[1])[:4]
        return {
            "steady_s": round(wall, 1),
            "train_cpu_share": train / (cores * wall),
            "other_cpu_share": sum(other.values()) / (cores * wall),
            "top_other": ", ".join(f"{k} {100 * v / (cores * wall):.1f}%" for k, v in top if v > 0),
        }


def _role(cmd: list[str]) -> str:
    """A process's role from its command line (Ray sets titles: ``ray::TrainController`` ...)."""
    head = " ".join(cmd)[:200]
    for key in ("gcs_server", "raylet", "dashboard", "log_monitor", "runtime_env", "monitor.py"):
        if key in head:
            return key
    if head.startswith("ray::"):
        return head.split()[0][:40]
    return Path(cmd[0]).name if cmd else "?"


def run(smoke: bool = False) -> list[dict]:
    """Alternate the two runners (torch, Ray, torch, Ray) and take each one's median."""
    import shutil

    steps, rounds = (10, 1) if smoke else (120, 2)
    results: dict[str, list[tuple[float, float]]] = {"torch": [], "ray": []}
    cpu: dict[str, list[dict]] = {"torch": [], "ray": []}
    with local_ray(env={"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}):
        for _ in range(rounds):
            for name, fn in (("torch", _run_torch), ("ray", _run_ray)):
                storage = tempfile.mkdtemp(prefix="bench-overhead-")
                sampler = _CpuSampler()
                hist, wall = fn(steps, storage)
                cpu[name].append(sampler.stop())
                results[name].append((_steady(hist), wall))
                shutil.rmtree(storage, ignore_errors=True)
    med = {k: (statistics.median(x for x, _ in v), statistics.median(w for _, w in v)) for k, v in results.items()}
    base = med["torch"][0]

    def share(k: str, field: str) -> float | None:
        vals = [c[field] for c in cpu[k] if c[field] is not None]
        return statistics.median(vals) if vals else None

    return [
        {"runner": label, "steps": steps, "rounds": rounds, "img_per_s": med[k][0], "wall_s": med[k][1],
         "throughput_vs_torch": med[k][0] / base, "img_per_s_each": [round(x) for x, _ in results[k]],
         "train_cpu_share": share(k, "train_cpu_share"), "other_cpu_share": share(k, "other_cpu_share"),
         "top_other": cpu[k][-1]["top_other"]}
        for k, label in (("torch", "torch.distributed (2 procs)"), ("ray", "Ray Train (2 workers)"))
    ]  # fmt: skip


COLS = ["runner", "steps", "img_per_s", "img_per_s_each", "throughput_vs_torch", "wall_s", "train_cpu_share",
        "other_cpu_share", "top_other"]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    return bench_main("ray_overhead", "Ray Train overhead (same loop, same loader)", run, COLS, argv, __doc__)


if __name__ == "__main__":
    main()
