"""The per-worker training loop of one stage. Runs under Ray Train or directly (no Ray needed).

``run_stage(ctx, spec, stage_index)``: ``setup_stage`` -> ``train_step()`` (forward,
``backward()``, ``step()``, visibly) -> ``on_step_end()`` (hooks, metrics, reports, checkpoints).
``train/runners.py`` runs it under Ray Train or in one process.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from vitforge.config import JobSpec
from vitforge.data.stream import rank_rows
from vitforge.data.transforms import normalize_uint8
from vitforge.inference import embed
from vitforge.train import engine as eng
from vitforge.train.export import probe_images
from vitforge.train.flops import peak_flops, train_flops_per_image
from vitforge.train.schedule import apply_lrs, base_lrs, lr_factor
from vitforge.train.tasks import build_task

STATE_FILE = "train_state.json"


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the run stops and the last good checkpoint is kept."""


@dataclass
class WorkerContext:
    """What the loop needs from its runner (Ray Train, or a plain process group)."""

    rank: int
    world_size: int
    local_rank: int
    # (epoch, first micro-batch, end micro-batch) -> this rank's micro-batches of the epoch in that range
    batches: Callable[[int, int, int], Iterator[dict[str, torch.Tensor]]]
    report: Callable[[dict, str | None], None]  # metrics, checkpoint directory (or None)
    resume_dir: str | None = None
    init_from: str | None = None
    num_train_rows: int = 0
    log: Callable[[str], None] = print
    history: list[dict] = field(default_factory=list)
    probe_out: str | None = None  # rank 0 writes the final encoder's embeddings of a fixed probe here
    eval_fn: Callable[[torch.nn.Module], dict] | None = None  # run by every rank at each epoch end
    normalization: dict | None = None  # mean/std for uint8 batches, normalized on the device


