"""How the loop runs: ``train_loop_per_worker`` under Ray Train (each rank streams its own windows
through Ray Data tasks), or ``run_local`` / ``local_context`` in one process with a one-rank
process group, reading the same windows itself (tests, Tune's direct trials, the reproduction,
GPU checks without Ray)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from vitforge.config import JobSpec
from vitforge.data import iter_batches, rank_dataset
from vitforge.train import engine as eng
from vitforge.train.inputs import load_train_data, make_batch_maker, normalization_for
from vitforge.train.loop import WorkerContext, run_stage


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry: ``config`` holds the job spec (as a dict), stage index and data facts."""
    import ray.train

    eng.cpu_accelerator_env()
    spec = JobSpec.model_validate(config["spec"])
    ctx_ray = ray.train.get_context()
    workers = ctx_ray.get_world_size()
    micro = spec.micro_batch(config["stage_index"], workers)

    rank = ctx_ray.get_world_rank()
    source, maker = config["data"]  # the planned source (file names, row counts) and the views

    def batches(epoch: int, start: int, stop: int):
        d = spec.data
        ds = rank_dataset(
            source, maker, epoch, rank, workers, start * micro, stop * micro, d.window_rows, d.tasks_per_worker
        )
        return ds.iter_torch_batches(batch_size=micro, drop_last=True)

    def report(metrics: dict, directory: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(directory) if directory else None
        ray.train.report(metrics, checkpoint=ckpt)

    resume = ray.train.get_checkpoint()
    with resume.as_directory() if resume else contextlib.nullcontext() as resume_dir:
        ctx = WorkerContext(
            rank=rank,
            world_size=workers,
            local_rank=ctx_ray.get_local_rank(),
            batches=batches,
            report=report,
            resume_dir=resume_dir,
            init_from=config.get("init_from"),
            num_train_rows=config["num_train_rows"],
            probe_out=config.get("probe_out"),
            normalization=config["normalization"],  # the loader's uint8 images, normalized here
        )
        if config.get("knn_normalization") is not None:
            from vitforge.eval.hook import knn_hook  # the eval stack (sklearn) only when asked

            ctx.eval_fn = knn_hook(
                spec, config["knn_normalization"], source, load_train_data(spec, spec.data.eval_split)
            )
        metrics = run_stage(ctx, spec, config["stage_index"])
    if config.get("memory_report"):
        Path(config["memory_report"]).mkdir(parents=True, exist_ok=True)
        out = Path(config["memory_report"]) / f"rank{ctx.rank}.json"
        out.write_text(json.dumps(metrics.get("memory", {})))


def init_single_process(use_gpu: bool) -> None:
    """A one-rank process group (gloo, or NCCL on GPU) for running the loop without Ray."""
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    # A fresh port every time: a MASTER_PORT inherited from another process group (a Ray worker
    # started by a process that ran one) is taken, and setdefault would reuse it.
    os.environ["MASTER_PORT"] = str(_free_port())
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    dist.init_process_group("nccl" if use_gpu else "gloo", rank=0, world_size=1)


def local_context(spec: JobSpec, stage_index: int, report: Callable[[dict, str | None], None], **kw):
    """A one-worker ``WorkerContext`` over the in-process loader; returns it and the normalization."""

    eng.cpu_accelerator_env()
    init_single_process(spec.scaling.use_gpu)
    ds = load_train_data(spec)
    norm = normalization_for(spec, ds)
    maker = make_batch_maker(spec, stage_index, norm, normalize=False)  # uint8, normalized on the device
    micro = spec.micro_batch(stage_index, 1)
    ctx = WorkerContext(
        rank=0,
        world_size=1,
        local_rank=0,
        batches=lambda epoch, start, stop: iter_batches(
            ds,
            maker,
            micro,
            epoch,
            drop_last=True,
            start_batch=start,
            stop_batch=stop,
            window_rows=spec.data.window_rows,
        ),
        report=report,
        num_train_rows=len(ds),
        normalization=norm,
        **kw,
    )
    return ctx, norm


def run_local(
    spec: JobSpec,
    stage_index: int,
    checkpoint_root: str,
    init_from: str | None = None,
    resume_dir: str | None = None,
    probe_out: str | None = None,
) -> WorkerContext:
    """Run a stage in this process without Ray (one rank): GPU checks, benchmarks, tests.

    Checkpoints go to ``checkpoint_root/step-N``. Returns the context with the metric history.
    """

    def report(metrics: dict, directory: str | None) -> None:
        if directory:
            shutil.copytree(directory, Path(checkpoint_root) / f"step-{metrics['step']}", dirs_exist_ok=True)

    ctx, _ = local_context(spec, stage_index, report, resume_dir=resume_dir, init_from=init_from, probe_out=probe_out)
    run_stage(ctx, spec, stage_index)
    return ctx


def _free_port() -> int:

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