def plan(spec: JobSpec, stage_index: int, num_rows: int, world: int | None = None) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) of a stage on ``world`` workers (the spec's by
    default); every worker runs exactly these, on the rows its windows give it (``rank_rows``)."""
    stage = spec.stages[stage_index]
    world = max(spec.scaling.num_workers if world is None else world, 1)
    per_step = spec.micro_batch(stage_index, world) * spec.deepspeed.grad_accum
    steps_per_epoch = rank_rows(num_rows, world, spec.data.window_rows) // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"stages[{stage_index}].global_batch_size {stage.global_batch_size} is larger than the"
            f" {num_rows} training rows"
        )
    total = math.ceil(stage.epochs * steps_per_epoch)
    return steps_per_epoch, min(total, stage.max_steps or total)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _save(engine, ctx: WorkerContext, state: dict, metrics: dict) -> None:
    """Each rank writes its shard and RNG state into its own folder; every rank reports it."""
    with tempfile.TemporaryDirectory(prefix="vitforge-ckpt-") as d:
        eng.save_checkpoint(engine, d, client_state=state)
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1], "python": random.getstate()[1]}
        torch.save({k: torch.as_tensor(np.asarray(v)) for k, v in rng.items()}, Path(d) / f"rng_rank{ctx.rank}.pt")
        if ctx.rank == 0:
            (Path(d) / STATE_FILE).write_text(json.dumps(state))
        ctx.report(metrics, d)


def _restore_rng(directory: str, rank: int) -> None:
    path = Path(directory) / f"rng_rank{rank}.pt"
    if path.is_file():
        rng = torch.load(path, weights_only=True)  # plain tensors: never unpickle objects
        torch.set_rng_state(rng["torch"])
        np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), 0, 0, 0.0))


def _system_metrics(device: torch.device) -> dict[str, float]:
    """This worker's resident memory, and the GPU's peak allocation when on GPU."""
    import psutil

    out = {"sys_rss_gib": psutil.Process().memory_info().rss / 2**30}
    if device.type == "cuda":
        out["sys_gpu_max_alloc_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def _fp32_zero0_grad_norm(engine, spec: JobSpec) -> float | None:
    """DeepSpeed clips fp32 ZeRO-0 gradients without keeping the norm: compute it (grads are
    already averaged across ranks at the boundary). Other modes report it themselves."""
    if spec.deepspeed.zero_stage or spec.deepspeed.precision != "fp32":
        return None
    norms = [p.grad.detach().norm() for p in engine.module.parameters() if p.grad is not None]
    return torch.stack(norms).norm().item() if norms else 0.0


@dataclass
class StageRun:
    """One stage on one worker: built by ``setup_stage``, advanced by ``train_step`` and
    ``on_step_end``. ``step`` counts optimizer steps (micro-batches x grad_accum)."""

    ctx: WorkerContext
    spec: JobSpec
    stage_index: int
    task: torch.nn.Module
    engine: object  # deepspeed.DeepSpeedEngine
    device: torch.device
    lr_meta: list[tuple[str, float]]  # each param group's (fast/slow, layer-decay scale)
    base_lrs: dict[str, float]
    steps_per_epoch: int
    total: int
    warmup: int
    flops_per_image: float = 0.0  # for MFU, with the device's peak (None off GPU)
    peak_flops: float | None = None
    step: int = 0
    resumed_from: int = 0
    pending: list[dict] = field(default_factory=list)  # metrics logged since the last report
    metrics: dict = field(default_factory=dict)
    epoch_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    epoch_steps: int = 0
    window_t: float = field(default_factory=time.perf_counter)
    window_imgs: int = 0

    @property
    def stage(self):
        return self.spec.stages[self.stage_index]


def setup_stage(ctx: WorkerContext, spec: JobSpec, stage_index: int) -> StageRun:
    """Seed, device, the task (initialised from ``ctx.init_from``), the DeepSpeed engine, the
    plan, and the resumed position when ``ctx.resume_dir`` is set."""
    stage = spec.stages[stage_index]
    t_start = time.perf_counter()
    _seed_everything(spec.seed * 1000 + ctx.rank)
    device = torch.device(f"cuda:{ctx.local_rank}") if spec.scaling.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    task = build_task(spec, stage_index, ctx.init_from)
    if spec.model.compile:
        eng.compile_blocks(task, spec.deepspeed.zero_stage)
    base = base_lrs(stage)
    groups = task.param_groups(base["fast"], base["slow"], stage.optimizer.weight_decay)
    engine = eng.init_engine(task.to(device), groups, spec, stage, spec.micro_batch(stage_index, ctx.world_size))
    if ctx.rank == 0:
        ctx.log(f"[{stage.name}] DeepSpeed engine ready in {time.perf_counter() - t_start:.1f}s")
    steps_per_epoch, total = plan(spec, stage_index, ctx.num_train_rows, ctx.world_size)
    run = StageRun(
        ctx, spec, stage_index, task, engine, device, [(g["group"], g["lr_scale"]) for g in groups], base,
        steps_per_epoch, total, round(stage.optimizer.warmup_epochs * steps_per_epoch),
        train_flops_per_image(task), peak_flops(),
    )  # fmt: skip
    if ctx.resume_dir:
        state = eng.load_checkpoint(engine, ctx.resume_dir)
        _restore_rng(ctx.resume_dir, ctx.rank)
        run.step = run.resumed_from = int(state["step"])
        ctx.log(f"[rank {ctx.rank}] resumed {stage.name} at step {run.step}/{total} from {ctx.resume_dir}")
    return run


def train_step(run: StageRun, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float | None, dict, bool]:
    """One micro-batch: forward, ``backward()``, ``step()`` (DeepSpeed applies the update at the
    accumulation boundary). Returns (loss, fp32 ZeRO-0 grad norm, learning rates, boundary)."""
    engine, spec, ctx = run.engine, run.spec, run.ctx
    batch = to_device(batch, run.device, eng.compute_dtype(spec), ctx.normalization)
    run.task.set_epoch(run.step / run.steps_per_epoch)  # objective schedules (exact on resume)
    loss = engine(batch, ctx.rank, ctx.world_size)
    if not torch.isfinite(loss):
        raise NonFiniteLoss(
            f"stage {run.stage.name}: loss is {loss.item()} at step {run.step}"
            f" (epoch {run.step // run.steps_per_epoch}); stopping, the last good checkpoint is kept"
        )
    factor = lr_factor(run.step, run.total, run.warmup, run.stage.optimizer.min_lr_ratio)
    lrs = apply_lrs(engine.optimizer, run.lr_meta, run.base_lrs, factor)
    engine.backward(loss)
    boundary = engine.is_gradient_accumulation_boundary()
    grad_norm = _fp32_zero0_grad_norm(engine, spec) if boundary else None
    engine.step()
    run.window_imgs += batch["image"].shape[0]
    return loss, grad_norm, lrs, boundary


def to_device(batch: dict, device: torch.device, dtype: torch.dtype, normalization: dict | None) -> dict:
    """A loader batch on the device: uint8 images (the loader's transport, a quarter of fp32's bytes)
    normalized there in fp32, then every float at the module's precision (bf16 on GPU nodes)."""
    out = {}
    for k, v in batch.items():
        if k.startswith("image") and v.dtype == torch.uint8:
            if normalization is None:
                raise ValueError("uint8 images need the WorkerContext's normalization (mean/std)")
            v = normalize_uint8(v.to(device, non_blocking=True), normalization["mean"], normalization["std"])
        out[k] = v.to(device, dtype if v.is_floating_point() else v.dtype, non_blocking=True)
    return out


def on_step_end(run: StageRun, loss: torch.Tensor, grad_norm: float | None, lrs: dict) -> None:
    """After an optimizer step: the task's hook (EMA) and clamps, then three cadences: metrics every
    ``log_every_steps`` and at epoch ends (with the evaluation hook), a report to the runner every
    ``report_every_steps``, a checkpoint every ``checkpoint.every_steps`` (else each epoch)."""
    spec, ctx = run.spec, run.ctx
    run.task.after_step()
    eng.clamp_after_step(run.task.upper_bounds())
    run.step += 1
    run.epoch_loss += loss.detach().float().cpu()
    run.epoch_steps += 1
    last = run.step == run.total
    checkpoint_now = run.step % (spec.checkpoint.every_steps or run.steps_per_epoch) == 0 or last
    epoch_end = run.step % run.steps_per_epoch == 0 or last
    log_now = run.step % spec.tracking.log_every_steps == 0
    if log_now or checkpoint_now or epoch_end:
        run.metrics = _step_metrics(run, loss, grad_norm, lrs, epoch_end)
        ctx.history.append(run.metrics)
        run.pending.append(run.metrics)
    # ray.train.report is a barrier with a controller round trip (~0.5 s here): every rank
    # reports on the same steps, rarely, carrying the metrics logged since the last one.
    if checkpoint_now or run.step % spec.tracking.report_every_steps == 0:
        report = {**run.metrics, "history": run.pending}
        if checkpoint_now:
            state = {"step": run.step, "epoch": run.step // run.steps_per_epoch, "total_steps": run.total,
                     "stage": run.stage.name, "position_in_epoch": run.step % run.steps_per_epoch}  # fmt: skip
            _save(run.engine, ctx, state, report)
        else:
            ctx.report(report, None)
        run.pending = []
        run.window_t, run.window_imgs = time.perf_counter(), 0  # throughput excludes checkpointing
    elif log_now:
        run.window_t, run.window_imgs = time.perf_counter(), 0


def _step_metrics(run: StageRun, loss: torch.Tensor, grad_norm: float | None, lrs: dict, epoch_end: bool) -> dict:
    """Loss averaged over ranks, throughput, MFU, memory; at an epoch end the epoch's mean loss
    over ranks and the evaluation hook (run by every rank)."""
    ctx, engine = run.ctx, run.engine
    loss_avg = loss.detach().float().clone()
    if ctx.world_size > 1:
        dist.all_reduce(loss_avg)
        loss_avg /= ctx.world_size
    ips = run.window_imgs / (time.perf_counter() - run.window_t)
    metrics = {
        "stage": run.stage.name,
        "step": run.step,
        "epoch": run.step / run.steps_per_epoch,
        "loss": loss_avg.item(),
        "grad_norm": float(grad_norm if grad_norm is not None else engine.get_global_grad_norm() or 0.0),
        "img_per_s_worker": ips,
        "img_per_s_total": ips * max(ctx.world_size, 1),
        "resumed_from": run.resumed_from,
        **lrs,
    }
    if run.peak_flops:
        metrics["mfu"] = ips * run.flops_per_image / run.peak_flops
    metrics.update(_system_metrics(run.device))
    if epoch_end:
        mean = (run.epoch_loss / max(run.epoch_steps, 1)).to(run.device)
        if ctx.world_size > 1:
            dist.all_reduce(mean)
            mean /= ctx.world_size
        metrics["epoch_loss"] = mean.item()
        run.epoch_loss, run.epoch_steps = torch.zeros(()), 0
        if ctx.eval_fn is not None:
            metrics.update(ctx.eval_fn(run.task))
    return metrics


def run_stage(ctx: WorkerContext, spec: JobSpec, stage_index: int) -> dict:
    """Train one stage to its planned number of steps; returns the last metrics."""
    t_start = time.perf_counter()
    run = setup_stage(ctx, spec, stage_index)
    run.engine.train()
    while run.step < run.total:
        epoch = run.step // run.steps_per_epoch
        # Resumed mid-epoch: the stream starts at the next unseen micro-batch (nothing read twice).
        accum = spec.deepspeed.grad_accum
        start = (run.step % run.steps_per_epoch) * accum
        stop = min(run.steps_per_epoch, run.total - epoch * run.steps_per_epoch) * accum  # a capped last epoch
        for i, batch in enumerate(ctx.batches(epoch, start, stop)):
            if run.step == 0 and ctx.rank == 0 and i == 0:
                ctx.log(f"[{run.stage.name}] first batch after {time.perf_counter() - t_start:.1f}s")
            loss, grad_norm, lrs, boundary = train_step(run, batch)
            if not boundary:
                continue
            on_step_end(run, loss, grad_norm, lrs)
            if run.step >= run.total or run.step % run.steps_per_epoch == 0:
                break
    run.metrics["memory"] = eng.state_bytes(run.engine)
    if ctx.probe_out:
        _write_probe(run.task, spec, run.device, ctx)
    return run.metrics


@torch.no_grad()
def _write_probe(task, spec: JobSpec, device: torch.device, ctx: WorkerContext) -> None:
    """Embeddings of the fixed probe batch by the live (possibly sharded) model: every rank runs the
    forward (ZeRO-3 gathers collectively), rank 0 saves. Export -> reload must reproduce them."""
    task.eval()
    parts = task.exports()
    imgs = probe_images(spec).to(device, eng.compute_dtype(spec))
    emb = embed(parts.get("model", parts["encoder"]), imgs, spec.model.pool)
    if ctx.rank == 0:
        torch.save(emb.float().cpu(), ctx.probe_out)
    task.train()
